"""The package's shape: its public face, its layers (no upward import, no cycle) and its installability."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

import wfutils

PACKAGE = Path(wfutils.__file__).parent
#: Lower layers never import higher ones; modules of one layer may import each other (without cycles).
LAYERS = [
    {"wfutils.storage", "wfutils.provenance", "wfutils.config"},
    {"wfutils.flows"},
    {"wfutils.data"},
    {"wfutils.models", "wfutils.weights"},
    {"wfutils.engines"},  # serve both arms: below them, above the models they run
    {"wfutils.slm", "wfutils.llm"},
    {"wfutils.evaluation"},
    {"wfutils.study", "wfutils.pipeline", "wfutils.book"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return index
    return None


def _imports(path: Path) -> set[str]:
    """Every wfutils module a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("wfutils.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wfutils"):
            if node.module == "wfutils":
                found |= {f"wfutils.{a.name}" for a in node.names}
            else:
                found.add(node.module)
    return found


@lru_cache(maxsize=1)
def _graph() -> dict[str, frozenset[str]]:
    return {_module_name(p): frozenset(_imports(p)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}


def test_every_module_belongs_to_a_layer() -> None:
    assert [m for m in _graph() if _layer(m) is None] == []


def test_lower_layers_never_import_higher_ones() -> None:
    upward = [f"{module} -> {target}" for module, targets in _graph().items() for target in targets
              if _layer(target) is not None and _layer(target) > _layer(module)]
    assert upward == []


def test_the_slm_and_llm_arms_do_not_import_each_other() -> None:
    crossing = [f"{m} -> {t}" for m, targets in _graph().items() for t in targets
                if {m.split(".")[1], t.split(".")[1]} == {"slm", "llm"}]
    assert crossing == []


def test_every_engine_module_registers_an_engine_under_its_name_and_unknown_names_are_listed() -> None:
    import pkgutil

    import wfutils.engines as engines
    from wfutils.engines.base import Engine, InProcessEngine, ServerEngine

    helpers = {"base", "processes"}
    modules = {m.name for m in pkgutil.iter_modules(engines.__path__)} - helpers
    registered = {cls.__module__.rsplit(".", 1)[1]: name for name, cls in engines.ENGINES.items()}
    assert set(registered) == modules  # one module, one engine: adding an engine is one new file
    assert engines.engine_names() == ["llamacpp", "openai-compatible", "transformers", "transformers-inprocess"]
    for name, cls in engines.ENGINES.items():
        assert issubclass(cls, (ServerEngine, InProcessEngine)) and issubclass(cls, Engine) and cls.name == name
    with pytest.raises(engines.UnknownEngineError, match=r"unknown engine 'vllm'; known engines: llamacpp, "
                                                         r"openai-compatible, transformers, transformers-inprocess"):
        engines.get_engine("vllm")


def test_no_import_cycle() -> None:
    modules = _graph()
    graph = {m: {t for t in targets if t in modules} for m, targets in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target] if target in stack else [node, target])
            elif not state.get(target):
                visit(target, stack + [target])
        state[node] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module, [module])
    assert cycles == []


def test_public_face_of_the_metric() -> None:
    from wfutils import (component_match, corpus_flow_similarity, edit_operations, flow_similarity, parse_flow,
                         trigger_match, validate_flow)

    flow = {"trigger": {"type": "daily"}, "components": [{"order": 1, "category": "action", "definition": "log"}]}
    text = '```json\n{"trigger": {"type": "daily"}, "components": []}\n```'
    assert flow_similarity(flow, flow) == 1.0 and 0 < flow_similarity(text, flow) < 1
    assert corpus_flow_similarity([flow, text], [flow, flow]) == pytest.approx((1 + flow_similarity(text, flow)) / 2)
    assert trigger_match(text, flow) and component_match(text, flow)["recall"] == 0.0
    assert [op.kind for op in edit_operations(text, flow)].count("insert") >= 1
    assert parse_flow(text).status == "ok" and validate_flow(flow) == []


from wfutils.provenance import code_digest  # noqa: E402


def test_installed_non_editable_the_package_finds_its_data(tmp_path: Path) -> None:
    """A wheel installed elsewhere (not this checkout) loads its schema, catalogue, templates, prices and profiles."""
    import shutil

    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(PACKAGE, source / "wfutils", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PACKAGE.parent / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheel"), str(source)], check=True, capture_output=True)
    wheel = next((tmp_path / "wheel").glob("wfutils-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    probe = (
        "import wfutils, sys\n"
        "assert 'site' in wfutils.__file__, wfutils.__file__\n"
        "from wfutils.flows.schema import FLOW_SCHEMA\n"
        "from wfutils.data.catalog import load_catalog\n"
        "from wfutils.llm.pricing import load_prices\n"
        "from wfutils.llm.strategies import template_text\n"
        "from wfutils.study.pipeline import load_profiles\n"
        "from wfutils.provenance import code_digest\n"
        "assert FLOW_SCHEMA['$defs']['trigger']['properties']['type']['enum']\n"
        "assert load_catalog().actions and load_prices() and template_text('system') and 'default' in load_profiles()\n"
        "print(code_digest())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"),
                         "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    code_digest.cache_clear()
    assert out.stdout.strip() == code_digest()  # same sources and data, same digest


def test_make_help_lists_every_target_with_one_line() -> None:
    root = PACKAGE.parent
    out = subprocess.run(["make", "-s", "help"], cwd=root, capture_output=True, text=True, check=True).stdout
    listed = {line.split()[1] for line in out.splitlines() if line.strip().startswith("make ")}
    declared = set()
    for line in (root / "Makefile").read_text().splitlines():
        if line.startswith(".PHONY:"):
            declared = set(line.split(":", 1)[1].split())
    assert declared and listed == declared


def test_jupyter_lab_and_notebook_are_installed_with_the_environment() -> None:
    bin_dir = Path(sys.executable).parent
    for app in ("lab", "notebook"):
        out = subprocess.run([str(bin_dir / "jupyter"), app, "--version"], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.strip()[0].isdigit(), (app, out.stderr[-500:])
