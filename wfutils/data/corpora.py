"""Corpora other than the synthetic one: registered converters and a user's own JSON Lines file.

Wherever a corpus is named (``build_all(corpora=...)``, notebook 01's ``corpora``, a profile,
``-p corpora=[...]``), an item is either

* the **name of a registered converter** (:mod:`wfutils.data.converters`: ``n8n``,
  ``logic_apps``, or one another module or package registers), read in place from the shared data
  folder (by default ``<repo>/../shared/data``, overridden by ``WFBOOK_SHARED_DATA`` or the
  ``shared_data`` argument) and converted to the flow format as one split, ``test``; or
* the **path of a JSON Lines file** of (request, flow) pairs (anything that is not a plain name:
  ``/abs/path/pairs.jsonl``, ``./pairs.jsonl``), whose corpus is called after the file's stem
  (``pairs``) and keeps the splits it names or is split by the run's seed.

Both come back from :func:`load_corpus` as a :class:`datasets.DatasetDict` with the columns of
:mod:`wfutils.data.records`. What could not be used is never dropped silently: the DatasetDict
carries ``skipped`` (a list of ``(path, reason)``; for a JSON Lines file the path is
``file:line``), ``root`` (the folder or file read) and ``params`` (what :func:`save_dataset
<wfutils.data.store.save_dataset>` records in ``info.json``), and a summary is logged.

The converters' mapping tables live with them: :mod:`wfutils.data.converters.n8n` (awesome-n8n-
templates, CC BY 4.0) and :mod:`wfutils.data.converters.logic_apps` (Azure Logic Apps templates,
MIT).

JSON Lines corpora
    One JSON object per line (blank lines are ignored):

    ==========  ========  ===============================================================
    field       needed    meaning
    ==========  ========  ===============================================================
    request     yes       the natural-language request (a non-empty string)
    flow        yes       the flow (SPEC section 2): an object, or a string holding its JSON
    id          no        a unique string; default ``<stem>-<line number>``
    features    no        feature tags (a list of strings); default
                          :func:`wfutils.flows.vocabulary.flow_features` of the flow
    split       no        ``train``, ``validation`` or ``test``: on every line or on none
    ==========  ========  ===============================================================

    Every line is checked before anything is built. A bad line (not JSON, not an object, no or an
    empty ``request``, no ``flow``, a flow that is not JSON or fails the schema, a duplicate id, a
    bad ``split``, ``features`` that are not a list of strings) is reported as ``file:line`` with
    its reason and the other lines load. A file that does not exist, is a folder, is empty, has no
    valid line, or gives ``split`` on some lines only is an error naming the file (and the line).

    Without ``split`` the pairs are split by the run's seed (:func:`seed_split_sizes`): by default
    10% ``validation`` and 20% ``test`` (rounded, at least one each from three pairs on), the rest
    ``train``; pairs are ordered by a hash of the seed and their id, so the same file and seed give
    the same split in any order, and adding pairs moves few others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from datasets import DatasetDict

from wfutils.data.converters import RESERVED_NAMES, Converter, available_converters, get_converter
from wfutils.data.converters.logic_apps import FOLDER as LOGIC_APPS_DIR  # the built-ins' folders, for callers
from wfutils.data.converters.n8n import FOLDER as N8N_DIR
from wfutils.data.records import rows_to_dataset
from wfutils.flows.schema import validate_flow
from wfutils.flows.vocabulary import flow_features, flow_text

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_JSONL_SIZES", "JSONL_SPLITS", "LOGIC_APPS_DIR", "N8N_DIR", "CorpusSpec", "JsonlPair",
           "check_corpora", "convert_corpus", "corpus_file_digests", "corpus_folder", "corpus_name",
           "is_corpus_path", "load_corpus", "load_jsonl_corpus", "load_logic_apps", "load_n8n", "read_jsonl_pairs",
           "resolve_corpora", "seed_assign", "seed_split_sizes", "shared_data_root", "split_by_seed",
           "check_max_flow_chars", "check_train_corpus", "drop_long_flows"]

#: The splits a JSON Lines corpus may have, in the order they are stored.
JSONL_SPLITS = ("train", "validation", "test")
#: Shares (a float in [0, 1]) or counts (an int) of the seed split; ``train`` takes the rest.
DEFAULT_JSONL_SIZES: dict[str, float | int] = {"validation": 0.1, "test": 0.2}
#: Reasons of bad lines logged one by one before the rest are only counted.
MAX_LOGGED_LINES = 20
Skipped = list[tuple[str, str]]

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def shared_data_root(shared_data: str | os.PathLike[str] | None = None) -> Path:
    """The shared data folder: argument, else ``$WFBOOK_SHARED_DATA``, else ``../shared/data`` beside the repository.

    "Beside the repository" is looked up from the working directory (the pipeline runs notebooks
    from the repository root), then from this source tree (an editable install); the first that
    exists wins, so an installed package works from the repository's folder too.
    """
    if shared_data is not None:
        return Path(shared_data)
    env = os.environ.get("WFBOOK_SHARED_DATA")
    if env:
        return Path(env)
    candidates = [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    return next((path for path in candidates if path.is_dir()), candidates[0])


def _missing_folder_message(name: str, folder: str, path: Path) -> str:
    return (f"corpus {name!r} needs {path}, which does not exist (set WFBOOK_SHARED_DATA or -p shared_data=... "
            f"to the folder holding {folder}/, or leave {name!r} out of -p corpora=[...])")


def corpus_folder(converter: Converter | str, *, root: str | os.PathLike[str] | None = None,
                  shared_data: str | os.PathLike[str] | None = None) -> Path:
    """The folder a converter reads (``root``, else ``<shared data>/<its folder>``); FileNotFoundError when missing."""
    converter = get_converter(converter) if isinstance(converter, str) else converter
    path = Path(root) if root is not None else shared_data_root(shared_data) / converter.folder
    if not path.is_dir():
        raise FileNotFoundError(
            f"corpus folder {path} does not exist; put the {converter.folder} corpus there, set WFBOOK_SHARED_DATA "
            f"to the folder that holds {converter.folder}/, or pass root= / shared_data=")
    return path


# ============================================================================ names and paths


def is_corpus_path(item: str | os.PathLike[str]) -> bool:
    """True when ``item`` names a file rather than a registered converter (anything but a plain name)."""
    return not (isinstance(item, str) and _PLAIN_NAME.match(item))


def corpus_name(item: str | os.PathLike[str]) -> str:
    """The data-set name of a corpora item: the name itself, or a JSON Lines file's stem."""
    return Path(os.fspath(item)).stem if is_corpus_path(item) else str(item)


