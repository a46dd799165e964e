"""Load tests and disaster-recovery drills against a two-region stack.

- loadtest: upload N copies of a sample file through the access point, follow every job to the end,
  report throughput and per-file end-to-end latency percentiles.
- scenario: the drill itself: a fresh stack in a temporary directory, a load, a regional failure mid-way
  (kill, storage outage, or replication paused and then the region killed), failover, failback.
- observe: what the drill reads off the stack (through ApiClient) and the RPO it measures.
- invariants: the checks (no file lost, none processed twice, one notification per file, rows balanced,
  regions converged), pure functions of the gathered data.
- report: the drill's report as JSON and Markdown.

The names below are imported on first use, so importing the package (as the CLI does) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SCENARIOS": "regionflow.drill.scenario",
    "check_invariants": "regionflow.drill.invariants",
    "render_markdown": "regionflow.drill.report",
    "run_drill": "regionflow.drill.scenario",
    "percentile": "regionflow.drill.loadtest",
    "run_loadtest": "regionflow.drill.loadtest",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
