"""Outbox notifier: a directory of .eml files, one per job, named by the job id (the dedupe key).

Every region of a stack writes to the same outbox, as they would send to the same mail system: a
message for a job that is already there is not delivered again. Regions deliver at least once (a
region that dies between sending and recording it leaves the next owner to send again); the outbox
turns that into exactly once for the recipient.
"""

from __future__ import annotations

import os
import tempfile
from email.message import Message
from pathlib import Path


class OutboxNotifier:
    channel = "outbox"

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def send(self, message: Message) -> bool:
        """Write <job id>.eml unless it exists; True when delivered now, False when it was already there."""
        self.directory.mkdir(parents=True, exist_ok=True)
        job_id = message["X-Regionflow-Job"] or message["Message-ID"].strip("<>").split("@")[0]
        final = self.directory / f"{job_id}.eml"
        if final.exists():
            return False
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(bytes(message))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, final)  # create-if-absent, atomically: two senders cannot both deliver
            except FileExistsError:
                return False
            return True
        finally:
            Path(tmp).unlink(missing_ok=True)
