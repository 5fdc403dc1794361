"""Bring-your-own corpora: JSON Lines files, the converter registry, build_all and check_corpora, book/adapt.md."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest

from wfutils.data import converters
from wfutils.data.converters import available_converters, get_converter, register_converter, unregister_converter
from wfutils.data.corpora import (
    check_corpora,
    corpus_file_digests,
    corpus_name,
    is_corpus_path,
    load_corpus,
    load_jsonl_corpus,
    read_jsonl_pairs,
    seed_split_sizes,
)
from wfutils.data.records import COLUMNS
from wfutils.data.store import build_all, load_dataset, load_info, load_run_data
from wfutils.data.synthetic import build_synthetic
from wfutils.flows.vocabulary import flow_features, flow_text

BOOK = Path(__file__).resolve().parent.parent / "book"
SMALL = {"n_train": 4, "n_validation": 2, "n_test": 2, "n_ood": 1}


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, dict]]:
    """(request, flow) pairs with schema-valid flows, from the synthetic generator."""
    dd = build_synthetic(seed=11, n_train=60, n_test=0, n_ood=0, n_validation=0)
    return [(row["request"], json.loads(row["flow"])) for row in dd["train"]]


def _write(path: Path, lines: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n",
                    encoding="utf-8")
    return path


def _good(pairs, n: int, **extra) -> list[dict]:
    return [{"request": r, "flow": f, **extra} for r, f in pairs[:n]]


# ----------------------------------------------------------------------------- JSON Lines


def test_good_lines_load_and_every_bad_line_is_reported_with_file_line_and_reason(pairs, tmp_path, caplog):
    (r0, f0), (r1, f1), (r2, f2), (r3, f3) = pairs[:4]
    bad_schema = {"trigger": {"type": "no_such_trigger"}, "components": [{"order": 1}]}
    lines = [
        {"id": "a", "request": r0, "flow": f0},                                   # 1 good, flow object
        {"request": r1, "flow": json.dumps(f1)},                                  # 2 good, flow string, id pairs-2
        "{this is not json",                                                      # 3
        "[1, 2, 3]",                                                              # 4
        {"flow": f2},                                                             # 5 no request
        {"request": "   ", "flow": f2},                                           # 6 empty request
        {"request": r2},                                                          # 7 no flow
        {"request": r2, "flow": "{oops"},                                         # 8 flow string not JSON
        {"request": r2, "flow": bad_schema},                                      # 9 schema
        {"id": "a", "request": r2, "flow": f2},                                   # 10 duplicate id
        {"request": r2, "flow": f2, "features": "flow_logic"},                    # 11 features not a list
        {"request": r2, "flow": f2, "features": ["ok", 3]},                       # 12 features not strings
        {"request": r2, "flow": f2, "id": 7},                                     # 13 id not a string
        "",                                                                       # 14 blank: ignored
        {"request": r3, "flow": f3, "features": ["mine", "mine", "record_trigger"]},  # 15 good, own features
        {"request": r2, "flow": [1]},                                             # 16 flow not an object
    ] + _good(pairs[4:], 10)                                                      # 17..26 good
    path = _write(tmp_path / "pairs.jsonl", lines)
    with caplog.at_level(logging.INFO, logger="wfutils.data.corpora"):
        dd = load_corpus(path, seed=0)
    rows = {row["id"]: row for split in dd for row in dd[split]}
    assert len(rows) == 13 and set(dd) == {"train", "validation", "test"}
    assert {"a", "pairs-2", "pairs-15"} <= set(rows)
    assert rows["a"]["flow"] == flow_text(f0) and rows["pairs-2"]["flow"] == flow_text(f1)
    assert rows["a"]["features"] == sorted(flow_features(f0)) and rows["pairs-15"]["features"] == ["mine", "record_trigger"]
    assert {row["domain"] for row in rows.values()} == {"pairs"}
    for split in dd:
        assert tuple(dd[split].column_names) == COLUMNS
    reasons = {int(where.rsplit(":", 1)[1]): reason for where, reason in dd.skipped}
    assert all(where.startswith(f"{path}:") for where, _ in dd.skipped)
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16]
    assert reasons[3].startswith("not JSON")
    assert reasons[4].startswith("not a JSON object")
    assert "missing `request`" in reasons[5]
    assert "`request` must be a non-empty string" in reasons[6]
    assert "missing `flow`" in reasons[7]
    assert "`flow` is a string but not JSON" in reasons[8]
    assert reasons[9].startswith("flow fails the schema: ") and "no_such_trigger" in reasons[9]
    assert "duplicate id 'a' (first on line 1)" in reasons[10]
    assert "`features` must be a list of strings" in reasons[11] and "`features`" in reasons[12]
    assert "`id` must be a non-empty string" in reasons[13]
    assert "`flow` must be a JSON object" in reasons[16]
    logged = caplog.text
    assert f"{path}:9: skipped: flow fails the schema" in logged and "13 pairs read" in logged


def test_seed_split_is_deterministic_sized_and_independent_of_line_order(pairs, tmp_path):
    lines = [{"id": f"p{i}", **line} for i, line in enumerate(_good(pairs, 50))]
    path = _write(tmp_path / "fifty.jsonl", lines)
    first, again = load_jsonl_corpus(path, seed=3), load_jsonl_corpus(path, seed=3)
    assert {s: len(ds) for s, ds in first.items()} == {"train": 35, "validation": 5, "test": 10}
    assert all(first[s].to_list() == again[s].to_list() for s in first)
    ids = {s: set(first[s]["id"]) for s in first}
    assert set().union(*ids.values()) == {f"p{i}" for i in range(50)}
    assert first["train"]["id"] == sorted(first["train"]["id"], key=lambda i: int(i[1:]))  # file order kept
    shuffled = _write(tmp_path / "shuffled" / "fifty.jsonl", list(reversed(lines)))
    assert {s: set(ds["id"]) for s, ds in load_jsonl_corpus(shuffled, seed=3).items()} == ids
    other = load_jsonl_corpus(path, seed=4)
    assert set(other["test"]["id"]) != ids["test"]
    sized = load_jsonl_corpus(path, seed=3, sizes={"validation": 0, "test": 20})
    assert {s: len(ds) for s, ds in sized.items()} == {"train": 30, "test": 20}
    assert first.params == {"source": str(path.resolve()), "split_by": "seed", "seed": 3,
                            "sizes": {"validation": 0.1, "test": 0.2}}


def test_seed_split_sizes():
    assert seed_split_sizes(50) == {"train": 35, "validation": 5, "test": 10}
    assert seed_split_sizes(5000) == {"train": 3500, "validation": 500, "test": 1000}
    assert seed_split_sizes(3) == {"train": 1, "validation": 1, "test": 1}
    assert seed_split_sizes(2) == {"train": 1, "validation": 0, "test": 1}
    assert seed_split_sizes(1) == {"train": 0, "validation": 0, "test": 1}
    assert seed_split_sizes(100, {"test": 1.0, "validation": 0}) == {"train": 0, "validation": 0, "test": 100}
    with pytest.raises(ValueError, match="but the corpus has 10"):
        seed_split_sizes(10, {"test": 8, "validation": 3})
    with pytest.raises(ValueError, match="train takes the rest"):
        seed_split_sizes(10, {"train": 0.5})
    with pytest.raises(ValueError, match="share in"):
        seed_split_sizes(10, {"test": -1})


def test_explicit_split_column_is_honoured_and_a_bad_split_is_a_bad_line(pairs, tmp_path):
    lines = (_good(pairs, 3, split="train") + _good(pairs[3:], 2, split="test")
             + [{"request": pairs[5][0], "flow": pairs[5][1], "split": "dev"}])
    path = _write(tmp_path / "mine.jsonl", lines)
    dd = load_jsonl_corpus(path, seed=99)
    assert {s: len(ds) for s, ds in dd.items()} == {"train": 3, "test": 2}
    assert dd["test"]["request"] == [pairs[3][0], pairs[4][0]]
    assert dd.skipped == [(f"{path}:6", "`split` must be one of train, validation, test, got \"dev\"")]
    assert dd.params["split_by"] == "column" and dd.params["seed"] is None


def test_split_on_some_lines_only_is_an_error_naming_the_first_line_without(pairs, tmp_path):
    lines = _good(pairs, 2, split="train") + ["not json"] + _good(pairs[2:], 2)
    path = _write(tmp_path / "mixed.jsonl", lines)
    with pytest.raises(ValueError, match=re.escape(f"{path}:4: no `split` field, but line 1 has one")):
        load_jsonl_corpus(path)


def test_unusable_files_are_clear_errors_naming_the_file(pairs, tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.jsonl"))):
        load_corpus(tmp_path / "nope.jsonl")
    (tmp_path / "folder.jsonl").mkdir()
    with pytest.raises(ValueError, match="folder.jsonl is a folder"):
        load_corpus(str(tmp_path / "folder.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n  \n")
    with pytest.raises(ValueError, match="empty.jsonl is empty"):
        load_corpus(tmp_path / "empty.jsonl")
    (tmp_path / "prose.jsonl").write_text("Dear reader,\nthis is a letter.\n")
    with pytest.raises(ValueError, match=r"prose.jsonl is not JSON Lines .*line 1: not JSON"):
        load_corpus(tmp_path / "prose.jsonl")
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="binary.jsonl is not UTF-8"):
        load_corpus(tmp_path / "binary.jsonl")
    _write(tmp_path / "allbad.jsonl", [{"request": "x"}, {"flow": pairs[0][1]}])
    with pytest.raises(ValueError, match=r"allbad.jsonl has no valid \(request, flow\) pair; .*line 1: missing `flow`"):
        load_corpus(tmp_path / "allbad.jsonl")
    _write(tmp_path / "ok.jsonl", _good(pairs, 1))
    assert read_jsonl_pairs(tmp_path / "ok.jsonl")[0][0].id == "ok-1"


def test_names_and_paths():
    assert not is_corpus_path("n8n") and not is_corpus_path("logic_apps")
    assert is_corpus_path("pairs.jsonl") and is_corpus_path("/abs/pairs.jsonl") and is_corpus_path(Path("x"))
    assert corpus_name("/abs/path/pairs.jsonl") == "pairs" and corpus_name("n8n") == "n8n"


# ----------------------------------------------------------------------------- the registry


def test_built_in_converters_are_registry_entries():
    found = available_converters()
    assert {"n8n", "logic_apps"} <= set(found)
    assert found["n8n"].folder == "awesome-n8n-templates" and found["n8n"].source == "wfutils.data.converters.n8n:convert_n8n"
    assert found["logic_apps"].folder == "logic-apps-templates" and found["logic_apps"].domain == "logic_apps"
    with pytest.raises(ValueError, match="unknown corpus 'n9n'.*known: .*logic_apps, n8n"):
        get_converter("n9n")
    with pytest.raises(ValueError, match="already registered by wfutils.data.converters.n8n:convert_n8n"):
        register_converter("n8n")(lambda root, skipped: iter(()))
    with pytest.raises(ValueError, match="reserved"):
        register_converter("synthetic")
    with pytest.raises(ValueError, match="bad converter name"):
        register_converter("my/corpus")


TOY_MODULE = '''
import json
from wfutils.data.converters import register_converter


@register_converter("toy", folder="toy-corpus")
def convert_toy(root, skipped):
    """Toy pairs: one JSON file per pair."""
    for path in sorted(root.glob("*.json")):
        try:
            item = json.loads(path.read_text())
        except ValueError as exc:
            skipped.append((str(path), f"unparseable JSON: {exc}"))
            continue
        yield item.get("id"), item["text"], item["flow"], str(path)
'''


def _toy_corpus(folder: Path, pairs) -> None:
    folder.mkdir(parents=True)
    for i, (request, flow) in enumerate(pairs[:3]):
        (folder / f"{i}.json").write_text(json.dumps({"text": request, "flow": flow}))
    (folder / "3.json").write_text("{broken")
    (folder / "4.json").write_text(json.dumps({"text": "an invalid flow", "flow": {"components": "no"}}))


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    """A new module ``toy_corpus.py`` in a folder added to the converters package's search path."""
    extra = tmp_path / "more_converters"
    extra.mkdir()
    (extra / "toy_corpus.py").write_text(TOY_MODULE)
    monkeypatch.setattr(converters, "__path__", [*converters.__path__, str(extra)])
    yield
    unregister_converter("toy")
    converters._imported_modules.discard("wfutils.data.converters.toy_corpus")
    sys.modules.pop("wfutils.data.converters.toy_corpus", None)


