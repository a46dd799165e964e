"""Executor addresses: what regionflow.toml's `executor` and `process --executor` accept, and the clear
one-line errors for everything else (a region's `executor` key: tests/unit/test_config.py)."""

from __future__ import annotations

import pytest

from regionflow.errors import ConfigError
from regionflow.executor import LocalExecutor, ThreadExecutor, open_executor, parse_executor
from regionflow.executor.url import DASK, PROCESSES, THREADS, ExecutorTarget


@pytest.mark.parametrize(("url", "target"), [
    ("processes", ExecutorTarget(PROCESSES)),
    ("threads", ExecutorTarget(THREADS)),
    ("tcp://127.0.0.1:8786", ExecutorTarget(DASK, scheduler="tcp://127.0.0.1:8786")),
    ("tcp://dask-scheduler.internal:8786/", ExecutorTarget(DASK, scheduler="tcp://dask-scheduler.internal:8786")),
    ("tcp://[::1]:8786", ExecutorTarget(DASK, scheduler="tcp://[::1]:8786")),
    ("dask://local", ExecutorTarget(DASK, local_workers=2)),
    ("dask://local?workers=4", ExecutorTarget(DASK, local_workers=4)),
    ("dask://local/?workers=3&threads=2", ExecutorTarget(DASK, local_workers=3, threads_per_worker=2)),
])
def test_accepted_addresses(url: str, target: ExecutorTarget) -> None:
    assert parse_executor(url) == target
    assert parse_executor(url).is_local_cluster == (target.kind == DASK and target.scheduler is None)


@pytest.mark.parametrize(("url", "says"), [
    ("spark://x:7077", "expected processes, threads, tcp://HOST:PORT"),
    ("tcp://127.0.0.1", "expected tcp://HOST:PORT"),
    ("tcp://127.0.0.1:99999", "expected tcp://HOST:PORT"),
    ("tcp://host:80/path", "expected tcp://HOST:PORT"),
    ("dask://remote?workers=2", "dask://local?workers=N"),
    ("dask://local?workers=0", "workers must be a whole number from 1 to 256"),
    ("dask://local?workers=two", "workers must be a whole number"),
    ("dask://local?workers=1&workers=2", "workers must be a whole number"),
    ("dask://local?nodes=2", "unknown option(s) nodes"),
    ("", "expected processes, threads"),
])
def test_refused_addresses_say_what_is_expected(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_executor(url)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_open_executor_picks_the_adapter() -> None:
    processes = open_executor("processes", 3)
    threads = open_executor("threads", 2)
    try:
        assert isinstance(processes, LocalExecutor) and processes.workers == 3
        assert isinstance(threads, ThreadExecutor) and threads.workers == 2
    finally:
        processes.close()
        threads.close()
