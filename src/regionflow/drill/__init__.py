"""Load tests and disaster-recovery drills against a two-region stack.

- loadtest: upload N copies of a sample file through the access point, follow every job to the end,
  report throughput and per-file end-to-end latency percentiles.
- drill: a fresh stack in a temporary directory, a load, a regional failure mid-way (kill, storage outage,
  or replication paused and then the region killed), failover, failback, and a check of the invariants
  (no file lost, none processed twice, one notification per file) with a JSON and Markdown report.

The names below are imported on first use, so `regionflow.drill.cli` (wired into the CLI) stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SCENARIOS": "regionflow.drill.drill",
    "check_invariants": "regionflow.drill.drill",
    "render_markdown": "regionflow.drill.drill",
    "run_drill": "regionflow.drill.drill",
    "percentile": "regionflow.drill.loadtest",
    "run_loadtest": "regionflow.drill.loadtest",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
