"""Structured logs: one JSON object per line, with the region, the epoch and (on job lines) the job id."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable


class JsonFormatter(logging.Formatter):
    def __init__(self, region: str, epoch: Callable[[], int | None]):
        super().__init__()
        self.region = region
        self.epoch = epoch

    def format(self, record: logging.LogRecord) -> str:
        try:
            epoch = self.epoch()
        except Exception:  # the control store may be unreachable; a log line must still be written
            epoch = None
        line = {
            "ts": round(record.created, 3), "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(), "logger": record.name, "region": self.region, "epoch": epoch,
            "msg": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            line["job_id"] = job_id
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(region: str, epoch: Callable[[], int | None] = lambda: None) -> None:
    """Send every log record of this process to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(region, epoch))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per replication poll is noise
