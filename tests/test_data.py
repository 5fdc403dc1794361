"""Synthetic corpus: determinism, schema validity, feature coverage, no leakage, ood hold-out, storage."""

import json
from collections import Counter

import pytest

from wfutils.data.catalog import load_catalog
from wfutils.data.records import COLUMNS
from wfutils.data.store import load_dataset, load_info, load_run_data, save_dataset
from wfutils.data.synthetic import build_synthetic
from wfutils.flows.schema import validate_flow
from wfutils.data.synthetic import uses_holdout
from wfutils.flows.vocabulary import FEATURE_TAGS


@pytest.fixture(scope="module")
def synth():
    return build_synthetic(seed=7, n_train=600, n_test=300, n_ood=120, n_validation=60)


def test_same_seed_gives_identical_data(synth):
    again = build_synthetic(seed=7, n_train=600, n_test=300, n_ood=120, n_validation=60)
    for split in synth:
        assert synth[split].to_list() == again[split].to_list()
    other = build_synthetic(seed=8, n_train=50, n_test=10, n_ood=10)
    assert other["train"]["request"] != synth["train"]["request"][:50]


def test_splits_columns_and_sizes(synth):
    assert list(synth) == ["train", "validation", "test", "ood"]
    assert [len(synth[s]) for s in ("train", "validation", "test", "ood")] == [600, 60, 300, 120]
    for ds in synth.values():
        assert tuple(ds.column_names) == COLUMNS
        assert set(ds["domain"]) == {"servicenow"}
        assert len(set(ds["id"])) == len(ds)


def test_every_flow_is_schema_valid(synth):
    for split, ds in synth.items():
        for row in ds:
            flow = json.loads(row["flow"])
            assert validate_flow(flow) == [], (split, row["id"], row["request"])


def test_every_feature_tag_occurs_in_test(synth):
    seen = Counter(t for tags in synth["test"]["features"] for t in tags)
    for tag in FEATURE_TAGS:
        assert seen[tag] > 0, tag
    assert set(seen) <= set(FEATURE_TAGS)


def test_no_identical_request_across_splits(synth):
    splits = {s: set(synth[s]["request"]) for s in ("train", "validation", "test", "ood")}
    assert sum(len(r) for r in splits.values()) == sum(len(ds) for ds in synth.values())
    assert len(set().union(*splits.values())) == sum(len(r) for r in splits.values())


def test_adding_the_validation_split_left_the_other_splits_unchanged(synth):
    without = build_synthetic(seed=7, n_train=600, n_test=300, n_ood=120, n_validation=0)
    for split in ("train", "test", "ood"):
        assert without[split].to_list() == synth[split].to_list()
    assert synth["validation"]["id"][0] == "sn-validation-00000"


def test_ood_uses_holdout_and_train_test_never_do(synth):
    cat = load_catalog()
    for split in ("train", "test"):
        assert not any(uses_holdout(json.loads(f), cat) for f in synth[split]["flow"]), split
    assert all(uses_holdout(json.loads(f), cat) for f in synth["ood"]["flow"])


def test_flow_size_is_learnable(synth):
    sizes = sorted(len(json.loads(f)["components"]) for f in synth["train"]["flow"])
    median = sizes[len(sizes) // 2]
    assert 2 <= median <= 5 and sizes[-1] <= 12 and sizes[0] >= 1
    chars = sorted(len(f) for f in synth["train"]["flow"])
    assert 350 <= chars[len(chars) // 2] <= 900


def test_save_and_load_roundtrip(synth, tmp_path):
    folder = save_dataset(synth, tmp_path, "synthetic", params={"seed": 7})
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{s}.{ext}" for s in synth for ext in ("parquet", "jsonl")] + ["info.json"])
    back = load_dataset(tmp_path, "synthetic")
    for split in synth:
        assert back[split].to_list() == synth[split].to_list()
    lines = (folder / "test.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["id"] for x in lines] == synth["test"]["id"]
    assert load_info(tmp_path, "synthetic")["splits"] == {"train": 600, "validation": 60, "test": 300, "ood": 120}
    run = load_run_data(tmp_path)
    assert set(run) == {"synthetic"} and set(run["synthetic"]) == {"validation", "test", "ood"}


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="data"):
        load_dataset(tmp_path, "nope")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_run_data(tmp_path)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="n_test"):
        build_synthetic(0, 10, -1, 0)
