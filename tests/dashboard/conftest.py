"""A real headless Chromium (Debian's ``chromium``, driven by Playwright) for the dashboard tests;
skipped, saying why, where either is missing. Never downloads a browser."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.showcase import Shop, running_shop

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """``$EAGERSTEP_CHROMIUM``, else Debian's /usr/bin/chromium, else ``chromium`` on the PATH."""
    for candidate in (os.environ.get("EAGERSTEP_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is
    open, and later tests that call ``asyncio.run`` must not find one."""
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium: install Debian's chromium (apt-get install chromium) to run browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (it is in the dev extras: pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with running_shop(tmp_path_factory.mktemp("shop") / "engine.db") as running:
        yield running


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    try:
        yield tab
    finally:
        context.close()


#: Where the browser tests write their screenshots: docs/img/ (shown in docs/engine.md) when
#: EAGERSTEP_SCREENSHOTS=1 (``make screenshots``), else a temporary folder, so a test run leaves
#: the work tree clean.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "img"
    if os.environ.get("EAGERSTEP_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "eagerstep-screenshots"
)