@dataclass(frozen=True)
class CorpusSpec:
    """One resolved item of a corpora list: its data-set name and either a converter or a file."""

    name: str
    converter: Converter | None = None
    path: Path | None = None


def _as_list(corpora: Any) -> list[Any]:
    if isinstance(corpora, (str, os.PathLike)):
        return [corpora]
    if corpora is None:
        return []
    if not isinstance(corpora, Iterable) or isinstance(corpora, Mapping):
        raise ValueError(f"corpora must be a list of corpus names and JSON Lines paths, got {corpora!r}")
    return list(corpora)


def _resolve(corpora: Any, base_dir: str | os.PathLike[str] | None) -> tuple[list[CorpusSpec], list[str]]:
    specs: list[CorpusSpec] = []
    problems: list[str] = []
    try:
        items = _as_list(corpora)
    except ValueError as exc:
        return [], [str(exc)]
    taken: dict[str, str] = {}
    converter_names: set[str] | None = None
    for item in items:
        if not isinstance(item, (str, os.PathLike)) or not os.fspath(item):
            problems.append(f"corpus {item!r} is neither a corpus name nor a file path")
            continue
        if not is_corpus_path(item):
            try:
                spec = CorpusSpec(item, converter=get_converter(item))
            except ValueError as exc:
                problems.append(str(exc))
                continue
        else:
            path = Path(os.fspath(item)).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            name = path.stem
            if not _STEM.match(name):
                problems.append(f"{path}: the corpus is named after the file's stem, and {name!r} is not a usable "
                                f"name (letters, digits, '_', '-', '.'); rename the file")
                continue
            if converter_names is None:
                converter_names = {n.casefold() for n in available_converters()}
            reserved = name.casefold() in {r.casefold() for r in RESERVED_NAMES}
            if reserved or name.casefold() in converter_names:
                problems.append(f"{path}: its corpus would be called {name!r}, the name of a "
                                f"{'built-in data set' if reserved else 'registered converter'}; rename the file")
                continue
            spec = CorpusSpec(name, path=path)
        key = spec.name.casefold()
        if key in taken:
            problems.append(f"corpus {spec.name!r} is listed twice ({taken[key]} and {os.fspath(item)})")
            continue
        taken[key] = os.fspath(item)
        specs.append(spec)
    return specs, problems


