"""Fixtures of the in-process unit suites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from regionflow.config import init_project, load_config
from regionflow.region.runtime import Region

EAST = "us-east-1"


@pytest.fixture
def region(tmp_path) -> Iterator[Region]:
    """A us-east-1 region of a fresh `init` topology, built in-process (no server, no loops started)."""
    config = load_config(init_project(tmp_path))
    r = Region(config, EAST)
    yield r
    r.stop()
