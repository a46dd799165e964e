"""Module-level task functions for the executor suites (worker processes import them by name)."""

from __future__ import annotations

import os


def square_unless_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x * x


def exit_on_two(x: int) -> int:
    """Kills the worker process that runs item 2, like a worker lost mid-chunk."""
    if x == 2:
        os._exit(9)
    return x


def note_import() -> None:
    """Called when executor_preload_marker is imported: leaves this process's pid in REGIONFLOW_TEST_MARKERS."""
    markers = os.environ.get("REGIONFLOW_TEST_MARKERS")
    if markers:
        with open(os.path.join(markers, str(os.getpid())), "w") as fh:
            fh.write("imported")
