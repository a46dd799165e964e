"""Executor addresses: what regionflow.toml's `executor` and `process --executor` accept, and the clear
one-line errors for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from regionflow.config import load_config
from regionflow.errors import ConfigError
from regionflow.executor import LocalExecutor, ThreadExecutor, open_executor, parse_executor
from regionflow.executor.url import DASK, PROCESSES, THREADS, ExecutorTarget

MINIMAL = """\
primary = "us-east-1"
control = "sqlite:///.regionflow/control.db"

[access_point]
port = 9002

[[regions]]
name = "us-east-1"
port = 9000
objects = "file://.regionflow/us-east-1/objects"
state = "sqlite:///.regionflow/us-east-1/state.db"
EXECUTOR

[[regions]]
name = "us-west-2"
port = 9001
objects = "file://.regionflow/us-west-2/objects"
state = "sqlite:///.regionflow/us-west-2/state.db"
"""


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


def test_a_region_defaults_to_its_process_pool_and_takes_a_dask_address(tmp_path: Path) -> None:
    path = tmp_path / "regionflow.toml"
    path.write_text(MINIMAL.replace("EXECUTOR", ""))
    assert [r.executor for r in load_config(path).regions] == ["processes", "processes"]
    path.write_text(MINIMAL.replace("EXECUTOR", 'executor = " tcp://127.0.0.1:8786 "'))
    assert load_config(path).region("us-east-1").executor == "tcp://127.0.0.1:8786"


@pytest.mark.parametrize(("value", "says"), [
    ('"threads"', "executor 'threads' is for `regionflow process`"),
    ('"dask://local?workers=x"', "workers must be a whole number"),
    ('"yarn://rm:8032"', "expected processes, threads, tcp://HOST:PORT"),
])
def test_a_region_refuses_an_executor_it_cannot_run_on(tmp_path: Path, value: str, says: str) -> None:
    path = tmp_path / "regionflow.toml"
    path.write_text(MINIMAL.replace("EXECUTOR", f"executor = {value}"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "regions.0.executor" in msg and says in msg and "\n" not in msg
