"""The committed notebooks: thin, parameterised, stored without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_six_notebooks_exist() -> None:
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs_and_has_parameters(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert not [i for i, cell in enumerate(code) if cell.get("outputs") or cell.get("execution_count")], \
        f"{path.name} has outputs: clear them before committing"
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    declared = papermill.inspect_notebook(str(path))
    assert "run_dir" in declared
    assert len(declared) == sum(1 for line in tagged[0].source.splitlines()
                                if line.strip() and not line.lstrip().startswith("#")), \
        f"papermill cannot parse every line of {path.name}'s parameters cell"


#: A notebook calls the package for every table, figure and claim: at most this many lines of code.
MAX_CODE_LINES = 100


def code_lines(nb: nbformat.NotebookNode) -> int:
    """Non-blank lines of code cells that are not comment-only lines."""
    return sum(1 for cell in nb.cells if cell.cell_type == "code" for line in cell.source.splitlines()
               if line.strip() and not line.lstrip().startswith("#"))


def test_code_lines_count_code_only() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1\n\n# a comment\n    # indented comment\ny = x  # trailing\n"),
                nbformat.v4.new_markdown_cell("text\nmore text")]
    assert code_lines(nb) == 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_thin(path: Path) -> None:
    lines = code_lines(nbformat.read(path, as_version=4))
    assert lines <= MAX_CODE_LINES, \
        f"{path.name} has {lines} lines of code (at most {MAX_CODE_LINES}): move the logic into wfutils"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_checks_its_parameters_right_after_the_parameters_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    index = next(i for i, cell in enumerate(code) if "parameters" in cell.metadata.get("tags", []))
    check = code[index + 1]
    assert f'check_parameters("{path.stem}", globals())' in check.source, \
        f"{path.name}: the cell after the parameters cell checks them (wfutils.study.parameters.check_parameters)"
    assert "remove-input" in check.metadata.get("tags", [])
