"""Outbox notifier: one .eml file per job in a directory, written atomically and named by job id."""

from __future__ import annotations

import os
import tempfile
from email.message import EmailMessage
from pathlib import Path


class OutboxNotifier:
    channel = "outbox"

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def send(self, message: EmailMessage) -> None:
        """Write <job id>.eml; a second send of the same job replaces the file instead of adding one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        job_id = message["X-Regionflow-Job"] or message["Message-ID"].strip("<>").split("@")[0]
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(bytes(message))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.directory / f"{job_id}.eml")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
