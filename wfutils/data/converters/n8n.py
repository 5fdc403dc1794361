"""n8n workflow templates (``awesome-n8n-templates``, CC BY 4.0) -> flows: the ``n8n`` converter.

request = the README table's human-written description of the template; nodes and
``connections`` form the graph. ``stickyNote`` nodes are dropped; LangChain sub-nodes
(models, memories, tools, parsers, embeddings: connections of a type other than ``main``)
become inputs of the node they plug into (input name = connection type without ``ai_``,
value = the sub-node's definition). Node types map to definitions in snake_case
(``n8n-nodes-base.googleSheets`` -> ``google_sheets``; the node's ``resource`` and
``operation`` parameters become inputs). Flow logic:

=====================================  ==================================================
n8n node                               flow format
=====================================  ==================================================
if                                     IF (true output nested) + ELSE (false output)
switch                                 IF for output 0, ELSEIF for the others
filter                                 IF (the passing output nested)
splitInBatches                         FOREACH (loop output nested; "done" output after)
wait                                   WAITFORDURATION
set                                    SETFLOWVARIABLES (assigned field names)
stopAndError                           END
=====================================  ==================================================

Trigger nodes map to the closest SPEC trigger type:

===========================================================  ========================
n8n trigger                                                  trigger type
===========================================================  ========================
webhook, formTrigger, chatTrigger, manualChatTrigger,         rest_async
executeWorkflowTrigger, errorTrigger, message triggers
(telegram, whatsApp, twilio, slack, discord), other app
triggers without a record event
scheduleTrigger / cron / interval                             daily / weekly / monthly
                                                              (by interval field), else
                                                              repeat
rssFeedReadTrigger                                            repeat
gmailTrigger, emailReadImap, microsoftOutlookTrigger          email
manualTrigger (or no trigger node at all)                     run_once
googleSheetsTrigger, googleDriveTrigger, notionTrigger,       record_create (record_
airtableTrigger, localFileTrigger, pipedriveTrigger,          create_or_update when the
linearTrigger, typeformTrigger, stravaTrigger                 event is an update)
===========================================================  ========================

Pairs are ``(README description, workflow)``; ids are numbered ``n8n-0000``, ... in the order of
the accepted pairs. README rows without a link or a description, links to missing files, duplicate
rows, unparseable or non-workflow JSON and workflows with no step besides the trigger are skipped
with their reason.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

from wfutils.data.converters import Pair, register_converter
from wfutils.data.converters.building import MAX_EXTRA_INPUTS, Skipped, snake
from wfutils.data.converters.building import Components as _Components
from wfutils.data.converters.building import short as _short

FOLDER = "awesome-n8n-templates"


_README_ROW = re.compile(r"^\|(?P<title>[^|]*)\|(?P<desc>[^|]*)\|(?P<dept>[^|]*)\|\s*\[Link to Template\]\((?P<link>.+?\.json|[^)]*)\)")
_SCHEDULE = {"days": "daily", "weeks": "weekly", "months": "monthly"}
_EMAIL_TRIGGERS = {"gmailTrigger", "emailReadImap", "microsoftOutlookTrigger", "emailTrigger"}
_RECORD_TRIGGERS = {"googleSheetsTrigger", "googleDriveTrigger", "notionTrigger", "airtableTrigger", "localFileTrigger",
                    "pipedriveTrigger", "linearTrigger", "typeformTrigger", "stravaTrigger"}


def _n8n_short_type(t: str) -> str:
    return t.rsplit(".", 1)[-1]


def _is_n8n_trigger(node: dict[str, Any]) -> bool:
    t = _n8n_short_type(node.get("type", ""))
    return t.endswith("Trigger") or t in ("webhook", "cron", "interval", "emailReadImap", "start")


def _n8n_trigger(node: dict[str, Any] | None) -> dict[str, Any]:
    if node is None:
        return {"type": "run_once"}
    t = _n8n_short_type(node.get("type", ""))
    params = node.get("parameters") or {}
    source = snake(t[: -len("Trigger")] if t.endswith("Trigger") else t)
    if t in ("manualTrigger", "start"):
        return {"type": "run_once"}
    if t in ("scheduleTrigger", "cron", "interval"):
        intervals = (params.get("rule") or {}).get("interval") or [{}]
        first = intervals[0] if isinstance(intervals, list) and intervals and isinstance(intervals[0], dict) else {}
        field = first.get("field", "days" if t == "scheduleTrigger" else "cronExpression")
        ttype = _SCHEDULE.get(field, "repeat")
        inputs = [{"name": "interval", "value": _short(field)}]
        if "triggerAtHour" in first:
            inputs.append({"name": "time", "value": f"{int(first['triggerAtHour']):02d}:00"})
        if "expression" in first:
            inputs.append({"name": "repeat", "value": _short(first["expression"])})
        return {"type": ttype, "inputs": inputs}
    if t == "rssFeedReadTrigger":
        return {"type": "repeat", "inputs": [{"name": "source", "value": "rss_feed"}]}
    if t in _EMAIL_TRIGGERS:
        return {"type": "email", "inputs": [{"name": "source", "value": source}]}
    if t in _RECORD_TRIGGERS:
        event = str(params.get("event") or params.get("triggerOn") or "")
        ttype = "record_create_or_update" if re.search(r"updat|chang|modif", event, re.I) else "record_create"
        inputs = [{"name": "table", "value": source}] + ([{"name": "event", "value": _short(event)}] if event else [])
        return {"type": ttype, "inputs": inputs}
    inputs = [{"name": "source", "value": source}]
    if t == "webhook":
        inputs = [{"name": "http_method", "value": _short(params.get("httpMethod", "GET"))},
                  {"name": "path", "value": _short(params.get("path", ""))}]
    return {"type": "rest_async", "inputs": inputs}


def _n8n_inputs(node: dict[str, Any]) -> list[tuple[str, Any]]:
    params = node.get("parameters") or {}
    inputs: list[tuple[str, Any]] = []
    for key in ("resource", "operation"):
        if isinstance(params.get(key), str):
            inputs.append((key, params[key]))
    extra = 0
    for key, value in params.items():
        if key in ("resource", "operation", "options") or extra >= MAX_EXTRA_INPUTS:
            continue
        if isinstance(value, (str, int, float, bool)) and value != "":
            inputs.append((key, _expr(value) if isinstance(value, str) else value))
            extra += 1
    return inputs


def _n8n_condition(params: dict[str, Any]) -> str:
    """A readable encoded query for an n8n if / filter node (v1 and v2 parameter shapes)."""
    parts: list[str] = []
    conds = params.get("conditions") or {}
    ops = {"equals": "=", "notEquals": "!=", "contains": "LIKE", "notContains": "NOT LIKE", "gt": ">", "lt": "<",
           "gte": ">=", "lte": "<=", "larger": ">", "smaller": "<", "isEmpty": "ISEMPTY", "isNotEmpty": "ISNOTEMPTY",
           "empty": "ISEMPTY", "notEmpty": "ISNOTEMPTY", "true": "=true", "false": "=false", "startsWith": "STARTSWITH",
           "exists": "ISNOTEMPTY", "notExists": "ISEMPTY"}
    if isinstance(conds, dict) and isinstance(conds.get("conditions"), list):  # v2
        for c in conds["conditions"]:
            op = (c.get("operator") or {}).get("operation", "equals")
            parts.append(f"{_expr(c.get('leftValue'))}{ops.get(op, op.upper())}{'' if op in ('true', 'false') else _expr(c.get('rightValue'))}")
        joiner = "^OR" if conds.get("combinator") == "or" else "^"
    elif isinstance(conds, dict):  # v1: {"string": [{"value1", "operation", "value2"}], "number": [...]}
        for group in conds.values():
            for c in group if isinstance(group, list) else []:
                op = c.get("operation", "equals")
                parts.append(f"{_expr(c.get('value1'))}{ops.get(op, op.upper())}{_expr(c.get('value2', ''))}")
        joiner = "^OR" if params.get("combineOperation") == "any" else "^"
    else:
        joiner = "^"
    return _short(joiner.join(p for p in parts if p) or "true")  # type: ignore[return-value]


def _expr(value: Any) -> str:
    """``={{ $json.x }}`` -> ``{{json.x}}`` (a data pill); other values as text."""
    if value is None:
        return ""
    text = str(value).strip()
    if text.startswith("="):
        text = text[1:].strip()
    text = re.sub(r"\{\{\s*\$?(.*?)\s*\}\}", lambda m: "{{" + m.group(1).replace(" ", "") + "}}", text)
    return text


def _n8n_convert(workflow: dict[str, Any]) -> dict[str, Any]:
    nodes = {n["name"]: n for n in workflow.get("nodes", []) if isinstance(n, dict) and "name" in n
             and _n8n_short_type(n.get("type", "")) != "stickyNote" and not n.get("disabled")}
    main_out: dict[str, list[list[str]]] = {}
    incoming: dict[str, set[str]] = defaultdict(set)
    attached: dict[str, list[tuple[str, str]]] = defaultdict(list)  # target -> [(conn type, sub-node def)]
    sub_nodes: set[str] = set()
    for src, by_type in (workflow.get("connections") or {}).items():
        if src not in nodes or not isinstance(by_type, dict):
            continue
        for ctype, outputs in by_type.items():
            for idx, targets in enumerate(outputs or []):
                for tgt in targets or []:
                    name = tgt.get("node") if isinstance(tgt, dict) else None
                    if name not in nodes:
                        continue
                    if ctype == "main":
                        main_out.setdefault(src, [])
                        while len(main_out[src]) <= idx:
                            main_out[src].append([])
                        main_out[src][idx].append(name)
                        incoming[name].add(src)
                    else:
                        sub_nodes.add(src)
                        attached[name].append((ctype[3:] if ctype.startswith("ai_") else ctype, snake(_n8n_short_type(nodes[src]["type"]))))
    triggers = [n for n in nodes.values() if _is_n8n_trigger(n) and n["name"] not in sub_nodes]
    # primary trigger: the one from which most nodes are reachable
    def reach(start: str) -> int:
        seen, stack = {start}, [start]
        while stack:
            for outs in main_out.get(stack.pop(), []):
                for t in outs:
                    if t not in seen:
                        seen.add(t)
                        stack.append(t)
        return len(seen)
    triggers.sort(key=lambda n: -reach(n["name"]))
    primary = triggers[0] if triggers else None
    trigger = _n8n_trigger(primary)
    comps = _Components()
    visited: set[str] = {n["name"] for n in triggers}

    def emit(name: str, block: int | None, deferred: list[str]) -> None:
        if name in visited or name in sub_nodes:
            return
        if len(incoming[name] - visited) > 0 and len(incoming[name]) > 1:
            if name not in deferred:
                deferred.append(name)
            return
        visited.add(name)
        node = nodes[name]
        t = _n8n_short_type(node.get("type", ""))
        params = node.get("parameters") or {}
        outs = main_out.get(name, [])
        extra = [(k, ", ".join(v for _, v in grp)) for k, grp in _group(attached.get(name, []))]
        if t in ("if", "filter"):
            order = comps.add("IF", [("condition", _n8n_condition(params))], block, category="flowlogic")
            walk(outs[0] if outs else [], order)
            if t == "if" and len(outs) > 1 and outs[1]:
                other = comps.add("ELSE", [], block, category="flowlogic")
                walk(outs[1], other)
            return
        if t == "switch":
            for i, targets in enumerate(outs):
                if not targets:
                    continue
                label = "IF" if i == 0 else "ELSEIF"
                order = comps.add(label, [("condition", f"output={i}")], block, category="flowlogic")
                walk(targets, order)
            return
        if t == "splitInBatches":
            version = node.get("typeVersion", 1)
            loop_idx, done_idx = (1, 0) if version and float(version) >= 3 else (0, None)
            order = comps.add("FOREACH", [("items", "{{input.items}}"), ("batch_size", params.get("batchSize", 1))], block,
                              category="flowlogic")
            if len(outs) > loop_idx:
                walk(outs[loop_idx], order)
            if done_idx is not None and len(outs) > done_idx:
                walk(outs[done_idx], block)
            return
        if t == "wait":
            comps.add("WAITFORDURATION", [("duration", f"{params.get('amount', '')} {params.get('unit', '')}".strip() or "resume")],
                      block, category="flowlogic")
        elif t == "set":
            names = []
            assigns = (params.get("assignments") or {}).get("assignments") or []
            names = [a.get("name", "") for a in assigns if isinstance(a, dict)]
            for group in (params.get("values") or {}).values() if isinstance(params.get("values"), dict) else []:
                names += [v.get("name", "") for v in group if isinstance(v, dict)]
            comps.add("SETFLOWVARIABLES", [("variables", "^".join(n for n in names if n) or "fields")], block, category="flowlogic")
        elif t == "stopAndError":
            comps.add("END", [], block, category="flowlogic")
        else:
            scope = "global" if node.get("type", "").startswith("n8n-nodes-base.") else snake(node.get("type", "").rsplit(".", 1)[0].split("/")[-1])
            comps.add(snake(t), _n8n_inputs(node) + extra, block, scope=scope)
        for targets in outs:
            walk(targets, block)

    def walk(targets: Iterable[str], block: int | None) -> None:
        deferred: list[str] = []
        for t in targets:
            emit(t, block, deferred)
        for t in deferred:
            if t not in visited:
                incoming[t] = incoming[t] & visited  # merge point: emit after the branches
                emit(t, block, [])

    for trig in triggers:
        for targets in main_out.get(trig["name"], []):
            walk(targets, None)
    # nodes not reachable from a trigger (e.g. tool workflows wired only to sub-nodes) in file order
    for name in nodes:
        if name not in visited and name not in sub_nodes and not incoming[name]:
            walk([name], None)
    for name in nodes:
        if name not in visited and name not in sub_nodes:
            incoming[name] = set()
            walk([name], None)
    return {"trigger": trigger, "components": comps.items}


def _group(pairs: list[tuple[str, str]]) -> list[tuple[str, list[tuple[str, str]]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for k, v in pairs:
        out.setdefault(k, []).append((k, v))
    return sorted(out.items())


def _n8n_readme_rows(root: Path, skipped: Skipped) -> list[tuple[str, str, str]]:
    readme = root / "README.md"
    if not readme.is_file():
        raise FileNotFoundError(f"{readme} is missing: the n8n corpus needs its README.md (the descriptions)")
    rows = []
    for lineno, line in enumerate(readme.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("|") or "Link to Template" not in line:
            continue
        m = _README_ROW.match(line)
        if m is None:
            if "[Link to Template]" in line or not re.match(r"^\|\s*Workflow Title", line):
                skipped.append((f"{readme}:{lineno}", "README row without a template link: " + line[:80]))
            continue
        title, desc, link = m.group("title").strip(), m.group("desc").strip(), m.group("link").strip()
        rel = urllib.parse.unquote(link)
        if not desc:
            skipped.append((f"{readme}:{lineno}", f"template without description: {title}"))
            continue
        rows.append((title, desc, rel))
    return rows


@register_converter("n8n", folder=FOLDER)
def convert_n8n(root: Path, skipped: Skipped) -> Iterator[Pair]:
    """(README description, workflow) pairs of the awesome-n8n-templates collection."""
    seen: set[str] = set()
    for title, desc, rel in _n8n_readme_rows(root, skipped):
        path = root / rel.lstrip("/")
        if not path.is_file():
            skipped.append((str(path), f"README row points at a missing file: {title}"))
            continue
        if rel in seen:
            skipped.append((str(path), "duplicate README row for the same template"))
            continue
        seen.add(rel)
        try:
            workflow = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            skipped.append((str(path), f"unparseable JSON: {exc}"))
            continue
        if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
            skipped.append((str(path), "not an n8n workflow (no nodes list)"))
            continue
        try:
            flow = _n8n_convert(workflow)
        except Exception as exc:  # a converter bug on one file must not lose the others
            skipped.append((str(path), f"conversion failed: {type(exc).__name__}: {exc}"))
            continue
        if not flow["components"]:
            skipped.append((str(path), "no steps besides the trigger"))
            continue
        yield None, desc, flow, str(path)