def resolve_corpora(corpora: Iterable[str | os.PathLike[str]] | str, *,
                    base_dir: str | os.PathLike[str] | None = None) -> list[CorpusSpec]:
    """Names and JSON Lines paths -> :class:`CorpusSpec` s; ValueError listing every unknown name, clash or duplicate.

    Relative paths are taken relative to ``base_dir`` (default: the working directory).
    """
    specs, problems = _resolve(corpora, base_dir)
    if problems:
        raise ValueError("bad corpora list:\n  " + "\n  ".join(problems))
    return specs


def check_corpora(corpora: Iterable[str | os.PathLike[str]] | str, shared_data: str | os.PathLike[str] | None = None,
                  *, base_dir: str | os.PathLike[str] | None = None, schema: bool = True) -> list[str]:
    """Problems that would stop :func:`wfutils.data.store.build_all` with these corpora ([] when none).

    For the pipeline, before any notebook runs: names must be registered converters whose folder
    exists under the shared data folder; paths must be JSON Lines files with at least one valid
    pair and ``split`` on every line or on none (every line is read and, with ``schema``, its flow
    checked against the schema, as :func:`load_jsonl_corpus` does; bad lines are not problems,
    they are skipped and reported when the corpus is built). Also reported: a file stem that clashes
    with a converter's name or ``synthetic``, and a corpus listed twice. Relative paths are taken
    relative to ``base_dir`` (default: the working directory; the pipeline runs notebooks from the
    repository root).
    """
    specs, problems = _resolve(corpora, base_dir)
    root = None
    for spec in specs:
        if spec.converter is not None:
            root = root or shared_data_root(shared_data)
            folder = root / spec.converter.folder
            if not folder.is_dir():
                problems.append(_missing_folder_message(spec.name, spec.converter.folder, folder))
        else:
            try:
                read_jsonl_pairs(spec.path, schema=schema)
            except (OSError, ValueError) as exc:
                problems.append(str(exc))
    return problems


def check_train_corpus(train_corpus: Any, corpora: Iterable[str | os.PathLike[str]] | str, *,
                       base_dir: str | os.PathLike[str] | None = None,
                       sizes: Mapping[str, float | int] | None = None) -> list[str]:
    """Problems with ``train_corpus`` for a run whose notebook 01 loads ``corpora`` ([] when none).

    It must be ``synthetic`` or the name of one of the corpora (a converter name, or the stem of
    a JSON Lines path), and that corpus must end up with a ``train`` split: a JSON Lines file
    with a ``split`` column needs ``train`` lines; one split by the seed needs enough pairs.
    Converter corpora are split by the seed when they are the training corpus.
    """
    if not isinstance(train_corpus, str) or not train_corpus:
        return [f"train_corpus must be a corpus name such as 'synthetic', got {train_corpus!r}"]
    if train_corpus == "synthetic":
        return []
    specs, _ = _resolve(corpora, base_dir)
    spec = next((s for s in specs if s.name == train_corpus), None)
    if spec is None:
        names = ", ".join(["synthetic", *(s.name for s in specs)])
        return [f"train_corpus {train_corpus!r} names no corpus of this run (it has: {names}); add it to "
                f"notebook 01's corpora (a converter name, or a .jsonl path whose file stem is {train_corpus!r})"]
    if spec.path is None:
        return []
    try:
        pairs, _ = read_jsonl_pairs(spec.path, schema=False)
    except (OSError, ValueError):
        return []  # check_corpora reports the file itself
    if pairs[0].split is not None:
        if not any(p.split == "train" for p in pairs):
            return [f"{spec.path}: train_corpus {train_corpus!r} has a `split` column but no line with split "
                    "\"train\"; mark the training pairs, or drop the column to split by the run's seed"]
    else:
        try:
            counts = seed_split_sizes(len(pairs), sizes)
        except ValueError as exc:
            return [f"{spec.path}: {exc}"]
        if counts["train"] == 0:
            return [f"{spec.path}: train_corpus {train_corpus!r} has {len(pairs)} pair(s), too few to keep any "
                    "for training after the validation and test splits"]
    return []


