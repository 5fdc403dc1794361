"""The committed notebooks: thin, parameterised, stored without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_five_notebooks_exist() -> None:
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


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
