"""The headless browser (Debian's chromium via Playwright) the page tests drive."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("BT_IBKR_CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")


# no background traffic of the browser's own (updates, sync, safe browsing ...)
QUIET = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
         "--disable-default-apps", "--disable-sync", "--no-first-run",
         "--disable-domain-reliability", "--disable-client-side-phishing-detection",
         "--disable-features=OptimizationHints,MediaRouter,Translate"]


def need_browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if CHROMIUM and sync_playwright is not None:
        return sync_playwright
    why = ("chromium (apt-get install chromium) and playwright (pip install playwright) are "
           "needed for the browser checks")
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)
