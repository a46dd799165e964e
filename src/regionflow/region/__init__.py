"""A region: its runtime (trigger, orchestrator, replicators), its HTTP gateway, and the access point."""
