"""Driving the console in headless Debian chromium with Playwright (the console and trigger tests share it).

Needs /usr/bin/chromium (scripts/ensure-browser.sh installs it). Screenshots go to test-artifacts/console/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from stackkit import Stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "console"
WAIT_MS = 15_000

expect.set_options(timeout=WAIT_MS)


@contextmanager
def chromium() -> Iterator[Browser]:
    """The system chromium, launched headless (the test fails, not skips, when it is missing)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-browser.sh", pytrace=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def console_page(browser: Browser) -> Iterator[Page]:
    """A fresh page; JavaScript errors on it fail the test."""
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page: Page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header stays on top of a full-page shot
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def login(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.url()}/console")
    page.get_by_test_id("login-token").fill(stack.secrets.admin_token)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("status-line")).to_contain_text("updated")
