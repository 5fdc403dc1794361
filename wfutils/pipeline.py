"""Command line of the study pipeline: ``python -m wfutils.pipeline --profile default``."""

from wfutils.study.pipeline import main

if __name__ == "__main__":
    raise SystemExit(main())