def corpus_file_digests(corpora: Iterable[str | os.PathLike[str]] | str, *,
                        base_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """``{corpus name: "sha256:<hex>"}`` of the JSON Lines files in a corpora list (names and missing files left out).

    A run's reuse key should include these: the same path with new content must rebuild the data.
    """
    out: dict[str, str] = {}
    for spec in _resolve(corpora, base_dir)[0]:
        if spec.path is not None and spec.path.is_file():
            digest = hashlib.sha256()
            with spec.path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            out[spec.name] = "sha256:" + digest.hexdigest()
    return out


# ============================================================================ the framework


def _finish(splits: dict[str, list[dict[str, Any]]], skipped: Skipped, root: Path, params: dict[str, Any]) -> DatasetDict:
    dd = DatasetDict({split: rows_to_dataset(rows) for split, rows in splits.items()})
    dd.skipped = skipped  # type: ignore[attr-defined]
    dd.root = root  # type: ignore[attr-defined]
    dd.params = params  # type: ignore[attr-defined]
    return dd


def _summary(skipped: Skipped) -> str:
    reasons: dict[str, int] = defaultdict(int)
    for _, reason in skipped:
        reasons[reason.split(":")[0]] += 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) or "none"


def convert_corpus(converter: Converter | str, *, root: str | os.PathLike[str] | None = None,
                   shared_data: str | os.PathLike[str] | None = None) -> DatasetDict:
    """Run a registered converter on its folder and make its pairs a checked DatasetDict (split ``test``).

    The converter yields raw pairs; here each flow is checked with
    :func:`~wfutils.flows.schema.validate_flow` (a failing one is skipped with the first messages),
    ids are given (``<name>-0000`` ... for ``None``) and checked unique, and each row gets its
    feature tags, compact flow text and the converter's domain.
    """
    conv = get_converter(converter) if isinstance(converter, str) else converter
    base = corpus_folder(conv, root=root, shared_data=shared_data)
    skipped: Skipped = []
    rows: list[dict[str, Any]] = []
    ids: set[str] = set()
    for ident, request, flow, path in conv.function(base, skipped):
        path = str(path)
        if not isinstance(request, str) or not request.strip():
            skipped.append((path, "empty request"))
            continue
        if isinstance(flow, str):
            try:
                flow = json.loads(flow)
            except ValueError as exc:
                skipped.append((path, f"converted flow is not JSON: {exc}"))
                continue
        errors = validate_flow(flow)
        if errors:
            skipped.append((path, "converted flow is not schema-valid: " + "; ".join(errors[:3])))
            continue
        ident = f"{conv.name}-{len(rows):04d}" if ident is None else str(ident)
        if ident in ids:
            skipped.append((path, f"duplicate id {ident!r}"))
            continue
        ids.add(ident)
        rows.append({"id": ident, "request": request, "flow": flow_text(flow),
                     "features": sorted(flow_features(flow)), "domain": conv.domain})
    log.info("%s: %d pairs converted from %s, %d skipped (%s)", conv.name, len(rows), base, len(skipped),
             _summary(skipped))
    return _finish({"test": rows}, skipped, base, {"root": str(base), "converter": conv.source})


def load_corpus(name_or_path: str | os.PathLike[str], *, shared_data: str | os.PathLike[str] | None = None,
                seed: int = 0, sizes: Mapping[str, float | int] | None = None,
                root: str | os.PathLike[str] | None = None) -> DatasetDict:
    """A corpus by converter name (split ``test``) or JSON Lines path (its own splits, or split by ``seed`` / ``sizes``).

    ``shared_data`` and ``root`` apply to converters (the shared data folder, or the corpus folder
    itself); ``seed`` and ``sizes`` to JSON Lines files without a ``split`` field
    (:func:`seed_split_sizes`).
    """
    if is_corpus_path(name_or_path):
        return load_jsonl_corpus(name_or_path, seed=seed, sizes=sizes)
    return convert_corpus(str(name_or_path), root=root, shared_data=shared_data)


def load_n8n(root: str | os.PathLike[str] | None = None, *, shared_data: str | os.PathLike[str] | None = None) -> DatasetDict:
    """The awesome-n8n-templates corpus (:mod:`wfutils.data.converters.n8n`), split ``test``."""
    return convert_corpus("n8n", root=root, shared_data=shared_data)


