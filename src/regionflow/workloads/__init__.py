"""Workloads a region runs (batch today; the ledger next). Each registers its own region-switch steps
(see registry.py) and owns its service inside the region."""
