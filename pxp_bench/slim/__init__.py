"""Physical removal: slimmed copies of a pruned model, their efficiency, and their export (PROTOCOL 5b)."""
