"""Moved: the sweep lives in the installed benchmark package, ``kmas_bench.sweep``.

    python benchmarks/sweep.py --device cpu      # same as: python -m kmas_bench.sweep --device cpu
"""

from kmas_bench.sweep import main

if __name__ == "__main__":
    main()
