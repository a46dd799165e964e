"""Outbox notifier: a directory of .eml files, one per job, named by the job id (the dedupe key).

Every region of a stack writes to the same outbox, as they would send to the same mail system: a
message for a job that is already there is not delivered again. Regions deliver at least once (a
region that dies between sending and recording it leaves the next owner to send again); the outbox
turns that into exactly once for the recipient.

A message is written under ``.partial/`` and linked into place only once it is complete, so a reader
of ``*.eml`` never sees half a message. A writer killed mid-way leaves its partial file behind; the
next notifier opened on the outbox removes it once its writer is gone (Maildir's tmp/ rule).
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from email.message import Message
from pathlib import Path

from regionflow.crashpoints import crash_point
from regionflow.servers.runner import pid_alive

PARTIAL_DIR = ".partial"
# A send takes milliseconds: a partial file this old has lost its writer even if its pid was reused,
# or it was written from another host sharing the directory, whose processes cannot be asked.
STALE_AFTER_S = 3600.0


def _writer_tag() -> str:
    # "@" cannot occur in a host name, so the tag splits back into pid and host
    return f"{os.getpid()}@{socket.gethostname()}@"


def _writer_gone(path: Path, now: float) -> bool:
    pid, _, rest = path.name.partition("@")
    host = rest.partition("@")[0]
    try:
        old = now - path.stat().st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return False  # its writer finished with it meanwhile
    if old:
        return True
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def sweep_partial_writes(directory: Path) -> list[Path]:
    """Remove the partial files of writers that died mid-send; return the paths removed."""
    partial = directory / PARTIAL_DIR
    if not partial.is_dir():
        return []
    now = time.time()
    removed = []
    for path in partial.iterdir():
        if _writer_gone(path, now):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def delivered_messages(directory: Path) -> list[Path]:
    """The delivered messages of an outbox, by name: hidden files (a writer's leftovers) are not messages."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.eml") if not p.name.startswith("."))


class OutboxNotifier:
    channel = "outbox"

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        with contextlib.suppress(OSError):  # an unreadable outbox is reported by the first send instead
            sweep_partial_writes(self.directory)

    def send(self, message: Message) -> bool:
        """Write <job id>.eml unless it exists; True when delivered now, False when it was already there."""
        partial = self.directory / PARTIAL_DIR
        partial.mkdir(parents=True, exist_ok=True)
        job_id = message["X-Regionflow-Job"] or message["Message-ID"].strip("<>").split("@")[0]
        final = self.directory / f"{job_id}.eml"
        if final.exists():
            return False
        fd, tmp = tempfile.mkstemp(dir=partial, prefix=_writer_tag(), suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(bytes(message))
                fh.flush()
                os.fsync(fh.fileno())
            crash_point("outbox:partial_written")
            try:
                os.link(tmp, final)  # create-if-absent, atomically: two senders cannot both deliver
            except FileExistsError:
                return False
            return True
        finally:
            Path(tmp).unlink(missing_ok=True)
