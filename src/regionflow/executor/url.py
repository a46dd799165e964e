"""Executor addresses as regionflow.toml and `process --executor` name them.

- `processes` (a region's default): a process pool of the region's `workers` on its own machine;
- `threads`: threads of the calling process (what `regionflow process` runs on by default);
- `tcp://HOST:PORT`: the scheduler of a Dask distributed cluster someone already runs;
- `dask://local?workers=N&threads=T`: a Dask LocalCluster of N worker processes (T threads each, default
  1) that the region (or the `process` run) starts and stops with itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from regionflow.errors import ConfigError

PROCESSES, THREADS, DASK = "processes", "threads", "dask"
EXAMPLES = "processes, threads, tcp://HOST:PORT (a Dask scheduler) or dask://local?workers=N"
_HOST_PORT = re.compile(r"^tcp://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})/?$")


@dataclass(frozen=True)
class ExecutorTarget:
    kind: str  # PROCESSES, THREADS or DASK
    scheduler: str | None = None  # a running Dask scheduler's tcp:// address
    local_workers: int | None = None  # dask://local: worker processes of the cluster to start
    threads_per_worker: int = 1

    @property
    def is_local_cluster(self) -> bool:
        return self.kind == DASK and self.scheduler is None


def parse_executor(url: str) -> ExecutorTarget:
    """The executor an address names; ConfigError (naming the address and the forms) when it is none."""
    text = url.strip()
    if text in (PROCESSES, THREADS):
        return ExecutorTarget(kind=text)
    if text.startswith("tcp://"):
        m = _HOST_PORT.match(text)
        if m is None or not 0 < int(m.group(2)) < 65536:
            raise ConfigError(f"executor {url!r}: expected tcp://HOST:PORT, the address of a Dask scheduler")
        return ExecutorTarget(kind=DASK, scheduler=text.rstrip("/"))
    if text.startswith("dask://"):
        parts = urlsplit(text)
        if parts.netloc != "local" or parts.path not in ("", "/"):
            raise ConfigError(f"executor {url!r}: a Dask cluster to start is dask://local?workers=N; "
                              "for a running one give its scheduler as tcp://HOST:PORT")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - {"workers", "threads"})
        if unknown:
            raise ConfigError(f"executor {url!r}: unknown option(s) {', '.join(unknown)} (known: workers, threads)")
        return ExecutorTarget(kind=DASK, local_workers=_count(url, query, "workers", 2),
                              threads_per_worker=_count(url, query, "threads", 1))
    raise ConfigError(f"executor {url!r}: expected {EXAMPLES}")


def check_region_executor(url: str) -> str:
    """A region's executor address, stripped; ValueError (for the config's validation) when a region
    cannot run on it."""
    try:
        target = parse_executor(url)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if target.kind == THREADS:
        raise ValueError("executor 'threads' is for `regionflow process`; a region runs chunks on 'processes' "
                         "or a Dask cluster")
    return url.strip()


def _count(url: str, query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    if len(values) > 1 or not values[0].isdigit() or not 1 <= int(values[0]) <= 256:
        raise ConfigError(f"executor {url!r}: {name} must be a whole number from 1 to 256")
    return int(values[0])
