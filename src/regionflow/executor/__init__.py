"""Executors run chunk work in parallel: a local process pool (a region), threads (`regionflow process`),
or a Dask distributed cluster (`tcp://HOST:PORT`, `dask://local?workers=N`)."""

from regionflow.errors import ConfigError
from regionflow.executor.base import Executor, ExecutorStatus, ExecutorUnavailable, WorkerLost
from regionflow.executor.local import LocalExecutor
from regionflow.executor.threads import ThreadExecutor
from regionflow.executor.url import DASK, PROCESSES, THREADS, ExecutorTarget, parse_executor

__all__ = ["Executor", "ExecutorStatus", "ExecutorTarget", "ExecutorUnavailable", "LocalExecutor",
           "ThreadExecutor", "WorkerLost", "open_executor", "parse_executor"]


def open_executor(url: str, workers: int, *, preload: tuple[str, ...] = ()) -> Executor:
    """The executor an address names (see executor.url); workers and preload are for a local process
    pool or threads (a Dask cluster has its own workers, which import what the tasks need)."""
    target = parse_executor(url)
    if target.kind == PROCESSES:
        return LocalExecutor(workers, preload=preload)
    if target.kind == THREADS:
        return ThreadExecutor(workers)
    assert target.kind == DASK
    # (Imported here: distributed takes a while to import and most runs never use it.)
    try:
        from regionflow.executor.dask import DaskExecutor
    except ImportError as exc:
        raise ConfigError(f"executor {url!r} needs Dask distributed, which is not installed ({exc.name}): "
                          "pip install 'regionflow[dask]'") from None

    return DaskExecutor(target)
