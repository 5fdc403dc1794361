"""Azure Logic Apps templates (``logic-apps-templates``, MIT) -> flows: the ``logic_apps`` converter.

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

Pairs are ``(manifest title + summary, workflow.json)``; ids are ``logic_apps-<folder>-<subfolder>``.
Templates without a manifest, title or summary and unparseable JSON are skipped with their reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from wfutils.data.converters import Pair, register_converter
from wfutils.data.converters.building import MAX_EXTRA_INPUTS, Skipped, snake
from wfutils.data.converters.building import Components as _Components
from wfutils.data.converters.building import short as _short

FOLDER = "logic-apps-templates"


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


@register_converter("logic_apps", folder=FOLDER)
def convert_logic_apps(root: Path, skipped: Skipped) -> Iterator[Pair]:
    """(manifest title + summary, workflow) pairs of the Azure Logic Apps templates."""
    for path in sorted(root.glob("*/*/workflow.json")):
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
        yield f"logic_apps-{path.parent.parent.name}-{path.parent.name}", request, flow, str(path)
