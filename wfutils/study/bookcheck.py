"""Look at the built book the way a reader would: serve it, open it in headless Chromium.

    python -m wfutils.study.bookcheck --html _build/html --screenshot results/smoke/book.png

Serves the HTML on 127.0.0.1 (a free port), loads every page of the book in headless
Chromium (the Debian package) in a window :data:`VIEWPORT_WIDTH` pixels wide, screenshots the
evaluation page and fails when a page is missing, a figure does not load, a glued number did
not make it into the prose, a table is clipped (wider than the page or than its scrolling
container), a cell output shows a raw ``NOTE:`` line, or a table cell shows a parameter count
as a long integer (134515008 instead of 135M).
"""

from __future__ import annotations

import argparse
import functools
import html as html_text
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=5000")
#: Pages and what each must show: at least this many loaded figures, and glued values.
EXPECTED_PAGES = {
    "book/intro.html": {"figures": 0, "glue": "text"},
    "book/claims.html": {"figures": 0, "glue": "table"},
    "book/limitations.html": {"figures": 0, "glue": "text"},
    "book/run/01_data_exploration.html": {"figures": 1, "glue": None},
    "book/run/04_evaluation.html": {"figures": 1, "glue": None},
    "book/run/06_decision.html": {"figures": 1, "glue": None},  # validity beside quality is drawn for every run
}
SCREENSHOT_PAGE = "book/run/04_evaluation.html"
#: What every other page of the book must show (its tables, outputs and figures are still checked).
DEFAULT_EXPECT = {"figures": 0, "glue": None}
#: The window width at which no table may be clipped.
VIEWPORT_WIDTH = 1200
PROBE_SUFFIX = ".wfbook-probe.html"


class BookCheckError(RuntimeError):
    """The rendered book is missing something a reader would see."""


@dataclass
class PageReport:
    page: str
    figures: int = 0
    broken_images: list[str] = field(default_factory=list)
    glued_values: list[str] = field(default_factory=list)
    tables: int = 0
    problems: list[str] = field(default_factory=list)


