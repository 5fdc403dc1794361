"""A notebook's parameters cell as a contract: names, types and value sets, checked before any work.

The type of a parameter is the type of its default (an int default accepts ints, a float
default ints or floats, a list default lists, ...), and also ``None`` when its comment names
``None`` (``max_examples = 20  # per split; None: all``). A ``None`` default accepts ``None`` or the
type its comment starts with (``max_steps = None  # int: overrides epochs``), else anything.
A comment that starts with two or more quoted strings (``# "error", "exclude" or "intersect"``,
optionally after ``one of``) is the parameter's value set.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
                                      "list": (list,), "dict": (dict,)}
_TYPE_PREFIX = re.compile(r"^\s*(int|float|str|bool|list|dict)\b")
_CHOICES = re.compile(r'^\s*(?:one of\s*)?((?:"[^"]*"\s*(?:,|\bor\b)?\s*){2,})')


@dataclass(frozen=True)
class ParameterSpec:
    """What a notebook's parameter accepts."""

    name: str
    default: Any
    types: tuple[type, ...] | None  # None: any value
    nullable: bool
    choices: tuple[str, ...] | None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit, or None."""
        if value is None and self.nullable:
            return None
        if self.types is not None:
            fits = isinstance(value, self.types) and not (isinstance(value, bool) and bool not in self.types)
            if not fits:
                expected = " or ".join(t.__name__ for t in self.types) + (" or None" if self.nullable else "")
                return f"must be {expected}, got {value!r} ({type(value).__name__})"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(repr(c) for c in self.choices)}, got {value!r}"
        return None


def _literal(source: str) -> Any:
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return ...  # an expression: no type to check against


def parameter_specs(path: Path) -> dict[str, ParameterSpec]:
    """The specs of a notebook's ``parameters`` cell (read with papermill)."""
    import papermill

    specs = {}
    for name, info in papermill.inspect_notebook(str(path)).items():
        default = _literal(str(info.get("default")))
        comment = str(info.get("help") or "")
        choices = None
        if isinstance(default, str):
            found = _CHOICES.match(comment)
            if found:
                options = tuple(re.findall(r'"([^"]*)"', found.group(1)))
                choices = options if default in options else None
        if default is ...:
            types, nullable = None, True
        elif default is None:
            prefix = _TYPE_PREFIX.match(comment)
            types, nullable = (_TYPES[prefix.group(1)] if prefix else None), True
        else:
            kind = "float" if isinstance(default, float) else type(default).__name__
            types, nullable = _TYPES.get(kind), re.search(r"\bNone\b", comment) is not None
        specs[name] = ParameterSpec(name, default, types, nullable, choices)
    return specs


def parameter_problems(notebook: str, specs: dict[str, ParameterSpec], values: dict[str, Any]) -> list[str]:
    """One message per value that does not fit, naming the notebook and the parameter."""
    problems = []
    for name, value in values.items():
        spec = specs.get(name)
        reason = spec.problem(value) if spec else None
        if reason:
            problems.append(f"notebook {notebook}: parameter {name} {reason}")
    return problems
