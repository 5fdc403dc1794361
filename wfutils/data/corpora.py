"""Converters from real public workflow corpora to the flow format (SPEC section 2).

Both loaders return a :class:`datasets.DatasetDict` with one split, ``test``, and the standard
columns (see :mod:`wfutils.data.store`). What could not be converted is never dropped silently:
the DatasetDict carries ``skipped`` (a list of ``(path, reason)``) and ``root`` attributes, and a
summary is logged. Data is read in place from the shared data folder: by default
``<repo>/../shared/data``, overridden by ``WFBOOK_SHARED_DATA`` or the ``shared_data`` argument;
``root`` points a loader at the corpus folder itself.

n8n (``awesome-n8n-templates``, CC BY 4.0)
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

Logic Apps (``logic-apps-templates``, MIT)
    request = the workflow manifest's ``title`` + ``summary``; ``definition.triggers`` and
    ``definition.actions`` ordered by ``runAfter`` (topological, ties in file order), nested
    ``actions`` / ``else`` / ``cases`` / ``default`` become ``block`` nesting:

    ================================  ==========================================================
    Logic Apps action type            flow format
    ================================  ==========================================================
    If                                IF (+ ELSE for ``else.actions``)
    Switch                            IF / ELSEIF per case, ELSE for ``default``
    Foreach                           FOREACH
    Until                             DOUNTIL
    Scope                             TRYCATCH when another action runs after it on FAILED /
                                      TIMEDOUT, otherwise its actions are inlined
    Wait / Delay                      WAITFORDURATION
    InitializeVariable / SetVariable  SETFLOWVARIABLES
    Terminate                         END
    ApiConnection                     the connector's reference name (``sharepointonline``)
    ServiceProvider                   provider + operation (``azure_blob_read_blob``)
    anything else                     the type in snake_case (``Compose`` -> ``compose``)
    ================================  ==========================================================

    Triggers: Request -> rest_async; Recurrence / SlidingWindow by frequency (Day -> daily,
    Week -> weekly, Month -> monthly, else repeat); polling / service-provider triggers whose
    operation mentions added / created / new -> record_create, modified / updated ->
    record_create_or_update, messages / queues -> rest_async, else repeat.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.parse
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from datasets import DatasetDict

from wfutils.data.records import rows_to_dataset
from wfutils.flows.schema import validate_flow
from wfutils.flows.vocabulary import flow_features, flow_text

log = logging.getLogger(__name__)

N8N_DIR = "awesome-n8n-templates"
LOGIC_APPS_DIR = "logic-apps-templates"
MAX_VALUE_CHARS = 120
MAX_EXTRA_INPUTS = 3
Skipped = list[tuple[str, str]]


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


def _corpus_root(root: str | os.PathLike[str] | None, shared_data: Any, name: str) -> Path:
    path = Path(root) if root is not None else shared_data_root(shared_data) / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"corpus folder {path} does not exist; put the {name} corpus there, set WFBOOK_SHARED_DATA "
            f"to the folder that holds {name}/, or pass root= / shared_data=")
    return path


def snake(name: str) -> str:
    """``googleSheets`` -> ``google_sheets``, ``ParseDocument`` -> ``parse_document``."""
    name = re.sub(r"[^0-9A-Za-z]+", "_", name)
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"_+", "_", name).strip("_").lower() or "unknown"


def _short(value: Any) -> str | int | float | bool | None:
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _finish(rows: list[dict[str, Any]], skipped: Skipped, root: Path, label: str) -> DatasetDict:
    dd = DatasetDict({"test": rows_to_dataset(rows)})
    dd.skipped = skipped  # type: ignore[attr-defined]
    dd.root = root  # type: ignore[attr-defined]
    reasons = defaultdict(int)
    for _, reason in skipped:
        reasons[reason.split(":")[0]] += 1
    log.info("%s: %d pairs converted from %s, %d skipped (%s)", label, len(rows), root, len(skipped),
             ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) or "none")
    return dd


def _row(domain: str, ident: str, request: str, flow: dict[str, Any], path: str, skipped: Skipped) -> dict[str, Any] | None:
    errors = validate_flow(flow)
    if errors:
        skipped.append((path, "converted flow is not schema-valid: " + "; ".join(errors[:3])))
        return None
    return {"id": ident, "request": request, "flow": flow_text(flow), "features": sorted(flow_features(flow)), "domain": domain}


class _Components:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    @property
    def next_order(self) -> int:
        return len(self.items) + 1

    def add(self, definition: str, inputs: list[tuple[str, Any]], block: int | None, *, category: str = "action",
            scope: str | None = "global") -> int:
        order = len(self.items) + 1
        comp: dict[str, Any] = {"order": order}
        if block is not None:
            comp["block"] = block
        comp["category"] = category
        comp["definition"] = definition
        if category != "flowlogic" and scope:
            comp["scope"] = scope
        comp["inputs"] = [{"name": n, "value": _short(v)} for n, v in inputs]
        self.items.append(comp)
        return order


# ============================================================================ n8n

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


def load_n8n(root: str | os.PathLike[str] | None = None, *, shared_data: str | os.PathLike[str] | None = None) -> DatasetDict:
    """Convert the awesome-n8n-templates corpus: (README description, workflow) pairs, split ``test``."""
    base = _corpus_root(root, shared_data, N8N_DIR)
    skipped: Skipped = []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for title, desc, rel in _n8n_readme_rows(base, skipped):
        path = base / rel.lstrip("/")
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
        row = _row("n8n", f"n8n-{len(rows):04d}", desc, flow, str(path), skipped)
        if row:
            rows.append(row)
    return _finish(rows, skipped, base, "n8n")


# ============================================================================ Logic Apps

_OPS = {"equals": "=", "greater": ">", "less": "<", "greaterOrEquals": ">=", "lessOrEquals": "<=", "contains": "LIKE",
        "startsWith": "STARTSWITH", "endsWith": "ENDSWITH"}


def _la_condition(expr: Any) -> str:
    """Logic Apps condition expression -> encoded-query-like text."""
    if not isinstance(expr, dict) or len(expr) != 1:
        return str(_short(expr))
    (op, args), = expr.items()
    if op in ("and", "or"):
        return ("^OR" if op == "or" else "^").join(_la_condition(a) for a in args or [])
    if op == "not" and isinstance(args, dict):
        inner = _la_condition(args)
        return inner.replace("=", "!=", 1) if "=" in inner else f"NOT {inner}"
    if isinstance(args, list) and len(args) == 2:
        return f"{_la_value(args[0])}{_OPS.get(op, op.upper())}{_la_value(args[1])}"
    return f"{op}({_la_value(args)})"


def _la_value(v: Any) -> str:
    return str(v if not isinstance(v, (dict, list)) else json.dumps(v, separators=(",", ":")))


def _la_order(actions: dict[str, Any]) -> list[str]:
    names = list(actions)
    deps = {n: [d for d in (actions[n].get("runAfter") or {}) if d in actions] for n in names}
    done: list[str] = []
    placed: set[str] = set()
    while len(done) < len(names):
        ready = [n for n in names if n not in placed and all(d in placed for d in deps[n])]
        if not ready:  # cycle: keep file order for the rest
            ready = [n for n in names if n not in placed]
        done.append(ready[0])
        placed.add(ready[0])
    return done


def _la_trigger(triggers: dict[str, Any]) -> dict[str, Any]:
    if not triggers:
        return {"type": "run_once"}
    name, trig = next(iter(triggers.items()))
    ttype = trig.get("type", "")
    rec = trig.get("recurrence") or (trig.get("inputs") or {}).get("recurrence") or {}
    freq = rec.get("frequency", "")
    if ttype == "Request":
        method = (trig.get("inputs") or {}).get("method", "POST")
        return {"type": "rest_async", "inputs": [{"name": "http_method", "value": method}, {"name": "path", "value": snake(name)}]}
    if ttype in ("Recurrence", "SlidingWindow"):
        kind = {"Day": "daily", "Week": "weekly", "Month": "monthly"}.get(freq, "repeat")
        return {"type": kind, "inputs": [{"name": "repeat", "value": f"{rec.get('interval', 1)} {freq}".strip()}]}
    inputs = trig.get("inputs") or {}
    op = str((inputs.get("serviceProviderConfiguration") or {}).get("operationId") or inputs.get("path") or name)
    provider = str((inputs.get("serviceProviderConfiguration") or {}).get("serviceProviderId")
                   or ((inputs.get("host") or {}).get("connection") or {}).get("referenceName") or ttype).rsplit("/", 1)[-1]
    tin = [{"name": "table", "value": snake(provider)}, {"name": "event", "value": _short(op)}]
    if re.search(r"message|queue|topic", op, re.I):
        return {"type": "rest_async", "inputs": [{"name": "source", "value": snake(provider)}, {"name": "event", "value": _short(op)}]}
    if re.search(r"modif|updat|chang", op, re.I):
        return {"type": "record_create_or_update", "inputs": tin}
    if re.search(r"add|creat|new", op, re.I):
        return {"type": "record_create", "inputs": tin}
    return {"type": "repeat", "inputs": [{"name": "repeat", "value": f"{rec.get('interval', 1)} {freq}".strip()}]}


def _la_action_def(action: dict[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
    ttype = action.get("type", "unknown")
    inputs = action.get("inputs")
    if ttype == "ApiConnection" and isinstance(inputs, dict):
        ref = ((inputs.get("host") or {}).get("connection") or {}).get("referenceName") or \
              ((inputs.get("host") or {}).get("connection") or {}).get("name") or "api_connection"
        ref = str(ref).split("'")[-2] if "'" in str(ref) else str(ref)
        return snake(ref), [("method", inputs.get("method", "")), ("path", inputs.get("path", ""))]
    if ttype == "ServiceProvider" and isinstance(inputs, dict):
        cfg = inputs.get("serviceProviderConfiguration") or {}
        provider = str(cfg.get("serviceProviderId", "service_provider")).rsplit("/", 1)[-1]
        params = inputs.get("parameters") or {}
        extra = [(k, v) for k, v in list(params.items())[:MAX_EXTRA_INPUTS]]
        return snake(f"{provider}_{cfg.get('operationId', '')}"), extra
    extra: list[tuple[str, Any]] = []
    if isinstance(inputs, dict):
        extra = [(k, v) for k, v in list(inputs.items())[:MAX_EXTRA_INPUTS]]
    elif inputs is not None:
        extra = [("value", inputs)]
    return snake(ttype), extra


_LA_REF = re.compile(r"@?\{?(body|outputs|items|actions)\('([^']+)'\)(?:\?\['([A-Za-z0-9_]+)'\])?\}?")


def _la_pills(value: Any, names: dict[str, int]) -> Any:
    """``@body('Parse_a_document')?['text']`` -> ``{{2.body.text}}`` when the action is known; ``@triggerBody()`` -> ``{{trigger.body}}``."""
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        order = names.get(m.group(2))
        if order is None:
            return m.group(0)
        kind = "item" if m.group(1) == "items" else m.group(1)
        return "{{" + f"{order}.{kind}" + (f".{m.group(3)}" if m.group(3) else "") + "}}"

    value = _LA_REF.sub(sub, value)
    return re.sub(r"@?\{?triggerBody\(\)(?:\?\['([A-Za-z0-9_]+)'\])?\}?",
                  lambda m: "{{trigger.body" + (f".{m.group(1)}" if m.group(1) else "") + "}}", value)


def _la_emit(actions: dict[str, Any], comps: _Components, block: int | None, names: dict[str, int] | None = None) -> None:
    names = {} if names is None else names
    order = _la_order(actions)
    failed_after = {d for a in actions.values() for d, states in (a.get("runAfter") or {}).items()
                    if any(s.upper() in ("FAILED", "TIMEDOUT") for s in states or [])}
    for name in order:
        a = actions[name]
        t = (a.get("type") or "").lower()
        names[name] = comps.next_order
        if t == "if":
            o = comps.add("IF", [("condition", _short(_la_condition(a.get("expression"))))], block, category="flowlogic")
            _la_emit(a.get("actions") or {}, comps, o, names)
            if (a.get("else") or {}).get("actions"):
                e = comps.add("ELSE", [], block, category="flowlogic")
                _la_emit(a["else"]["actions"], comps, e, names)
        elif t == "switch":
            for i, (case, body) in enumerate((a.get("cases") or {}).items()):
                o = comps.add("IF" if i == 0 else "ELSEIF", [("condition", f"{_la_value(a.get('expression'))}={_la_value(body.get('case', case))}")],
                              block, category="flowlogic")
                _la_emit(body.get("actions") or {}, comps, o, names)
            if (a.get("default") or {}).get("actions"):
                e = comps.add("ELSE", [], block, category="flowlogic")
                _la_emit(a["default"]["actions"], comps, e, names)
        elif t == "foreach":
            o = comps.add("FOREACH", [("items", _la_value(a.get("foreach", "")))], block, category="flowlogic")
            _la_emit(a.get("actions") or {}, comps, o, names)
        elif t == "until":
            o = comps.add("DOUNTIL", [("condition", _short(_la_condition(a.get("expression"))))], block, category="flowlogic")
            _la_emit(a.get("actions") or {}, comps, o, names)
        elif t == "scope":
            if name in failed_after:
                o = comps.add("TRYCATCH", [], block, category="flowlogic")
                _la_emit(a.get("actions") or {}, comps, o, names)
            else:
                _la_emit(a.get("actions") or {}, comps, block, names)
        elif t in ("wait", "delay"):
            interval = (a.get("inputs") or {}).get("interval") or {}
            comps.add("WAITFORDURATION", [("duration", f"{interval.get('count', '')} {interval.get('unit', '')}".strip())], block, category="flowlogic")
        elif t in ("initializevariable", "setvariable"):
            inputs = a.get("inputs") or {}
            vars_ = inputs.get("variables") or [inputs]
            text = "^".join(f"{v.get('name', '')}={_la_value(v.get('value', ''))}" for v in vars_ if isinstance(v, dict))
            comps.add("SETFLOWVARIABLES", [("variables", text)], block, category="flowlogic")
        elif t == "terminate":
            comps.add("END", [("status", (a.get("inputs") or {}).get("runStatus", ""))], block, category="flowlogic")
        else:
            definition, inputs = _la_action_def(a)
            comps.add(definition, [(k, _la_pills(v if isinstance(v, str) else _short(v), names)) for k, v in inputs], block)


def _la_convert(workflow: dict[str, Any]) -> dict[str, Any]:
    definition = workflow.get("definition", workflow)
    comps = _Components()
    _la_emit(definition.get("actions") or {}, comps, None)
    return {"trigger": _la_trigger(definition.get("triggers") or {}), "components": comps.items}


def load_logic_apps(root: str | os.PathLike[str] | None = None, *, shared_data: str | os.PathLike[str] | None = None) -> DatasetDict:
    """Convert the Azure Logic Apps templates: (manifest title + summary, workflow) pairs, split ``test``."""
    base = _corpus_root(root, shared_data, LOGIC_APPS_DIR)
    skipped: Skipped = []
    rows: list[dict[str, Any]] = []
    for path in sorted(base.glob("*/*/workflow.json")):
        manifest_path = path.parent / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            skipped.append((str(manifest_path), "missing manifest.json (no title / summary)"))
            continue
        except json.JSONDecodeError as exc:
            skipped.append((str(manifest_path), f"unparseable JSON: {exc}"))
            continue
        title, summary = str(manifest.get("title", "")).strip(), str(manifest.get("summary", "")).strip()
        if not (title or summary):
            skipped.append((str(manifest_path), "template without title or summary"))
            continue
        try:
            workflow = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            skipped.append((str(path), f"unparseable JSON: {exc}"))
            continue
        try:
            flow = _la_convert(workflow)
        except Exception as exc:
            skipped.append((str(path), f"conversion failed: {type(exc).__name__}: {exc}"))
            continue
        request = f"{title}. {summary}" if title and summary else title or summary
        ident = f"logic_apps-{path.parent.parent.name}-{path.parent.name}"
        row = _row("logic_apps", ident, request, flow, str(path), skipped)
        if row:
            rows.append(row)
    return _finish(rows, skipped, base, "logic_apps")
