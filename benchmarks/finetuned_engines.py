"""The fine-tuned arm on two engines, on the same requests: which should serve it, and is the adapter applied?

A finished run's adapter (``<run>/slm``) answers the first ``--n`` synthetic test requests of that run, greedily,
under the answer budget notebook 02's rule gives for those requests, through:

* ``peft``: the unmerged ``PeftModel`` in float32, one request at a time (no padding): the reference answers;
* ``transformers``: the merged float32 model, all requests in one left-padded batch (what notebook 02 runs);
* ``llama.cpp``: the registry's GGUF of the base model (the file the prompted arm serves) with the adapter
  exported as a GGUF LoRA (``wfutils.slm.export``), one request at a time; then the same server with the
  LoRA scale set to 0, i.e. the base model, to show that the adapter changes the answers.

Printed per engine: wall seconds, generated tokens per second and its ratio to ``transformers`` in the same run,
answers identical to ``peft``'s, mean FlowSim with inputs and parse rate; for llama.cpp also the answers the
adapter changed. Engines run one after the other on an otherwise idle machine: their ratios mean something,
single figures move with the machine's load.

Usage: python benchmarks/finetuned_engines.py RUN_DIR [--n 16] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _score(answers: list[str], references: list[str]) -> dict[str, float]:
    from wfutils.flows.flowsim import flow_similarities
    from wfutils.flows.parsing import parse_flow

    return {"flowsim_with_inputs": round(float(flow_similarities(answers, references).mean()), 4),
            "parse_rate": round(sum(parse_flow(a).status == "ok" for a in answers) / len(answers), 4)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--n", type=int, default=16, help="first N synthetic test requests")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from wfutils.data.store import load_run_data
    from wfutils.engines.llamacpp import llamacpp_server
    from wfutils.llm.client import connect
    from wfutils.slm.export import export_gguf_lora
    from wfutils.slm.formatting import SYSTEM_PROMPT, prompt_token_ids, training_messages
    from wfutils.slm.generation import default_max_new_tokens, slm_engine
    from wfutils.slm.training import load_finetuned, read_training_record
    from wfutils.weights import WEIGHTS, require

    torch.set_num_threads(args.threads)
    slm_dir = args.run_dir / "slm"
    base_model = read_training_record(slm_dir)["base_model"]
    if base_model not in WEIGHTS:
        sys.exit(f"{base_model} is not a registry model: llama.cpp needs its GGUF")
    rows = load_run_data(args.run_dir)["synthetic"]["test"].select(range(args.n)).to_list()
    references = [r["flow"] for r in rows]
    results: dict[str, dict[str, Any]] = {}

    def record(name: str, answers: list[str], tokens: int, seconds: float, **extra: Any) -> None:
        results[name] = {"seconds": round(seconds, 1), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1),
                         "answers": answers, **_score(answers, references), **extra}
        print(f"{name}: {seconds:.1f} s, {tokens / seconds:.1f} tokens/s, {results[name]}"[:300], flush=True)

    model, tokenizer = load_finetuned(slm_dir, merge=False)
    budget = default_max_new_tokens(tokenizer, references, cap=320)
    prompts = [prompt_token_ids(tokenizer, r["request"], system_prompt=SYSTEM_PROMPT) for r in rows]
    with slm_engine(model, tokenizer) as engine:
        start, out = time.perf_counter(), []
        for ids in prompts:
            out += engine.generate([ids], max_new_tokens=budget)
        record("peft", [g.text for g in out], sum(g.completion_tokens for g in out), time.perf_counter() - start)
    del model, engine
    model, tokenizer = load_finetuned(slm_dir, merge=True)
    with slm_engine(model, tokenizer) as engine:
        start = time.perf_counter()
        out = engine.generate(prompts, max_new_tokens=budget)
        record("transformers", [g.text for g in out], sum(g.completion_tokens for g in out),
               time.perf_counter() - start, batch=len(prompts))
    del model, engine

    with tempfile.TemporaryDirectory() as tmp:
        lora = export_gguf_lora(slm_dir, Path(tmp) / "adapter.gguf", require(WEIGHTS[base_model]))
        with llamacpp_server(base_model, threads=args.threads, lora=lora, lora_scale=1.0) as server:
            for name, scale in (("llama.cpp", 1.0), ("llama.cpp base (LoRA scale 0)", 0.0)):
                server.set_lora_scale(scale)
                client = connect(server)
                start, answers, tokens = time.perf_counter(), [], 0
                for r in rows:
                    reply = client.chat(training_messages(r["request"]), max_tokens=budget, use_cache=False)
                    if reply.error:
                        sys.exit(f"llama.cpp failed on {r['id']}: {reply.error}")
                    answers.append(reply.text)
                    tokens += reply.completion_tokens
                record(name, answers, tokens, time.perf_counter() - start, quantisation=server.quantisation)

    reference = results["peft"]["answers"]
    for name, values in results.items():
        values["identical_to_peft"] = sum(a == b for a, b in zip(values["answers"], reference))
        values["speed_vs_transformers"] = round(values["tokens_per_s"] / results["transformers"]["tokens_per_s"], 2)
    changed = sum(a != b for a, b in zip(results["llama.cpp"]["answers"],
                                         results["llama.cpp base (LoRA scale 0)"]["answers"]))
    print(f"\n{args.n} requests, answer budget {budget} tokens, {args.threads} threads, base model {base_model}")
    print(f"{'engine':32} {'s':>7} {'tok/s':>7} {'x trf':>6} {'=peft':>6} {'FlowSim':>8} {'parsed':>7}")
    for name, v in results.items():
        print(f"{name:32} {v['seconds']:7.1f} {v['tokens_per_s']:7.1f} {v['speed_vs_transformers']:6.2f} "
              f"{v['identical_to_peft']:6d} {v['flowsim_with_inputs']:8.3f} {v['parse_rate']:7.2f}")
    print(f"answers the GGUF LoRA changed against the same server at scale 0: {changed} of {args.n}")
    summary = {"n": args.n, "budget": budget, "threads": args.threads, "base_model": base_model,
               "adapter_changed": changed, "engines": results}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


if __name__ == "__main__":
    main()
