"""Command line of fine-tuning: ``python -m wfutils.slm --run-dir results/mine`` (also under ``accelerate launch``).

Every :class:`wfutils.slm.training.TrainConfig` field is a flag (``--lora-r 32``,
``--no-gradient-checkpointing``, ...); the defaults are TrainConfig's. Examples::

    python -m wfutils.slm --run-dir results/dev --max-steps 100
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m wfutils.slm \\
        --run-dir results/paper --base-model mistralai/Mistral-Nemo-Base-2407 --bf16 --batch-size 4 --grad-accum 4
    accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml -m wfutils.slm \\
        --run-dir results/paper --base-model mistralai/Mistral-Nemo-Base-2407 --bf16 --epochs 2 --learning-rate 2e-4

The trainer (TRL ``SFTTrainer``) takes its distributed setup (DDP, DeepSpeed ZeRO, FSDP) from the
accelerate config; a killed run started again with the same arguments resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from wfutils.slm.training import TrainConfig, train_lora

_INT_LISTS = {"keep_steps"}
_OPTIONAL_INTS = ("max_steps", "eval_every", "num_threads", "flowsim_max_new_tokens", "loss_pairs")
_OPTIONAL_STRS = ("context_column",)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: run options plus one flag per TrainConfig field."""
    parser = argparse.ArgumentParser(prog="python -m wfutils.slm", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="run folder with data/ (written by notebook 01)")
    parser.add_argument("--out-dir", default=None, help="default: <run-dir>/slm")
    parser.add_argument("--train-corpus", default="synthetic", help="data set of the run to fine-tune on (default: synthetic)")
    parser.add_argument("--n-train", type=int, default=None, help="first N training pairs (default: all)")
    parser.add_argument("--time-budget-s", type=float, default=None, help="stop after this much training time")
    parser.add_argument("--force", action="store_true", help="retrain even if a finished run matches")
    for name, value in TrainConfig().to_dict().items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, list):
            parser.add_argument(flag, nargs="+", default=value, type=int if name in _INT_LISTS else str)
        elif name in _OPTIONAL_INTS:
            parser.add_argument(flag, type=int, default=value)
        elif name in _OPTIONAL_STRS:
            parser.add_argument(flag, type=str, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    """Fine-tune on the train split of a run's training corpus (validation losses on its validation
    split when ``--eval-every`` is given); prints and returns a short summary of the training record."""
    from wfutils.data.store import load_run_data, training_data

    args = vars(build_parser().parse_args(argv))
    run_dir = Path(args.pop("run_dir"))
    out_dir = Path(args.pop("out_dir") or run_dir / "slm")
    n_train = args.pop("n_train")
    budget = args.pop("time_budget_s")
    force = args.pop("force")
    train_corpus = args.pop("train_corpus")
    config = TrainConfig(**args)
    train, validation = training_data(load_run_data(run_dir, include_train=True), train_corpus)
    if n_train is not None:
        train = train.select(range(min(n_train, len(train))))
    validation = validation if config.eval_every else None
    result = train_lora(train, out_dir, config, eval_rows=validation, time_budget_s=budget, force=force)
    summary = {k: result.record.get(k) for k in ("status", "steps", "final_loss", "tokens_per_s", "stopped_by")}
    summary["reused"] = result.reused
    if result.record:  # only the main process writes the record
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
