"""The batch workload: pipeline spec, split, per-chunk validate/enrich, merge, notify, orchestrator."""