def find_chromium() -> str:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise BookCheckError("Chromium not found: install the Debian package `chromium` (apt-get install chromium)")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the base class names it `format`
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve a folder over HTTP on 127.0.0.1 (a free port) for the duration of the block."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _chromium(args: list[str], timeout: float = 90) -> str:
    with tempfile.TemporaryDirectory() as profile:
        command = [find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise BookCheckError(f"chromium failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result.stdout


# Runs in the page after load and writes one tab-separated line per finding into a <pre>:
# IMAGE (each image and whether it decoded), TABLES (how many are shown), CLIPPED (a shown table
# whose right edge lies beyond the window or beyond the visible box of a scrolling ancestor),
# NOTE (a visible line of a cell output that starts with "NOTE:"), LONGINT (a table cell with an
# integer of 9 or more digits, plain or grouped by commas: a parameter count not written as 135M).
_PAGE_PROBE = """
<script>
window.addEventListener('load', () => {
  const out = [];
  // shown: rendered, not hidden (visibility) and not inside a closed <details> or a collapsed toggle
  const shown = e => e.checkVisibility({contentVisibilityAuto: true, visibilityProperty: true});
  const clean = t => t.replace(/\\s+/g, ' ').trim().slice(0, 120);
  for (const i of document.images) out.push(['IMAGE', i.complete && i.naturalWidth > 0 ? 'OK' : 'BROKEN', i.src]);
  const tables = [...document.querySelectorAll('table')].filter(shown);
  out.push(['TABLES', tables.length]);
  const windowWidth = document.documentElement.clientWidth;
  const longInt = /(?<![\\w.,])(\\d{9,}|\\d{1,3}(?:,\\d{3}){3,}|\\d{3},\\d{3},\\d{3})(?![\\w]|[.,]\\d)/;
  tables.forEach((table, index) => {
    const caption = table.querySelector('caption');
    const labelled = table.parentElement && table.parentElement.closest('[id]');
    const heads = [...table.querySelectorAll('thead th')].map(h => clean(h.textContent)).filter(Boolean);
    const name = [caption ? clean(caption.textContent) : '', labelled ? '#' + labelled.id : '',
                  heads.length ? 'columns: ' + heads.slice(0, 5).join(', ') + (heads.length > 5 ? ', ...' : '') : '']
                 .filter(Boolean).join('; ');
    const right = table.getBoundingClientRect().right;
    let visible = windowWidth;
    for (let a = table.parentElement; a && a !== document.documentElement; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') {
        visible = Math.min(visible, a.getBoundingClientRect().left + a.clientLeft + a.clientWidth);
      }
    }
    if (right > visible + 1) {
      out.push(['CLIPPED', index + 1, name, Math.round(table.getBoundingClientRect().width), Math.round(right - visible)]);
    }
    for (const cell of table.querySelectorAll('td, th')) {
      const found = cell.textContent.match(longInt);
      if (found) out.push(['LONGINT', index + 1, name, found[1]]);
    }
  });
  for (const pre of document.querySelectorAll('.cell_output pre')) {
    if (!shown(pre)) continue;
    for (const line of pre.innerText.split('\\n')) {
      if (/^\\s*NOTE\\s*:/i.test(line)) out.push(['NOTE', clean(line)]);
    }
  }
  const pre = document.createElement('pre'); pre.id = 'wfbook-page-report';
  pre.textContent = out.map(fields => fields.join('\\t')).join('\\n'); document.body.appendChild(pre);
});
</script>
"""


def _probe_findings(dom: str) -> list[list[str]]:
    """The probe's lines of a dumped page, split into fields (empty when the probe did not run)."""
    match = re.search(r'<pre id="wfbook-page-report"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    text = html_text.unescape(match.group(1)) if match else ""
    return [line.split("\t") for line in text.splitlines() if line.strip()]


def _layout_problems(findings: list[list[str]]) -> list[str]:
    """Clipped tables, raw NOTE lines and parameter counts written out, named by table."""
    problems = []
    for kind, *rest in findings:
        if kind == "CLIPPED":
            index, name, width, hidden = rest
            problems.append(f"table {index} ({name or 'unnamed'}) is clipped at a {VIEWPORT_WIDTH}-pixel-wide "
                            f"window: {width} px wide, its last {hidden} px out of view")
        elif kind == "LONGINT":
            index, name, number = rest
            problems.append(f"table {index} ({name or 'unnamed'}) shows the integer {number}: write parameter "
                            "counts as 135M / 0.5B (wfutils.evaluation.tables.params_label)")
        elif kind == "NOTE":
            problems.append(f"a cell output prints a raw note line, show it as an admonition: {rest[0]!r}")
    return problems


def check_page(base_url: str, html_dir: Path, page: str, expect: dict[str, object]) -> PageReport:
    report = PageReport(page)
    source = html_dir / page
    if not source.exists():
        report.problems.append(f"page missing: {source}")
        return report
    probe = source.with_name(source.stem + PROBE_SUFFIX)
    probe.write_text(source.read_text(encoding="utf-8").replace("</body>", _PAGE_PROBE + "</body>"), encoding="utf-8")
    try:
        dom = _chromium([f"--window-size={VIEWPORT_WIDTH},1600", "--dump-dom",
                         f"{base_url}/{probe.relative_to(html_dir).as_posix()}"])
    finally:
        probe.unlink(missing_ok=True)
    findings = _probe_findings(dom)
    if not findings:
        report.problems.append("the page's check script did not run (no report in the page)")
    images = [rest for kind, *rest in findings if kind == "IMAGE"]
    report.figures = sum(state == "OK" for state, _ in images)
    report.broken_images = [src for state, src in images if state == "BROKEN"]
    report.tables = sum(int(rest[0]) for kind, *rest in findings if kind == "TABLES")
    if report.broken_images:
        report.problems.append(f"images that do not load: {', '.join(report.broken_images)}")
    report.problems += _layout_problems(findings)
    if report.figures < int(expect["figures"]):
        report.problems.append(f"expected at least {expect['figures']} figure(s), found {report.figures}")
    if "{glue" in dom or "glue:text" in dom:
        report.problems.append("a glue role was not replaced by its value")
    if expect["glue"] == "text":
        report.glued_values = [v.strip() for v in re.findall(r'<span class="pasted-text">(.*?)</span>', dom)]
        if not report.glued_values:
            report.problems.append("no glued number found in the prose")
        # Numbers, or names (a system, an evaluation set, a profile, a weight format); never an
        # empty, NaN or repr-like value.
        bad = [v for v in report.glued_values if not (re.fullmatch(r"[-+]?\d[\d,]*(\.\d+)?", v)
                                                      or re.fullmatch(r"[A-Za-z][\w.+\-]*(, [A-Za-z][\w.+\-]*)*", v))
               or v.lower() in ("nan", "none", "null", "inf", "-inf")]
        if bad:
            report.problems.append(f"glued values that are neither numbers nor names: {bad}")
    elif expect["glue"] == "table":
        tables = re.findall(r"<table.*?</table>", dom, re.DOTALL)
        claims_tables = [t for t in tables if re.search(r"verdict", t, re.IGNORECASE)]
        if not claims_tables:
            report.problems.append("the glued claims table (with its verdict column) is missing")
        report.glued_values = [f"{len(re.findall(r'<tr', t))} table rows" for t in claims_tables]
    return report


def book_pages(html_dir: Path) -> dict[str, dict[str, object]]:
    """Every page of the book (``book/**/*.html``) with what it must show: :data:`EXPECTED_PAGES`, else
    :data:`DEFAULT_EXPECT`; an expected page that was not built is listed too, and reported missing."""
    found = sorted(p.relative_to(html_dir).as_posix() for p in (Path(html_dir) / "book").rglob("*.html")
                   if not p.name.endswith(PROBE_SUFFIX))
    return {**EXPECTED_PAGES, **{page: EXPECTED_PAGES.get(page, DEFAULT_EXPECT) for page in found}}


def check_book(html_dir: Path, screenshot: Path | None = None) -> list[PageReport]:
    """Serve the built book, check every page (:func:`book_pages`), optionally screenshot the results page."""
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").exists():
        raise BookCheckError(f"no built book in {html_dir} (run python -m wfutils.book --run results/<run>)")
    with serve(html_dir) as base_url:
        reports = [check_page(base_url, html_dir, page, expect) for page, expect in book_pages(html_dir).items()]
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            _chromium([f"--screenshot={screenshot.resolve()}", "--window-size=1280,2400", f"{base_url}/{SCREENSHOT_PAGE}"])
            if not screenshot.exists() or screenshot.stat().st_size < 10_000:
                raise BookCheckError(f"screenshot of {SCREENSHOT_PAGE} was not written or is blank: {screenshot}")
    problems = [f"{r.page}: {p}" for r in reports for p in r.problems]
    if problems:
        raise BookCheckError("the rendered book is incomplete:\n  " + "\n  ".join(problems))
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wfutils.study.bookcheck", description=__doc__.split("\n")[0])
    parser.add_argument("--html", type=Path, default=Path("_build/html"))
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        reports = check_book(args.html, args.screenshot)
    except BookCheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for report in reports:
        glued = f", glued: {', '.join(report.glued_values)}" if report.glued_values else ""
        print(f"ok  {report.page}: {report.figures} figure(s), {report.tables} table(s){glued}")
    if args.screenshot:
        print(f"screenshot: {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
