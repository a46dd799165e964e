"""Crash points for resilience tests: REGIONFLOW_CRASH_AT names points where the process dies at once.

REGIONFLOW_CRASH_AT is a comma-separated list of point names (e.g. "after_split,chunk:3"). When
REGIONFLOW_CRASH_MARKERS names a directory, each point fires once: a marker file remembers it, so a
resumed run gets past it. Without markers a point fires every time it is reached.
"""

from __future__ import annotations

import os
from pathlib import Path

CRASH_EXIT_CODE = 86


def crash_point(name: str) -> None:
    """Die here (os._exit, no cleanup, like SIGKILL) if this point is armed."""
    armed = os.environ.get("REGIONFLOW_CRASH_AT")
    if not armed or name not in armed.split(","):
        return
    markers = os.environ.get("REGIONFLOW_CRASH_MARKERS")
    if markers:
        marker = Path(markers) / name.replace("/", "_").replace(":", "_")
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
    os._exit(CRASH_EXIT_CODE)
