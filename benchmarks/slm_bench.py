"""Speed (and optionally quality) of the SLM arm against raw torch baselines measured in the same run.

    nice .venv/bin/python benchmarks/slm_bench.py                 # throughput targets (~5 min on 2 cores)
    nice .venv/bin/python benchmarks/slm_bench.py --quality       # + fine-tuned vs few-shot FlowSim (long)

Targets (issue 4):
* training throughput of :func:`wfutils.slm.training.train_lora` >= 85% of a bare forward+backward+step loop
  over the same LoRA model and the same batches (first step of each excluded as warm-up). The
  bare loop uses the model's own loss, which projects every position onto the vocabulary;
  ``train_lora`` projects only target positions, so a ratio above 1 is expected (1.30 measured
  on 2 cores, batch 8);
* batched generation (:func:`wfutils.slm.generation.generate_batch`; batches of 8 and of 16, the
  default profile's size) >= 4x the tokens/s of one-at-a-time ``model.generate``. On 2 CPU
  cores decoding is compute-bound, so the gain grows with the batch: 3.2x at 8, 5.5x at 16
  (measured 2026-11-25; the target holds at the default batch of 16);
* quality (``--quality``): the fine-tuned model (the default profile's training recipe) beats
  the same base model prompted few-shot on the synthetic test split; the fine-tuned model is
  also run with schema-constrained decoding to report its quality and speed effect. Measured
  2026-11-25 on 2 cores, 32 test requests: fine-tuned FlowSim 0.506 (93.8% parsed), constrained
  0.565 (100% parsed, 0.75x the tokens/s), the same base model with 3 fixed examples 0.000
  (37.5% parsed).

Prints one JSON object (ratios and raw figures) and writes it to ``--out`` if given.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path


def _bare_loop(model, batches, lr: float) -> list[tuple[int, float]]:
    """Forward + backward + AdamW step on pre-collated batches; (tokens, seconds) per step."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    out = []
    for ids, mask, labels in batches:
        t0 = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        out.append((int(mask.sum()), time.perf_counter() - t0))
    return out


def _rate(steps: list[tuple[int, float]]) -> float:
    steps = steps[1:] if len(steps) > 1 else steps  # first step = warm-up
    return sum(t for t, _ in steps) / sum(s for _, s in steps)


def bench_training(model, tok, rows, *, steps: int, batch_size: int, max_length: int) -> dict:
    from peft import LoraConfig, get_peft_model

    from wfutils.slm.training import TrainConfig, _schedule, collate, encode_dataset, train_lora

    config = TrainConfig(max_steps=steps, batch_size=batch_size, max_length=max_length, truncation="drop",
                         checkpoint_every=max(1, steps // 2), warmup_steps=0)
    examples, _ = encode_dataset(tok, rows, max_length=max_length, truncation="drop")
    schedule = _schedule(len(examples), [len(e) for e in examples], config)
    batches = [collate([examples[i] for i in mb], tok.pad_token_id) for mb in schedule]
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules=list(config.lora_targets),
                      task_type="CAUSAL_LM", lora_dropout=0.0)
    bare = _bare_loop(get_peft_model(copy.deepcopy(model), lora), batches, config.learning_rate)
    with tempfile.TemporaryDirectory() as tmp:
        result = train_lora(rows, Path(tmp) / "run", config, model=copy.deepcopy(model), tokenizer=tok,
                            progress=False)
    ours = [(p["tokens"], p["seconds"]) for p in result.record["loss_curve"]]
    bare_rate, our_rate = _rate(bare), _rate(ours)
    padded = sum(int(ids.numel()) for ids, _, _ in batches)
    real = sum(int(mask.sum()) for _, mask, _ in batches)
    return {"steps": steps, "batch_size": batch_size, "bare_tokens_per_s": round(bare_rate, 1),
            "train_lora_tokens_per_s": round(our_rate, 1), "ratio": round(our_rate / bare_rate, 3),
            "target": ">= 0.85", "padding_fraction": round(1 - real / padded, 4),
            "losses": [p["loss"] for p in result.record["loss_curve"]]}


def bench_generation(model, tok, rows, *, n: int, batch_sizes: list[int], max_new_tokens: int) -> dict:
    import torch

    from wfutils.slm.generation import _stop_ids, generate_batch
    from wfutils.slm.training import prompt_token_ids

    prompts = [prompt_token_ids(tok, r["request"]) for r in rows[:n]]
    stop = _stop_ids(tok)
    model.eval()
    # one at a time: plain model.generate, no padding
    t0 = time.perf_counter()
    single_tokens = 0
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=stop, pad_token_id=tok.pad_token_id)
            new = out[0, len(p):].tolist()
            single_tokens += next((k + 1 for k, t in enumerate(new) if t in stop), len(new))
    single_s = time.perf_counter() - t0
    single_rate = single_tokens / single_s
    report = {"n": len(prompts), "max_new_tokens": max_new_tokens, "single_tokens": single_tokens,
              "single_tokens_per_s": round(single_rate, 1), "target": ">= 4", "batched": []}
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    for batch_size in batch_sizes:
        t0 = time.perf_counter()
        batched_tokens = 0
        for start in range(0, len(order), batch_size):
            outs = generate_batch(model, tok, [prompts[i] for i in order[start:start + batch_size]],
                                  max_new_tokens=max_new_tokens)
            batched_tokens += sum(o.completion_tokens for o in outs)
        batched_rate = batched_tokens / (time.perf_counter() - t0)
        report["batched"].append({"batch_size": batch_size, "tokens": batched_tokens,
                                  "tokens_per_s": round(batched_rate, 1), "ratio": round(batched_rate / single_rate, 2)})
    return report