def test_a_new_converter_module_is_picked_up_by_build_all_by_name(toy_module, pairs, tmp_path):
    shared = tmp_path / "shared"
    _toy_corpus(shared / "toy-corpus", pairs)
    run = tmp_path / "run"
    built = build_all(run, seed=0, **SMALL, corpora=["toy"], shared_data=shared)
    assert list(built) == ["synthetic", "toy"]
    ds = load_dataset(run, "toy")["test"]
    assert ds["id"] == ["toy-0000", "toy-0001", "toy-0002"] and set(ds["domain"]) == {"toy"}
    assert ds["request"] == [r for r, _ in pairs[:3]]
    info = load_info(run, "toy")
    assert info["params"]["converter"] == "wfutils.data.converters.toy_corpus:convert_toy"
    reasons = {Path(item["path"]).name: item["reason"] for item in info["skipped"]}
    assert reasons["3.json"].startswith("unparseable JSON") and reasons["4.json"].startswith("converted flow is not schema-valid")
    assert check_corpora(["toy"], shared) == []
    assert "corpus 'toy' needs" in check_corpora(["toy"], tmp_path / "elsewhere")[0]


def test_a_converter_from_an_installed_package_entry_point(pairs, tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "wfbook_toyplug").mkdir(parents=True)
    (site / "wfbook_toyplug" / "__init__.py").write_text(
        "def convert(root, skipped):\n"
        "    import json\n"
        "    for p in sorted(root.glob('*.json')):\n"
        "        item = json.loads(p.read_text())\n"
        "        yield None, item['text'], item['flow'], str(p)\n")
    dist = site / "wfbook_toyplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wfbook-toyplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[wfbook.converters]\ntoyplug = wfbook_toyplug:convert\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        conv = get_converter("toyplug")
        assert conv.folder == "toyplug" and conv.source == "wfbook_toyplug:convert"
        (tmp_path / "shared").mkdir()
        _toy_corpus(tmp_path / "shared" / "toyplug", pairs)
        (tmp_path / "shared" / "toyplug" / "3.json").unlink()
        dd = load_corpus("toyplug", shared_data=tmp_path / "shared")
        assert len(dd["test"]) == 3 and len(dd.skipped) == 1
    finally:
        unregister_converter("toyplug")
        sys.modules.pop("wfbook_toyplug", None)


