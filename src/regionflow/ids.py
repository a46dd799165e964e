"""Identifiers: sortable version ids (ULID layout) and deterministic job ids."""

from __future__ import annotations

import hashlib
import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_version_id() -> str:
    """A 26-character ULID: lexically sortable by creation time, monotonic within this process."""
    global _last_ms, _last_rand
    with _lock:
        now = int(time.time() * 1000)
        if now <= _last_ms:
            # Same (or earlier, after a clock step) millisecond: keep order by bumping the random part.
            now = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last_ms, _last_rand = now, rand
    return _encode(now, 10) + _encode(rand, 16)


def job_id_for(key: str, version_id: str) -> str:
    """The job id of one upload; every region derives the same id from the same (key, version id)."""
    digest = hashlib.sha256(f"{key}\x00{version_id}".encode()).hexdigest()
    return "job-" + digest[:24]