def bench_quality(model, tok, data, *, steps: int, n_test: int, shots: int, workdir: Path,
                  batch_size: int = 16) -> dict:
    """Fine-tuned vs the same base model prompted few-shot, and the fine-tuned model with and
    without schema-constrained decoding (quality and speed of each)."""
    from wfutils.flows.flowsim import flow_similarity
    from wfutils.slm.generation import default_max_new_tokens, generate_predictions, schema_constraint
    from wfutils.data.predictions import read_predictions
    from wfutils.llm.strategies import fixed_examples
    from wfutils.slm.training import TrainConfig, load_finetuned, train_lora

    train, test = data["train"].to_list(), data["test"].to_list()[:n_test]
    budget = min(768, default_max_new_tokens(tok, [r["flow"] for r in test]))
    t0 = time.perf_counter()
    config = TrainConfig(max_steps=steps, max_length=512, truncation="drop", batch_size=2, grad_accum=2,
                         gradient_checkpointing=False)  # the default profile's recipe
    result = train_lora(train, workdir / "slm", config, progress=True)
    train_s = time.perf_counter() - t0
    tuned, tok2 = load_finetuned(workdir / "slm")
    seconds = {}

    def generate(name, model_, tok_, **kwargs):
        start = time.perf_counter()
        generate_predictions(model_, tok_, test, workdir / f"{name}.jsonl", system=f"slm-{name}", split="test",
                             max_new_tokens=budget, batch_size=batch_size, **kwargs)
        seconds[name] = time.perf_counter() - start

    generate("tuned", tuned, tok2)
    generate("tuned_constrained", tuned, tok2, logits_processor_factory=schema_constraint(tok2))
    examples = [(e.request, e.flow) for e in fixed_examples(train, shots)]
    generate("fewshot", model, tok, examples=examples)
    out = {"train_steps": steps, "train_seconds": round(train_s, 1), "final_loss": result.record.get("final_loss"),
           "train_tokens_per_s": result.record.get("tokens_per_s"), "n_test": len(test), "shots": shots,
           "max_new_tokens": budget}
    for name in ("tuned", "tuned_constrained", "fewshot"):
        preds = read_predictions(workdir / f"{name}.jsonl")
        tokens = sum(p.completion_tokens or 0 for p in preds)
        out[name] = {
            "flowsim": round(sum(flow_similarity(p.output, p.reference, with_inputs=False) for p in preds) / len(preds), 3),
            "flowsim_inputs": round(sum(flow_similarity(p.output, p.reference) for p in preds) / len(preds), 3),
            "parsed": round(sum(p.parse_status in ("ok", "repaired") for p in preds) / len(preds), 3),
            "generation_seconds": round(seconds[name], 1),
            "tokens_per_s": round(tokens / seconds[name], 1),
        }
    out["tuned_minus_fewshot"] = round(out["tuned"]["flowsim"] - out["fewshot"]["flowsim"], 3)
    out["constrained_minus_unconstrained"] = round(out["tuned_constrained"]["flowsim"] - out["tuned"]["flowsim"], 3)
    out["constrained_speed_ratio"] = round(out["tuned_constrained"]["tokens_per_s"] / out["tuned"]["tokens_per_s"], 3)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gen-batch-sizes", type=int, nargs="+", default=[8, 16],
                        help="batched generation sizes to compare with one at a time (16: the default profile)")
    parser.add_argument("--gen-n", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true", help="only the quality comparison")
    parser.add_argument("--quality-steps", type=int, default=100)
    parser.add_argument("--quality-n-test", type=int, default=32)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="keep the quality run here (default: temporary)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    from wfutils.data.synthetic import build_synthetic
    from wfutils.models import load_model_and_tokenizer
    from wfutils.slm.training import peak_rss_gib, set_threads

    threads = set_threads(args.threads)
    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(args.model, device="cpu")
    data = build_synthetic(seed=0, n_train=400 if args.quality else 64, n_test=max(args.gen_n, args.quality_n_test),
                           n_ood=0)
    report = {"model": args.model, "torch_threads": threads, "load_seconds": round(time.perf_counter() - t0, 1)}
    if not args.skip_speed:
        report["training"] = bench_training(model, tok, data["train"].to_list(), steps=args.train_steps,
                                            batch_size=args.batch_size, max_length=768)
        print(json.dumps({"training": report["training"]}), file=sys.stderr)
        report["generation"] = bench_generation(model, tok, data["test"].to_list(), n=args.gen_n,
                                                batch_sizes=args.gen_batch_sizes, max_new_tokens=args.max_new_tokens)
        print(json.dumps({"generation": report["generation"]}), file=sys.stderr)
    if args.quality:
        workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="slm_bench_"))
        report["quality"] = bench_quality(model, tok, data, steps=args.quality_steps, n_test=args.quality_n_test,
                                          shots=args.shots, workdir=workdir)
    report["peak_rss_gib"] = peak_rss_gib()
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
