"""A region's HTTP gateway (FastAPI), one router per area: health and metrics, objects, batch jobs,
routing control and replication (with the internal feed other regions pull), region switch, faults."""

from regionflow.region.gateway.app import create_app

__all__ = ["create_app"]
