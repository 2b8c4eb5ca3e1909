"""``python -m pxp_bench.cli``: the same as the ``pxp-bench`` console script."""

from pxp_bench.cli import main

if __name__ == "__main__":
    main()
