"""Look at the built book the way a reader would: serve it, open it in headless Chromium.

    python -m wfutils.study.bookcheck --html _build/html --screenshot results/smoke/book.png

Serves the HTML on 127.0.0.1 (a free port), loads the pages in headless Chromium (the
Debian package), screenshots the evaluation page and fails when a page is missing, a
figure does not load, or a glued number did not make it into the prose.
"""

from __future__ import annotations

import argparse
import functools
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
}
SCREENSHOT_PAGE = "book/run/04_evaluation.html"


class BookCheckError(RuntimeError):
    """The rendered book is missing something a reader would see."""


@dataclass
class PageReport:
    page: str
    figures: int = 0
    broken_images: list[str] = field(default_factory=list)
    glued_values: list[str] = field(default_factory=list)
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


# Runs in the page after load: report each image and whether it decoded.
_IMAGE_PROBE = """
<script>
window.addEventListener('load', () => {
  const out = [...document.images].map(i => (i.complete && i.naturalWidth > 0 ? 'OK ' : 'BROKEN ') + i.src);
  const pre = document.createElement('pre'); pre.id = 'wfbook-image-report';
  pre.textContent = out.join('\\n'); document.body.appendChild(pre);
});
</script>
"""


def check_page(base_url: str, html_dir: Path, page: str, expect: dict[str, object]) -> PageReport:
    report = PageReport(page)
    source = html_dir / page
    if not source.exists():
        report.problems.append(f"page missing: {source}")
        return report
    probe = source.with_name(source.stem + ".wfbook-probe.html")
    probe.write_text(source.read_text(encoding="utf-8").replace("</body>", _IMAGE_PROBE + "</body>"), encoding="utf-8")
    try:
        dom = _chromium(["--dump-dom", f"{base_url}/{probe.relative_to(html_dir).as_posix()}"])
    finally:
        probe.unlink(missing_ok=True)
    match = re.search(r'<pre id="wfbook-image-report"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    lines = [line for line in (match.group(1).splitlines() if match else []) if line.strip()]
    report.figures = sum(line.startswith("OK ") for line in lines)
    report.broken_images = [line[7:] for line in lines if line.startswith("BROKEN ")]
    if report.broken_images:
        report.problems.append(f"images that do not load: {', '.join(report.broken_images)}")
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


def check_book(html_dir: Path, screenshot: Path | None = None) -> list[PageReport]:
    """Serve the built book, check the expected pages, optionally screenshot the results page."""
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").exists():
        raise BookCheckError(f"no built book in {html_dir} (run python -m wfutils.book --run results/<run>)")
    with serve(html_dir) as base_url:
        reports = [check_page(base_url, html_dir, page, expect) for page, expect in EXPECTED_PAGES.items()]
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
        print(f"ok  {report.page}: {report.figures} figure(s){glued}")
    if args.screenshot:
        print(f"screenshot: {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
