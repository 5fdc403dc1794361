"""Corpus converters: one module with one registered function per corpus format.

A converter turns a corpus folder into raw ``(id, request, flow, source path)`` pairs and nothing
else. Everything that is the same for every corpus is done once, by
:func:`wfutils.data.corpora.load_corpus`: the schema check of every flow
(:func:`wfutils.flows.schema.validate_flow`), the feature tags
(:func:`wfutils.flows.vocabulary.flow_features`), the compact flow text
(:func:`wfutils.flows.vocabulary.flow_text`), ids, the :class:`datasets.DatasetDict` (split
``test``), the report of what was skipped, and logging. A new corpus format is therefore one
module in this package::

    from pathlib import Path

    from wfutils.data.converters import register_converter

    @register_converter("my_corpus", folder="my-corpus")   # read from <shared data>/my-corpus/
    def convert(root: Path, skipped: list[tuple[str, str]]):
        for path in sorted(root.glob("*.json")):
            ...
            yield None, request, flow, str(path)   # id None: numbered my_corpus-0000, ...

Nothing else needs editing: the modules of this package are found with :mod:`pkgutil`, and
another installed package can add converters through the entry-point group
``wfbook.converters`` (``my_converter = my_package.converter_module``: loading the module
registers what it decorates; an entry point naming a plain function registers it under the
entry point's name). Converters are looked up lazily: the package's modules are imported when a
name is first asked for, entry points only when a name is still unknown (or when the whole list is
asked for).

The contract of a registered function ``fn(root, skipped)``:

* ``root`` is the corpus folder (``<shared data>/<folder>`` unless a caller passes another one);
* it yields ``(id, request, flow, path)``: ``id`` a string or ``None`` (the framework numbers the
  accepted pairs ``<name>-0000``, ``<name>-0001``, ...), ``request`` the natural-language request,
  ``flow`` a dict in the flow format (or its JSON text), ``path`` the source file (for reports);
* whatever it cannot use it appends to ``skipped`` as ``(path, reason)``, never dropping anything
  silently; an exception on one file should be caught and reported the same way.

The built-in converters are :mod:`~wfutils.data.converters.n8n` and
:mod:`~wfutils.data.converters.logic_apps`; :mod:`~wfutils.data.converters.building` holds the
helpers they share.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

__all__ = ["ENTRY_POINT_GROUP", "RESERVED_NAMES", "Converter", "Pair", "available_converters", "get_converter",
           "register_converter", "unregister_converter"]

log = logging.getLogger(__name__)

#: Entry-point group through which other installed packages add converters.
ENTRY_POINT_GROUP = "wfbook.converters"
#: Names no corpus may take (the synthetic corpus is stored under ``synthetic``).
RESERVED_NAMES = frozenset({"synthetic"})
#: What a converter yields: ``(id or None, request, flow dict or JSON text, source path)``.
Pair = tuple[str | None, str, Any, str]
ConvertFunction = Callable[[Path, list[tuple[str, str]]], Iterable[Pair]]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_HELPER_MODULES = frozenset({"building"})  # modules of this package that register nothing


@dataclass(frozen=True)
class Converter:
    """A registered converter: its name, its function, where its corpus lives and the rows' ``domain``."""

    name: str
    function: ConvertFunction
    folder: str
    domain: str

    @property
    def source(self) -> str:
        """``module:function`` of the registered function (written into the data set's ``info.json``)."""
        return f"{self.function.__module__}:{getattr(self.function, '__qualname__', repr(self.function))}"

    @property
    def description(self) -> str:
        """The first line of the function's docstring."""
        return ((self.function.__doc__ or "").strip().splitlines() or [""])[0]


_REGISTRY: dict[str, Converter] = {}
_imported_modules: set[str] = set()
_loaded_entry_points: set[str] = set()
_entry_point_failures: dict[str, str] = {}


def register_converter(name: str, *, folder: str | None = None, domain: str | None = None,
                       replace: bool = False) -> Callable[[ConvertFunction], ConvertFunction]:
    """Decorator: register ``fn(root, skipped) -> iterable of (id, request, flow, path)`` as corpus ``name``.

    ``folder`` is the corpus folder under the shared data folder (default: ``name``); ``domain`` the
    rows' ``domain`` column (default: ``name``). Names are letters, digits, ``_`` and ``-`` (so
    that a name is never mistaken for a file path) and not ``synthetic``. Registering a name that
    another function holds is an error unless ``replace`` is true; registering the same function
    again (a reloaded module) replaces it.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"bad converter name {name!r}: use letters, digits, '_' and '-' (it names data/<name>/)")
    if name in RESERVED_NAMES:
        raise ValueError(f"converter name {name!r} is reserved")

    def decorate(fn: ConvertFunction) -> ConvertFunction:
        if not callable(fn):
            raise TypeError(f"register_converter({name!r}) decorates a function, got {type(fn).__name__}")
        new = Converter(name, fn, folder or name, domain or name)
        old = _REGISTRY.get(name)
        if old is not None and not replace and old.source != new.source:
            raise ValueError(f"converter {name!r} is already registered by {old.source}; "
                             f"pick another name or pass replace=True")
        _REGISTRY[name] = new
        try:
            fn.wfbook_converter = name  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            pass
        return fn

    return decorate


def unregister_converter(name: str) -> Converter | None:
    """Remove ``name`` from the registry (tests, notebooks that redefine a converter); returns what was there."""
    return _REGISTRY.pop(name, None)


def _import_package_modules() -> None:
    """Import every module of this package not imported yet (each registers its converters)."""
    for info in pkgutil.iter_modules(__path__):
        module = f"{__name__}.{info.name}"
        if info.name.startswith("_") or info.name in _HELPER_MODULES or module in _imported_modules:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken converter module of this package is a bug: say which
            raise ImportError(f"converter module {module} failed to import: {type(exc).__name__}: {exc}") from exc
        _imported_modules.add(module)


def _entry_points() -> Iterable[Any]:
    from importlib.metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


def _load_entry_points() -> None:
    """Load the ``wfbook.converters`` entry points not loaded yet; one that fails is logged and remembered."""
    for ep in _entry_points():
        key = f"{ep.name}={ep.value}"
        if key in _loaded_entry_points:
            continue
        _loaded_entry_points.add(key)
        try:
            obj = ep.load()
        except Exception as exc:  # another package's bug must not stop the built-in corpora
            _entry_point_failures[ep.name] = f"entry point {key} failed to load: {type(exc).__name__}: {exc}"
            log.warning("%s", _entry_point_failures[ep.name])
            continue
        if callable(obj) and not isinstance(obj, ModuleType) and not hasattr(obj, "wfbook_converter") \
                and ep.name not in _REGISTRY:
            register_converter(ep.name)(obj)


def get_converter(name: str) -> Converter:
    """The converter registered as ``name`` (this package's modules, then entry points); ValueError if none is."""
    if name not in _REGISTRY:
        _import_package_modules()
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        hint = f" ({_entry_point_failures[name]})" if name in _entry_point_failures else ""
        raise ValueError(f"unknown corpus {name!r}{hint}; known: {', '.join(sorted(_REGISTRY)) or 'none'} "
                         f"(a JSON Lines corpus is given by its path, e.g. /abs/path/pairs.jsonl)")
    return _REGISTRY[name]


def available_converters() -> dict[str, Converter]:
    """Every converter: this package's modules and the installed entry points, by name."""
    _import_package_modules()
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))
