"""Command line of fine-tuning: ``python -m wfutils.slm --run-dir results/mine`` (also under ``accelerate launch``)."""

from wfutils.slm.training import main

main()