def load_logic_apps(root: str | os.PathLike[str] | None = None, *, shared_data: str | os.PathLike[str] | None = None) -> DatasetDict:
    """The Azure Logic Apps templates (:mod:`wfutils.data.converters.logic_apps`), split ``test``."""
    return convert_corpus("logic_apps", root=root, shared_data=shared_data)


# ============================================================================ JSON Lines


@dataclass
class JsonlPair:
    """A valid line of a JSON Lines corpus."""

    line: int
    id: str
    request: str
    flow: dict[str, Any]
    features: list[str] | None
    split: str | None


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def _check_line(obj: dict[str, Any], schema: bool) -> tuple[list[str], dict[str, Any] | None]:
    problems: list[str] = []
    request = obj.get("request")
    if "request" not in obj:
        problems.append("missing `request`")
    elif not isinstance(request, str) or not request.strip():
        problems.append(f"`request` must be a non-empty string, got {json.dumps(request)[:40]}")
    flow = obj.get("flow")
    if "flow" not in obj or flow is None:
        problems.append("missing `flow`")
        flow = None
    else:
        if isinstance(flow, str):
            try:
                flow = json.loads(flow)
            except (ValueError, RecursionError) as exc:
                problems.append(f"`flow` is a string but not JSON ({exc})")
                flow = None
        if flow is not None and not isinstance(flow, dict):
            problems.append(f"`flow` must be a JSON object (or a string holding one), got {_type_name(flow)}")
            flow = None
        elif flow is not None and schema:
            errors = validate_flow(flow)
            if errors:
                problems.append("flow fails the schema: " + "; ".join(errors[:3]))
                flow = None
    ident = obj.get("id")
    if ident is not None and (not isinstance(ident, str) or not ident.strip()):
        problems.append(f"`id` must be a non-empty string, got {json.dumps(ident)[:40]}")
    split = obj.get("split")
    if split is not None and split not in JSONL_SPLITS:
        problems.append(f"`split` must be one of {', '.join(JSONL_SPLITS)}, got {json.dumps(split)[:40]}")
    features = obj.get("features")
    if features is not None and (not isinstance(features, list) or not all(isinstance(f, str) for f in features)):
        problems.append("`features` must be a list of strings")
    return problems, flow