# ----------------------------------------------------------------------------- build_all and check_corpora


def test_build_all_saves_a_jsonl_corpus_with_its_splits(pairs, tmp_path):
    lines = _good(pairs, 30) + ["oops"]
    path = _write(tmp_path / "in" / "pairs.jsonl", lines)
    run = tmp_path / "run"
    built = build_all(run, seed=2, **SMALL, corpora=[str(path)])
    assert list(built) == ["synthetic", "pairs"]
    saved = load_dataset(run, "pairs")
    assert {s: len(ds) for s, ds in saved.items()} == {"test": 6, "train": 21, "validation": 3}
    for split in ("train", "validation", "test"):
        assert (run / "data" / "pairs" / f"{split}.parquet").is_file() and (run / "data" / "pairs" / f"{split}.jsonl").is_file()
        assert saved[split].to_list() == built["pairs"][split].to_list()
    info = load_info(run, "pairs")
    assert info["splits"] == {"train": 21, "validation": 3, "test": 6}
    assert info["skipped"] == [{"path": f"{path}:31", "reason": info["skipped"][0]["reason"]}]
    assert info["params"]["split_by"] == "seed" and info["params"]["seed"] == 2
    assert set(load_run_data(run)["pairs"]) == {"validation", "test"}  # train is not evaluation data
    again = tmp_path / "run2"
    build_all(again, seed=2, **SMALL, corpora=[path])
    assert load_dataset(again, "pairs")["test"].to_list() == saved["test"].to_list()


