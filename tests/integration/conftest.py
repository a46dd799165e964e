"""Integration tests start real processes (region servers, the access point, the CLI) on loopback ports.

Every test here is marked `slow`: `pytest -m "not slow"` runs the in-process suites alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stackkit import Stack, running_stack

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def stack_config() -> str:
    """Extra regionflow.toml text for the `stack` fixture (a module overrides this fixture to set some)."""
    return ""


@pytest.fixture
def stack(tmp_path: Path, stack_config: str) -> Iterator[Stack]:
    """A real two-region stack in tmp_path/stack, stopped after the test even when it fails."""
    with running_stack(tmp_path / "stack", stack_config) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    """One headless Debian chromium per test module (browserkit.chromium)."""
    from browserkit import chromium

    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    """A fresh page on the module's browser; JavaScript errors on it fail the test."""
    from browserkit import console_page

    with console_page(browser) as pg:
        yield pg
