"""The worked FlowSim example in book/metric.md states numbers that the code must produce."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from wfutils.flows.flowsim import edit_operations, flow_similarity, flow_tree, tree_size

BOOK = Path(__file__).resolve().parent.parent / "book"


def _json_blocks(text: str) -> list[dict]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]


def test_metric_chapter_worked_example() -> None:
    reference = _json_blocks((BOOK / "task.md").read_text())[0]
    metric = (BOOK / "metric.md").read_text()
    candidate = _json_blocks(metric)[0]
    tree_text = re.search(r"```text\n(.*?)```", metric, re.DOTALL).group(1).rstrip("\n")
    assert flow_tree(candidate).pretty() == tree_text
    assert tree_size(flow_tree(candidate)) == 16 and tree_size(flow_tree(reference)) == 18
    assert flow_similarity(candidate, reference) == pytest.approx(1 - 6 / 34)
    assert flow_similarity(candidate, reference, with_inputs=False) == pytest.approx(1 - 3 / 7)
    stated = "1 − 6/34 = 0.824" in metric and "1 − 3/7 = 0.571" in metric
    assert stated
    table = re.findall(r"^\| (relabel|insert) \|\s*`?(.*?)`?\s*\|\s*`(.*?)`\s*\| (\d) \|$", metric, re.MULTILINE)
    ops = [op for op in edit_operations(candidate, reference) if op.cost]
    assert [(("relabel" if op.kind == "update" else op.kind), op.candidate or "", op.reference, int(op.cost))
            for op in ops] == [(kind, c, r, int(cost)) for kind, c, r, cost in table]
