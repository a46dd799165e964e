"""Batch state: the StateStore port, its records, and the SQL adapter chosen by URL."""

from regionflow.state.base import (
    TERMINAL_STATUSES,
    Change,
    ChunkRecord,
    ChunkStatus,
    JobRecord,
    JobStatus,
    NotificationRecord,
    ReferenceInfo,
    RejectRecord,
    StateStore,
)

__all__ = [
    "TERMINAL_STATUSES",
    "Change",
    "ChunkRecord",
    "ChunkStatus",
    "JobRecord",
    "JobStatus",
    "NotificationRecord",
    "ReferenceInfo",
    "RejectRecord",
    "StateStore",
    "open_state_store",
]


def open_state_store(url: str, region: str, *, password: str | None = None, feed: bool = True) -> StateStore:
    """Return the store for url: sqlite:///path/to/state.db or postgresql://user@host:port/db.

    password is used when a postgresql:// url has none (a region's own cluster: the URL is shown, the
    password is kept in the secrets); it never appears in the store's repr or in an error message.
    feed=False: a store no region replicates from, which keeps no change feed (feed_since stays empty).
    StateUnavailable (one line) when the database cannot be reached or refuses the login."""
    from regionflow.errors import ConfigError

    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite" or scheme.startswith("sqlite+") or scheme in ("postgresql", "postgres") \
            or scheme.startswith("postgresql+"):
        from regionflow.state.store import SqlStateStore

        if scheme == "postgres":  # the libpq spelling
            url = "postgresql" + url[len("postgres"):]
        return SqlStateStore(url, region, password=password, feed=feed)
    raise ConfigError(f"state store url {url!r}: unsupported scheme (expected sqlite:/// or postgresql://)")
