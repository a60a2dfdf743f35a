"""Headless Chromium through Playwright, to check the review page in a real browser (the tests, the
benchmark and the README's screenshot).

The system's Chromium runs it (Debian: ``apt-get install chromium``), not a browser Playwright
downloads: checks run offline, and nothing is fetched at test time. Playwright (the ``test`` extra)
is no dependency of the package itself.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

# quiet and offline: no sandbox (containers run as root), no GPU, no background requests
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    """The Chromium executable: ``$JAL_PLUGINS_CHROMIUM``, else the first of ``NAMES`` on the PATH;
    RuntimeError saying how to get one."""
    path = os.environ.get("JAL_PLUGINS_CHROMIUM") or next(filter(None, map(shutil.which, NAMES)), None)
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError(f"no Chromium: {path or ' / '.join(NAMES)} not found or not executable "
                           "(apt-get install chromium, or set JAL_PLUGINS_CHROMIUM)")  # fmt: skip
    return path


@contextmanager
def chromium():
    """A headless Chromium (Playwright's sync ``Browser``), closed on exit; RuntimeError naming what is
    missing when Playwright or the browser is."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise RuntimeError(f"playwright is not installed ({e}): pip install 'jal-plugins[test]'") from e
    path = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
