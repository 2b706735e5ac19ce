"""``python -m scripts.loadtest``: the same command as ``cloison loadtest``."""

from scripts.loadtest.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
