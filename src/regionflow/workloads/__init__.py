"""Workloads a region runs: each registers its own region-switch steps and region hooks (batch today)."""
