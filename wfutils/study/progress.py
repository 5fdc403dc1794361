"""Live progress of a running notebook in the terminal, and executed copies without progress noise.

While the pipeline runs a notebook, one status line shows the notebook, the cell being executed
(``cell 7/18``) and the latest line the notebook's own progress bars printed (training step and
loss, flows generated). The bars reach the pipeline as the notebook's stderr stream; once the
notebook has finished they are removed from its executed copy, which is read as a document.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from wfutils.storage import atomic_write_text

ENGINE = "wfbook-live"
_PROGRESS_SEGMENT = re.compile(r"\d+%\||\|\s*\d+/\d+|\d+/\d+ \[|\[\d+:\d+(?::\d+)?<")
_TAIL_CHARS = 70


def _last_line(text: str) -> str:
    lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    return lines[-1] if lines else ""


class LiveStatus:
    """A status line: the cells of one notebook as a bar, the notebook's latest progress line as its postfix."""

    def __init__(self, name: str, *, enabled: bool = True, position: int = 1) -> None:
        self.name, self.enabled, self.position = name, enabled, position
        self.bar: Any = None
        self.latest = ""

    def cell_bar(self, total: int) -> Any:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=f"  {self.name}", unit="cell", leave=False, position=self.position,
                        disable=not self.enabled, mininterval=0.5, bar_format="{desc}: cell {n_fmt}/{total_fmt} [{elapsed}]{postfix}")
        return self.bar

    def write(self, text: str) -> int:
        line = _last_line(text)
        if line:
            self.latest = line if len(line) <= _TAIL_CHARS else line[: _TAIL_CHARS - 1] + "…"
            if self.bar is not None:
                self.bar.set_postfix_str(self.latest, refresh=True)
        return len(text)

    def flush(self) -> None:
        pass


def register_engine() -> str:
    """Register (once) the papermill engine that feeds a :class:`LiveStatus`; return its name."""
    from papermill.engines import NBClientEngine, papermill_engines

    class LiveEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            live: LiveStatus | None = kwargs.pop("live", None)
            if live is not None:
                nb_man.pbar = live.cell_bar(len(nb_man.nb.cells))
                kwargs["stdout_file"] = kwargs["stderr_file"] = live
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    if ENGINE not in papermill_engines._engines:
        papermill_engines.register(ENGINE, LiveEngine)
    return ENGINE


def _without_progress(text: str) -> str:
    kept = [segment for segment in re.split(r"(?<=[\r\n])", text) if not _PROGRESS_SEGMENT.search(segment)]
    return "".join(kept).replace("\r", "")


def strip_progress_bars(path: Path) -> int:
    """Remove progress-bar text from the stderr streams of an executed notebook; return outputs dropped."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    dropped = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = _without_progress("".join(output.get("text", "")))
                if not text.strip():
                    dropped += 1
                    continue
                output["text"] = text
            kept.append(output)
        cell["outputs"] = kept
    atomic_write_text(path, nbformat.writes(nb))
    return dropped
