"""Command line of the book build: ``python -m wfutils.book --run results/default``."""

from wfutils.study.book import main

if __name__ == "__main__":
    raise SystemExit(main())
