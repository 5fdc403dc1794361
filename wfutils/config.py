"""Configurations as typed data: a dataclass's annotations are its contract, checked before any work.

Every stage's parameters (``TrainConfig``, ``PromptConfig``, a notebook's parameters) are dataclasses;
:func:`check_values` refuses an unknown field (listing the known ones) and a value of the wrong type or
outside a ``Literal`` (naming the field, the expected type and the allowed values), so a bad parameter
stops a run before a model is loaded. Supported annotations: ``int``, ``float`` (ints accepted), ``str``,
``bool``, ``Literal[...]``, ``X | None``, ``list[X]`` / ``tuple[X, ...]`` (lists and tuples accepted),
``dict[str, X]`` and ``Any``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Mapping

__all__ = ["ConfigError", "check_values", "config_from", "field_problem", "validate"]


class ConfigError(ValueError):
    """A configuration value or field name that does not fit; the message names the field and what it accepts."""


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "None"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple):
        inner = args[0] if args else Any
        return f"a list of {_describe(inner)}"
    if origin is dict:
        return f"a mapping of {_describe(args[1]) if len(args) == 2 else 'values'}"
    if hint is Any:
        return "any value"
    return getattr(hint, "__name__", str(hint))


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        inner = args[0] if args else Any
        return all(_fits(v, inner) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            return False
        inner = args[1] if len(args) == 2 else Any
        return all(isinstance(k, str) and _fits(v, inner) for k, v in value.items())
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this module does not model: accepted as is


def _hints(cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {name: hint for name, hint in typing.get_type_hints(cls).items() if name in names}


def field_problem(cls: type, name: str, value: Any) -> str | None:
    """Why ``value`` does not fit field ``name`` of dataclass ``cls``, or None."""
    hints = _hints(cls)
    if name not in hints:
        return f"unknown field {name!r} (known: {', '.join(sorted(hints))})"
    if not _fits(value, hints[name]):
        return f"{name} must be {_describe(hints[name])}, got {value!r} ({type(value).__name__})"
    return None


def check_values(cls: type, values: Mapping[str, Any], where: str | None = None) -> None:
    """Raise :class:`ConfigError` listing every unknown field and every value of the wrong type in ``values``."""
    problems = [p for name, value in values.items() if (p := field_problem(cls, name, value))]
    if problems:
        raise ConfigError(f"{where or cls.__name__}: " + "; ".join(problems))


def validate(instance: Any) -> None:
    """Check every field of a dataclass instance against its annotation (call it from ``__post_init__``)."""
    check_values(type(instance), {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)})


def config_from(cls: type, values: Mapping[str, Any], where: str | None = None) -> Any:
    """``cls(**values)`` after :func:`check_values`, so an unknown field is named instead of a TypeError."""
    check_values(cls, values, where)
    return cls(**values)
