"""The browser check of the book on small pages written here, in real headless Chromium.

Each check is shown to fail on a page with the fault and to pass on a page without it: tables
clipped at a 1200-pixel-wide window, raw ``NOTE:`` lines in cell outputs, parameter counts
written as long integers, and a whole (tiny) book whose every page is checked.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.browser import require_chromium
from wfutils.study import bookcheck

#: A 1x1 PNG, so that the pages that must show a figure have one that decodes.
PIXEL_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium()


def page(body: str) -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body style='margin: 8px'>{body}</body></html>"


def table(columns: int, cell: str = "0.512", caption: str = "", style: str = "") -> str:
    head = "".join(f"<th>column {i}</th>" for i in range(columns))
    row = "".join(f"<td>{cell}</td>" for _ in range(columns))
    caption = f"<caption>{caption}</caption>" if caption else ""
    return f"<table style='border-collapse: collapse; {style}'>{caption}<thead><tr>{head}</tr></thead><tbody><tr>{row}</tr></tbody></table>"


def cell_output(html: str, *, scroll: bool = True) -> str:
    """An output as myst-nb renders it: a cell_output container, an HTML output that scrolls sideways."""
    overflow = "overflow-x: auto" if scroll else ""
    return f"<div class='cell_output docutils container'><div class='output text_html' style='{overflow}'>{html}</div></div>"


def stream(text: str) -> str:
    return f"<div class='cell_output docutils container'><div class='output stream'><pre>{text}</pre></div></div>"


def check(tmp_path: Path, body: str, name: str = "book/run/page.html") -> bookcheck.PageReport:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(body), encoding="utf-8")
    with bookcheck.serve(tmp_path) as base_url:
        return bookcheck.check_page(base_url, tmp_path, name, bookcheck.DEFAULT_EXPECT)


def test_tables_clipped_at_a_1200_pixel_window_are_named(tmp_path: Path) -> None:
    body = (cell_output(table(3))  # narrow
            + cell_output(table(40, caption="Per-feature means"))  # 40 columns in a scrolling output
            + table(2, style="width: 1400px")  # wider than the window, no scrolling container
            + table(2, style="width: 1150px")  # fits at 1200 px (not at Chromium's default 800)
            + f"<details><summary>more</summary>{table(40)}</details>")  # collapsed: not shown
    report = check(tmp_path, body)
    assert report.tables == 4
    clipped = [p for p in report.problems if "clipped" in p]
    assert len(clipped) == 2, report.problems
    assert clipped[0].startswith("table 2 (Per-feature means; columns: column 0, column 1")
    assert "1200-pixel-wide window" in clipped[0]
    assert clipped[1].startswith("table 3 (columns: column 0, column 1)")

    fitting = check(tmp_path, cell_output(table(6)) + table(2, style="width: 1150px"))
    assert fitting.tables == 2 and fitting.problems == []


def test_raw_note_lines_in_cell_outputs_fail_admonitions_do_not(tmp_path: Path) -> None:
    admonition = ("<div class='cell_output docutils container'><div class='admonition note'>"
                  "<p class='admonition-title'>Note</p><p>2 systems answered part of the test set.</p></div></div>")
    hidden = f"<details><summary>Notes</summary>{stream('NOTE: collapsed, not shown')}</details>"
    report = check(tmp_path, stream("scored 3 systems\nNOTE: gpt-4o skipped 4 requests\n  note: lower case too")
                   + admonition + hidden)
    notes = [p for p in report.problems if "raw note line" in p]
    assert len(notes) == 2, report.problems
    assert "NOTE: gpt-4o skipped 4 requests" in notes[0] and "note: lower case too" in notes[1]
    assert check(tmp_path, stream("scored 3 systems") + admonition + hidden).problems == []


def test_parameter_counts_as_long_integers_fail(tmp_path: Path) -> None:
    sizes = ("<table><thead><tr><th>System</th><th>Parameters</th><th>Other</th></tr></thead><tbody>"
             "<tr><td>slm</td><td>134515008</td><td>0.123456789</td></tr>"
             "<tr><td>coder</td><td>494,032,768</td><td>1,843,200</td></tr>"
             "<tr><td>small</td><td>135M</td><td>commit 1234567890abcdef</td></tr>"
             "<tr><td>large</td><td>0.5B</td><td>1,234,567,890 tokens</td></tr></tbody></table>")
    report = check(tmp_path, cell_output(sizes))
    numbers = [p for p in report.problems if "shows the integer" in p]
    assert [p.split("shows the integer ")[1].split(":")[0] for p in numbers] == ["134515008", "494,032,768",
                                                                                 "1,234,567,890"]
    assert all(p.startswith("table 1 (columns: System, Parameters, Other)") for p in numbers)
    readable = sizes.replace("134515008", "135M").replace("494,032,768", "0.5B").replace("1,234,567,890", "1.2B")
    assert check(tmp_path, cell_output(readable)).problems == []


def write_book(root: Path, extra_page_body: str) -> None:
    """A tiny built book: every page of EXPECTED_PAGES with what it must show, and one more page."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(page("<a href='book/intro.html'>book</a>"), encoding="utf-8")
    for name, expect in bookcheck.EXPECTED_PAGES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(f"<img src='/figure{i}.png'>" for i in range(int(expect["figures"])))
        if expect["glue"] == "text":
            body += "<p>The fine-tuned model scores <span class='pasted-text'>0.61</span>.</p>"
        elif expect["glue"] == "table":
            body += "<table><thead><tr><th>claim</th><th>verdict</th></tr></thead><tbody><tr><td>C1</td><td>ok</td></tr></tbody></table>"
        path.write_text(page(body), encoding="utf-8")
    for i in range(2):
        (root / f"figure{i}.png").write_bytes(PIXEL_PNG)
    extra = root / "book" / "run" / "03_llm_prompting.html"
    extra.write_text(page(extra_page_body), encoding="utf-8")


def test_check_book_checks_every_page_and_names_the_faulty_one(tmp_path: Path) -> None:
    write_book(tmp_path, cell_output(table(40, caption="Prompted systems")) + stream("NOTE: key missing"))
    with pytest.raises(bookcheck.BookCheckError) as failure:
        bookcheck.check_book(tmp_path)
    problems = str(failure.value).splitlines()[1:]
    # The page outside EXPECTED_PAGES is checked too; the expected pages, which carry what they must, pass.
    assert len(problems) == 2, problems
    assert problems[0].strip().startswith("book/run/03_llm_prompting.html: table 1 (Prompted systems;")
    assert problems[1].strip().startswith("book/run/03_llm_prompting.html: a cell output prints a raw note line")
    assert sorted(bookcheck.book_pages(tmp_path)) == sorted([*bookcheck.EXPECTED_PAGES,
                                                             "book/run/03_llm_prompting.html"])
    assert not list(tmp_path.rglob(f"*{bookcheck.PROBE_SUFFIX}"))  # the probes are removed
