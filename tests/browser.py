"""Headless Chromium for the tests that look at rendered pages: skip where it is missing, fail under CI."""

from __future__ import annotations

import os

import pytest

from wfutils.study import bookcheck


def require_chromium() -> None:
    """Skip the calling test with the reason where Chromium is missing (``-ra`` lists it); under CI
    (``CI=true``, which CI machines set and where ``.ci/run`` installs Chromium) a missing browser fails."""
    try:
        bookcheck.find_chromium()
    except bookcheck.BookCheckError as exc:
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(f"CI={os.environ['CI']}: the browser check cannot run: {exc}")
        pytest.skip(f"browser check not run: {exc}")
