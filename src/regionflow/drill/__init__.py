"""Load tests and disaster-recovery drills against a two-region stack.

- loadtest: upload N copies of a sample file through the access point, follow every job to the end,
  report throughput and per-file end-to-end latency percentiles.
- drill: a fresh stack in a temporary directory, a load, a regional failure mid-way (kill, storage outage,
  or replication paused and then the region killed), failover, failback, and a check of the invariants
  (no file lost, none processed twice, one notification per file) with a JSON and Markdown report.
"""

from regionflow.drill.drill import SCENARIOS, check_invariants, render_markdown, run_drill
from regionflow.drill.loadtest import percentile, run_loadtest

__all__ = ["SCENARIOS", "check_invariants", "percentile", "render_markdown", "run_drill", "run_loadtest"]
