"""The registered n8n and Logic Apps converters on the shared data (read in place) and on broken copies."""

import json
import shutil

import pytest

from wfutils.data.corpora import load_corpus, load_logic_apps, load_n8n, shared_data_root
from wfutils.flows.schema import validate_flow

ROOT = shared_data_root()
needs_data = pytest.mark.skipif(not (ROOT / "awesome-n8n-templates").is_dir(), reason=f"shared data not found at {ROOT}")


@needs_data
def test_n8n_yield_and_validity():
    dd = load_corpus("n8n")
    ds = dd["test"]
    assert len(ds) >= 190
    assert set(ds["domain"]) == {"n8n"}
    for row in ds:
        assert validate_flow(json.loads(row["flow"])) == [], row["id"]
        assert row["request"].strip()
    reasons = [r for _, r in dd.skipped]
    assert any("unparseable JSON" in r for r in reasons)  # two corrupt files in the corpus
    assert len(ds) + len([r for r in reasons if "README row" in r or "unparseable" in r]) >= 210


@needs_data
def test_n8n_flow_logic_mapping():
    ds = load_corpus("n8n")["test"]
    defs = [c["definition"] for f in ds["flow"] for c in json.loads(f)["components"]]
    assert {"IF", "FOREACH", "ELSE"} <= set(defs)
    assert "sticky_note" not in defs
    triggers = {json.loads(f)["trigger"]["type"] for f in ds["flow"]}
    assert {"rest_async", "run_once", "email"} <= triggers


@needs_data
def test_logic_apps_yield_nesting_and_requests():
    ds = load_corpus("logic_apps")["test"]
    assert len(ds) == 60
    nested = 0
    for row in ds:
        flow = json.loads(row["flow"])
        assert validate_flow(flow) == [], row["id"]
        nested += any("block" in c for c in flow["components"])
    assert nested >= 20
    assert any(r.startswith("Azure Service Bus") for r in ds["request"])


@needs_data
def test_broken_copies_are_reported_not_dropped(tmp_path):
    src = ROOT / "awesome-n8n-templates"
    dst = tmp_path / "n8n"
    readme = (src / "README.md").read_text(encoding="utf-8")
    rows = [l for l in readme.splitlines() if "[Link to Template](Gmail_and_Email_Automation/" in l][:3]
    dst.mkdir()
    (dst / "README.md").write_text("\n".join(rows + ["| Ghost | A row for a file that is not there | Ops | [Link to Template](Nope/ghost.json) |"]), encoding="utf-8")
    shutil.copytree(src / "Gmail_and_Email_Automation", dst / "Gmail_and_Email_Automation")
    first = sorted((dst / "Gmail_and_Email_Automation").glob("*.json"))
    import urllib.parse
    target = dst / urllib.parse.unquote(rows[0].split("](")[-1].rstrip(") |"))
    target.write_text("{ not json", encoding="utf-8")
    dd = load_corpus("n8n", root=dst)
    reasons = " | ".join(f"{p}: {r}" for p, r in dd.skipped)
    assert "ghost.json" in reasons and "missing file" in reasons
    assert "unparseable JSON" in reasons and target.name in reasons
    assert len(dd["test"]) == 2 and first


def test_missing_folder_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("WFBOOK_SHARED_DATA", str(tmp_path / "moved"))
    with pytest.raises(FileNotFoundError, match="moved"):
        load_corpus("n8n")
    with pytest.raises(FileNotFoundError, match="logic-apps-templates"):
        load_corpus("logic_apps")
    with pytest.raises(FileNotFoundError, match="moved/awesome-n8n-templates"):  # the former entry points remain
        load_n8n()
    with pytest.raises(FileNotFoundError, match="moved/logic-apps-templates"):
        load_logic_apps()


@needs_data
def test_max_flow_chars_drops_long_n8n_templates_from_every_split_before_the_seed_split(tmp_path):
    from wfutils.data.corpora import convert_corpus
    from wfutils.data.store import build_all, load_info
    from wfutils.flows.vocabulary import flow_text

    whole = convert_corpus("n8n")["test"]
    lengths = {row["id"]: len(flow_text(json.loads(row["flow"]))) for row in whole}
    built = build_all(tmp_path / "run", n_train=4, n_validation=2, n_test=2, n_ood=1, corpora=["n8n"],
                      train_corpus="n8n", max_flow_chars=1200)
    kept = {row["id"] for split in built["n8n"].values() for row in split}
    assert kept == {ident for ident, length in lengths.items() if length <= 1200}
    assert set(built["n8n"]) == {"train", "validation", "test"} and 0 < len(kept) < len(lengths)
    info = load_info(tmp_path / "run", "n8n")
    dropped = [s for s in info["skipped"] if "max_flow_chars" in s["reason"]]
    assert {s["path"] for s in dropped} == set(lengths) - kept
    assert info["params"]["max_flow_chars"] == 1200 and info["params"]["split_by"] == "seed"
    # the seed split of what is kept: the shares of the whole corpus, on fewer templates
    assert len(built["n8n"]["test"]) == round(0.2 * len(kept))


@needs_data
def test_a_max_flow_chars_that_leaves_nothing_to_train_on_is_an_error_naming_it(tmp_path):
    from wfutils.data.store import build_all

    with pytest.raises(ValueError, match="train_corpus 'n8n' keeps no training pair .*max_flow_chars=10 "):
        build_all(tmp_path / "run", n_train=4, n_validation=2, n_test=2, n_ood=1, corpora=["n8n"],
                  train_corpus="n8n", max_flow_chars=10)
    for bad in (0, -5, "long", True):
        with pytest.raises(ValueError, match="max_flow_chars must be a positive number of characters or None"):
            build_all(tmp_path / "bad", corpora=["n8n"], max_flow_chars=bad)
    assert not (tmp_path / "bad").exists()