def read_jsonl_pairs(path: str | os.PathLike[str], *, schema: bool = True) -> tuple[list[JsonlPair], Skipped]:
    """Read and check every line of a JSON Lines corpus: its valid pairs and ``(file:line, reason)`` for the others.

    Raises FileNotFoundError / ValueError naming the file when it does not exist, is a folder, is
    not UTF-8, is empty, holds no JSON object at all ("is not JSON Lines"), gives ``split`` on some
    lines only (naming the first line without one), or has no valid pair.
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"corpus file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"corpus file {path} is a folder, not a JSON Lines file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"corpus file {path} is not UTF-8 text ({exc}); it is not JSON Lines") from exc
    except OSError as exc:
        raise ValueError(f"corpus file {path} cannot be read: {exc}") from exc
    stem = path.stem
    skipped: Skipped = []
    good: list[JsonlPair] = []
    objects = 0
    lines = 0
    with_split: int | None = None
    without_split: int | None = None
    for lineno, raw in enumerate(text.split("\n"), 1):  # not splitlines(): JSON strings may hold U+2028
        if not raw.strip():
            continue
        lines += 1
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            skipped.append((where, f"not JSON ({exc})"))
            continue
        if not isinstance(obj, dict):
            skipped.append((where, f"not a JSON object (a JSON {_type_name(obj)})"))
            continue
        objects += 1
        if obj.get("split") is None:
            without_split = without_split or lineno
        else:
            with_split = with_split or lineno
        problems, flow = _check_line(obj, schema)
        if problems:
            skipped.append((where, "; ".join(problems)))
            continue
        features = obj.get("features")
        good.append(JsonlPair(lineno, obj.get("id") or f"{stem}-{lineno}", obj["request"], flow,  # type: ignore[arg-type]
                              list(dict.fromkeys(features)) if features is not None else None, obj.get("split")))
    if not lines:
        raise ValueError(f"corpus file {path} is empty")
    if not objects:
        first = skipped[0][1] if skipped else "no line is a JSON object"
        raise ValueError(f"corpus file {path} is not JSON Lines (one JSON object per line): line "
                         f"{skipped[0][0].rsplit(':', 1)[-1]}: {first}")
    if with_split is not None and without_split is not None:
        raise ValueError(f"{path}:{without_split}: no `split` field, but line {with_split} has one; give every line "
                         f"a split ({' / '.join(JSONL_SPLITS)}) or none (then the run's seed splits the corpus)")
    first_seen: dict[str, int] = {}
    pairs: list[JsonlPair] = []
    for pair in good:
        if pair.id in first_seen:
            skipped.append((f"{path}:{pair.line}", f"duplicate id {pair.id!r} (first on line {first_seen[pair.id]})"))
            continue
        first_seen[pair.id] = pair.line
        pairs.append(pair)
    skipped.sort(key=lambda item: int(item[0].rsplit(":", 1)[1]))
    if not pairs:
        raise ValueError(f"corpus file {path} has no valid (request, flow) pair; first problems: "
                         + " | ".join(f"line {p.rsplit(':', 1)[1]}: {r}" for p, r in skipped[:3]))
    return pairs, skipped


def seed_split_sizes(n: int, sizes: Mapping[str, float | int] | None = None) -> dict[str, int]:
    """How many of ``n`` pairs go to ``train`` / ``validation`` / ``test`` when the seed splits a JSON Lines corpus.

    ``sizes`` gives ``validation`` and ``test`` (default :data:`DEFAULT_JSONL_SIZES`: 0.1 and 0.2)
    as a share (a float in [0, 1], rounded half up) or a count (an int); ``train`` takes the rest.
    From three pairs on, a split asked for (a size above 0) gets at least one pair; one pair is
    ``test`` only, two are one ``train`` and one ``test``.

    >>> seed_split_sizes(50), seed_split_sizes(5000), seed_split_sizes(3)
    ({'train': 35, 'validation': 5, 'test': 10}, {'train': 3500, 'validation': 500, 'test': 1000}, {'train': 1, 'validation': 1, 'test': 1})
    """
    wanted = dict(DEFAULT_JSONL_SIZES)
    for key, value in (sizes or {}).items():
        if key not in ("validation", "test"):
            raise ValueError(f"JSON Lines split sizes are given for validation and test (train takes the rest), got {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
                (isinstance(value, float) and value > 1):
            raise ValueError(f"split size {key}={value!r}: use a share in [0, 1] (0.2) or a count (60)")
        wanted[key] = value

    def count(value: float | int) -> int:
        k = int(value * n + 0.5) if isinstance(value, float) else int(value)
        return max(k, 1) if value > 0 and n >= 3 else k

    if n < 3 and sizes is None:
        return {"train": max(n - 1, 0), "validation": 0, "test": min(n, 1)}
    out = {"validation": count(wanted["validation"]), "test": count(wanted["test"])}
    if out["validation"] + out["test"] > n:
        raise ValueError(f"split sizes {wanted} ask for {out['validation']} validation + {out['test']} test pairs, "
                         f"but the corpus has {n}")
    return {"train": n - out["validation"] - out["test"], **out}


def seed_assign(ids: Sequence[str], seed: int, counts: Mapping[str, int]) -> dict[str, str]:
    """``{id: split}``: the ids ordered by a hash of (seed, id), then cut into test, validation, train.

    The same ids and seed give the same split in any order, and adding pairs moves few others.
    """
    ordered = sorted(ids, key=lambda i: hashlib.sha256(f"wfbook-jsonl:{seed}:{i}".encode()).digest())
    assigned: dict[str, str] = {}
    start = 0
    for split in ("test", "validation", "train"):
        for i in ordered[start:start + counts.get(split, 0)]:
            assigned[i] = split
        start += counts.get(split, 0)
    return assigned


def split_by_seed(dd: DatasetDict, *, seed: int = 0, sizes: Mapping[str, float | int] | None = None) -> DatasetDict:
    """A corpus given as one split (a converter's ``test``) cut into train / validation / test by the seed.

    Used when such a corpus is the run's training corpus; sizes as for JSON Lines corpora
    (:func:`seed_split_sizes`). The result keeps ``params`` (with ``split_by: seed``) and ``skipped``.
    """
    rows = [row for split in dd for row in dd[split].to_list()]
    counts = seed_split_sizes(len(rows), sizes)
    assigned = seed_assign([r["id"] for r in rows], seed, counts)
    splits: dict[str, list[dict[str, Any]]] = {s: [] for s in JSONL_SPLITS if counts[s]}
    for row in rows:
        splits[assigned[row["id"]]].append(row)
    out = DatasetDict({split: rows_to_dataset(items) for split, items in splits.items()})
    out.params = {**getattr(dd, "params", {}), "split_by": "seed", "seed": seed,
                  "sizes": {**DEFAULT_JSONL_SIZES, **(sizes or {})}}
    out.skipped = getattr(dd, "skipped", [])
    return out


def check_max_flow_chars(max_chars: Any) -> None:
    """ValueError unless ``max_chars`` is a positive number of characters or None (:func:`drop_long_flows`)."""
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1):
        raise ValueError(f"max_flow_chars must be a positive number of characters or None, got {max_chars!r}")


def drop_long_flows(dd: DatasetDict, max_chars: int | None) -> DatasetDict:
    """``dd`` without the pairs whose flow, as compact JSON (:func:`~wfutils.flows.vocabulary.flow_text`), is
    longer than ``max_chars`` characters; every split alike, each dropped pair listed in ``skipped``.

    None keeps every pair. Small models answer within a token budget: a corpus of long flows
    teaches them nothing they can finish, so a run may study the flows that fit (and says so).
    """
    check_max_flow_chars(max_chars)
    if max_chars is None:
        return dd
    skipped: Skipped = list(getattr(dd, "skipped", []))
    kept: dict[str, list[dict[str, Any]]] = {}
    for split in dd:
        kept[split] = []
        for row in dd[split].to_list():
            flow = json.loads(row["flow"]) if isinstance(row["flow"], str) else row["flow"]
            length = len(flow_text(flow))
            if length > max_chars:
                skipped.append((row["id"], f"flow longer than max_flow_chars: {length} > {max_chars} characters"))
            else:
                kept[split].append(row)
    out = DatasetDict({split: rows_to_dataset(rows) for split, rows in kept.items()})
    out.skipped = skipped  # type: ignore[attr-defined]
    out.root = getattr(dd, "root", None)  # type: ignore[attr-defined]
    out.params = {**getattr(dd, "params", {}), "max_flow_chars": max_chars}  # type: ignore[attr-defined]
    log.info("%d pairs with flows longer than %d characters dropped (%s)", len(skipped) - len(getattr(dd, "skipped", [])),
             max_chars, ", ".join(f"{s} {len(r)} kept" for s, r in kept.items()))
    return out


def load_jsonl_corpus(path: str | os.PathLike[str], *, seed: int = 0,
                      sizes: Mapping[str, float | int] | None = None) -> DatasetDict:
    """A JSON Lines corpus as a DatasetDict named after the file's stem (see the module's description)."""
    path = Path(os.fspath(path)).expanduser()
    pairs, skipped = read_jsonl_pairs(path)
    name = path.stem
    by_column = pairs[0].split is not None
    if by_column:
        assigned = {p.line: p.split for p in pairs}
        counts = {s: sum(1 for p in pairs if p.split == s) for s in JSONL_SPLITS}
    else:
        counts = seed_split_sizes(len(pairs), sizes)
        by_id = seed_assign([p.id for p in pairs], seed, counts)
        assigned = {p.line: by_id[p.id] for p in pairs}
    splits: dict[str, list[dict[str, Any]]] = {s: [] for s in JSONL_SPLITS if counts[s]}
    for p in pairs:  # file order within each split
        features = p.features if p.features is not None else sorted(flow_features(p.flow))
        splits[assigned[p.line]].append({"id": p.id, "request": p.request, "flow": flow_text(p.flow),
                                         "features": features, "domain": name})
    for where, reason in skipped[:MAX_LOGGED_LINES]:
        log.warning("%s: skipped: %s", where, reason)
    if len(skipped) > MAX_LOGGED_LINES:
        log.warning("%s: %d more lines skipped (all are listed in the data set's info.json)", path,
                    len(skipped) - MAX_LOGGED_LINES)
    log.info("%s: %d pairs read from %s (%s), %d lines skipped", name, len(pairs), path,
             ", ".join(f"{s} {len(rows)}" for s, rows in splits.items()), len(skipped))
    params = {"source": str(path.resolve()), "split_by": "column" if by_column else "seed",
              "seed": None if by_column else seed,
              "sizes": None if by_column else {**DEFAULT_JSONL_SIZES, **(sizes or {})}}
    return _finish(splits, skipped, path, params)
