"""The operator console: served by the access point at /console (see regionflow.console.app)."""

from regionflow.console.app import Console, mount_console, parse_metrics

__all__ = ["Console", "mount_console", "parse_metrics"]