def test_bad_corpora_lists_fail_before_anything_is_written(pairs, tmp_path):
    good = _write(tmp_path / "pairs.jsonl", _good(pairs, 5))
    clash = _write(tmp_path / "n8n.jsonl", _good(pairs, 5))
    reserved = _write(tmp_path / "synthetic.jsonl", _good(pairs, 5))
    _write(tmp_path / "mixed.jsonl", _good(pairs, 1, split="test") + _good(pairs[1:], 1))
    run = tmp_path / "run"
    with pytest.raises(ValueError, match="the name of a registered converter"):
        build_all(run, **SMALL, corpora=[clash])
    with pytest.raises(ValueError, match="the name of a built-in data set"):
        build_all(run, **SMALL, corpora=[reserved])
    with pytest.raises(ValueError, match="listed twice"):
        build_all(run, **SMALL, corpora=[good, str(good)])
    with pytest.raises(ValueError, match="unknown corpus 'nope'"):
        build_all(run, **SMALL, corpora=["nope", good])
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        build_all(run, **SMALL, corpora=[tmp_path / "missing.jsonl"])
    with pytest.raises(ValueError, match="no `split` field"):
        build_all(run, **SMALL, corpora=[tmp_path / "mixed.jsonl"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_all(run, **SMALL, corpora=["n8n"], shared_data=tmp_path / "nowhere")
    assert not run.exists()

    assert check_corpora([good]) == [] and check_corpora(str(good)) == []
    assert check_corpora(["pairs.jsonl"], base_dir=tmp_path) == []
    digests = corpus_file_digests(["n8n", good, tmp_path / "missing.jsonl"])
    assert list(digests) == ["pairs"] and digests["pairs"].startswith("sha256:")
    problems = check_corpora(["nope", clash, tmp_path / "missing.jsonl", tmp_path / "mixed.jsonl", "n8n", 3],
                             tmp_path / "nowhere")
    assert len(problems) == 6, problems
    assert any("unknown corpus 'nope'" in p for p in problems)
    assert any("registered converter" in p for p in problems)
    assert any("missing.jsonl does not exist" in p for p in problems)
    assert any("mixed.jsonl:2: no `split` field" in p for p in problems)
    assert any(re.search(r"corpus 'n8n' needs .*nowhere/awesome-n8n-templates", p) for p in problems)
    assert any("neither a corpus name nor a file path" in p for p in problems)


# ----------------------------------------------------------------------------- the book's examples


def _block(language: str, must_contain: str) -> str:
    text = (BOOK / "adapt.md").read_text(encoding="utf-8")
    return next(b for b in re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL) if must_contain in b)


def test_book_jsonl_example_loads(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(_block("json", '"request"'), encoding="utf-8")
    dd = load_corpus(path)
    assert dd.skipped == [] and sum(len(ds) for ds in dd.values()) == 3
    commands = _block("bash", "wfutils.pipeline")
    assert '-p "corpora=[/abs/path/pairs.jsonl]" -p train_corpus=pairs' in commands
    assert "python -m wfutils.book --run results/mine" in commands


def test_book_converter_example_registers_a_working_converter(tmp_path):
    source = _block("python", "register_converter")
    assert len(source.strip().splitlines()) <= 26
    try:
        exec(compile(source, str(BOOK / "adapt.md"), "exec"), {"__name__": "my_tool_example"})
        exports = tmp_path / "shared" / "my-tool-exports"
        exports.mkdir(parents=True)
        (exports / "a.json").write_text(json.dumps({
            "id": "wf-1", "description": "Every morning, email the team the open incidents",
            "steps": [{"action": "lookUpRecords", "params": {"table": "incident"}},
                      {"action": "sendEmail", "params": {"to": "team@example.com"}}]}))
        (exports / "b.json").write_text(json.dumps({"description": "", "steps": []}))
        (exports / "c.json").write_text("{")
        run = tmp_path / "run"
        build_all(run, **SMALL, corpora=["my_tool"], shared_data=tmp_path / "shared")
        ds = load_dataset(run, "my_tool")["test"]
        assert ds["id"] == ["wf-1"] and ds["domain"] == ["my_tool"]
        assert [c["definition"] for c in json.loads(ds["flow"][0])["components"]] == ["look_up_records", "send_email"]
        reasons = sorted(item["reason"] for item in load_info(run, "my_tool")["skipped"])
        assert reasons[0] == "empty request" and reasons[1].startswith("unparseable JSON")
    finally:
        unregister_converter("my_tool")


# ----------------------------------------------------------------------------- the training corpus


def test_train_corpus_gives_training_data_evaluation_order_and_a_derived_catalogue(pairs, tmp_path):
    from wfutils.data.corpora import check_train_corpus
    from wfutils.data.store import evaluation_splits, training_catalog, training_data

    # a domain of its own: the flows use an action and a table the ServiceNow catalogue lacks
    flows = []
    for i, (request, flow) in enumerate(pairs[:30]):
        flow = json.loads(json.dumps(flow))
        flow["components"].append({"order": len(flow["components"]) + 1, "category": "action",
                                   "definition": "feed_the_cat", "scope": "x_pets",
                                   "inputs": [{"name": "table", "value": "x_pets_bowl"}, {"name": "grams", "value": str(i)}]})
        flows.append({"id": f"p{i}", "request": request, "flow": flow})
    path = _write(tmp_path / "pets.jsonl", flows)
    assert check_train_corpus("pets", [path]) == []
    assert "names no corpus" in check_train_corpus("cats", [path])[0]
    with pytest.raises(ValueError, match="names no corpus"):
        build_all(tmp_path / "bad", corpora=[path], train_corpus="cats", **SMALL)
    assert not (tmp_path / "bad").exists()

    build_all(tmp_path / "run", corpora=[path], train_corpus="pets", **SMALL)
    data = load_run_data(tmp_path / "run", include_train=True)
    train, validation = training_data(data, "pets")
    assert (len(train), len(validation), len(data["pets"]["test"])) == (21, 3, 6)
    assert evaluation_splits(data, "pets") == ["pets/test", "synthetic/ood", "synthetic/test"]
    assert evaluation_splits(data, "pets", ["synthetic/test"]) == ["pets/test", "synthetic/test"]
    with pytest.raises(ValueError, match=r"\['n8n/test'\] are not in this run's data"):
        evaluation_splits(data, "pets", ["n8n/test"])
    with pytest.raises(ValueError, match="no train split"):
        training_data({"only": data["synthetic"].__class__({"test": data["pets"]["test"]})}, "only")

    catalog = training_catalog(data, "pets")
    assert "feed_the_cat" in catalog.actions and "x_pets_bowl" in catalog.tables
    assert [p.name for p in catalog.actions["feed_the_cat"].inputs] == ["grams"]
    assert "pets train split (21 flows)" in catalog.notes["source"]
    assert "feed_the_cat" not in training_catalog(data, "synthetic").actions


def test_a_converter_corpus_as_train_corpus_is_split_by_the_seed(tmp_path):
    from wfutils.data.store import training_data

    build_all(tmp_path / "run", corpora=["n8n"], train_corpus="n8n", **SMALL)
    data = load_run_data(tmp_path / "run", include_train=True)
    train, validation = training_data(data, "n8n")
    sizes = {split: len(ds) for split, ds in data["n8n"].items()}
    assert sizes["train"] > sizes["test"] > sizes["validation"] > 0
    assert not set(train["id"]) & set(data["n8n"]["test"]["id"])
    assert load_info(tmp_path / "run", "n8n")["params"]["split_by"] == "seed"
    again = build_all(tmp_path / "run2", corpora=["n8n"], train_corpus="n8n", **SMALL)
    assert again["n8n"]["test"]["id"] == data["n8n"]["test"]["id"]
