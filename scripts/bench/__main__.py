"""``python -m scripts.bench``: run the benchmark suite."""

from scripts.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
