"""Attribution methods: one module per method family, registered as a built-in plugin."""
