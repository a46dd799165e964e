"""A real Dask distributed cluster for tests: `dask scheduler` and `dask worker` processes on loopback
ports, started from the venv (so they import regionflow and, with tests/ on their path, the test task
functions), each in its own process group, and all stopped by pid when the test ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distributed import Client

from regionflow.polling import poll_until
from regionflow.servers.ports import free_ports

BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent
START_TIMEOUT = 60.0  # a scheduler and workers start in about a second; this bounds a loaded machine


class DaskCluster:
    def __init__(self, root: Path, workers: int = 2, env: dict[str, str] | None = None):
        self.root = root
        self.port = free_ports(1)[0]
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.workers_wanted = workers
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
                    **(env or {})}
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        root.mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("ab")
        return subprocess.Popen([str(BIN / "dask"), *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                env={**self.env, **(env or {})}, start_new_session=True)

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                                   "--dashboard-address", "127.0.0.1:0", "--no-show"])

    def start_worker(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        n = len(self.workers)
        proc = self._spawn(f"worker-{n}", ["worker", self.address, "--nworkers", "1", "--nthreads", "1",
                                           "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{n}"], env)
        self.workers.append(proc)
        return proc

    def start(self) -> DaskCluster:
        self.start_scheduler()
        for _ in range(self.workers_wanted):
            self.start_worker()
        self.wait_workers(self.workers_wanted)
        return self

    def client(self) -> Client:
        return Client(self.address, timeout=START_TIMEOUT, set_as_default=False)

    def wait_workers(self, n: int) -> None:
        with self.client() as c:
            c.wait_for_workers(n, timeout=START_TIMEOUT)

    def on_scheduler(self, fn: Any) -> Any:
        """fn(dask_scheduler) run in the scheduler process."""
        with self.client() as c:
            return c.run_on_scheduler(fn)

    def task_counts(self, prefix: str) -> dict[str, int]:
        """How many of the tasks named prefix-... the scheduler saw pass through each state."""
        def counts(dask_scheduler: Any) -> dict[str, int]:
            tp = dask_scheduler.task_prefixes.get(prefix)
            return dict(tp.state_counts) if tp is not None else {}

        return self.on_scheduler(counts)

    def processing_on(self, worker_name: str) -> int:
        """Tasks the scheduler has running on the worker named worker_name now."""
        def count(dask_scheduler: Any) -> int:
            return sum(len(ws.processing) for ws in dask_scheduler.workers.values() if ws.name == worker_name)

        return self.on_scheduler(count)

    @staticmethod
    def kill(proc: subprocess.Popen | None) -> None:
        """SIGKILL a process and everything it started (a worker's nanny and its worker process)."""
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            self.kill(proc)
        self.workers = []
        self.scheduler = None


@contextlib.contextmanager
def dask_cluster(root: Path, workers: int = 2, env: dict[str, str] | None = None) -> Iterator[DaskCluster]:
    """A started scheduler with `workers` single-threaded workers, stopped afterwards whatever happened."""
    cluster = DaskCluster(root, workers, env)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def wait_for(predicate: Any, timeout: float = START_TIMEOUT, what: str = "condition") -> Any:
    return poll_until(predicate, timeout=timeout, interval=0.05, what=what)
