"""pxp-bench-example: a third-party pxp-bench plugin written against the public API only.

The hooks live in `pxp_bench_example.plugin` (the entry point); each registered callable is named as a
``"module:function"`` string, so listing plugins never imports torch or scikit-image.
"""
