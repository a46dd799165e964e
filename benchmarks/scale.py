"""Benchmark: one large file on a Dask cluster of 1, 2 and 4 workers, on the S3 store (SeaweedFS).

Usage: python benchmarks/scale.py [--rows 10000000] [--workers 1 2 4] [--json]

Method. A SeaweedFS (`weed mini`, S3 API) is started on free loopback ports with the same ManagedServer
class `regionflow up` uses; the input is uploaded to it once and the reference table indexed once (not
timed). For each worker count a Dask LocalCluster of that many single-threaded worker processes is
started, and one job is run on an input copied to a fresh key: the orchestrator (split, chunks, merge,
notify, complete) runs in this process, and the chunk tasks run on the cluster, reading their byte range
of the input from S3 and writing their output to S3 themselves. Timed: the whole job (trigger to
COMPLETED) and the chunk phase alone (first chunk handed out to last chunk recorded). The baseline is the
1-worker run in the same process: printed are rows/s and the speed-up against it.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distributed import LocalCluster

from regionflow.executor.dask import DaskExecutor
from regionflow.notify import OutboxNotifier
from regionflow.servers.runner import start_server, stop_server, wait_servers_healthy
from regionflow.servers.seaweedfs import SeaweedFS
from regionflow.state import open_state_store
from regionflow.state.base import JobStatus
from regionflow.storage import open_object_store
from regionflow.workloads.batch.events import FixedOwner
from regionflow.workloads.batch.local import index_reference
from regionflow.workloads.batch.orchestrator import Orchestrator
from regionflow.workloads.batch.pipeline import Pipeline, default_pipeline
from regionflow.workloads.batch.sample import generate

BUCKET = "scale"


@contextmanager
def seaweedfs(base: Path) -> Iterator[tuple[str, dict[str, str | None]]]:
    """A started SeaweedFS; yields the store URL and its credentials, stops it afterwards."""
    ports = SeaweedFS.pick_ports()
    keys: dict[str, str | None] = {"access_key": "scale-" + secrets.token_hex(4), "secret_key": secrets.token_hex(16)}
    server = SeaweedFS("scale-seaweedfs", None, base / "data", master_port=ports["master"],
                       volume_port=ports["volume"], filer_port=ports["filer"], s3_port=ports["s3"],
                       access_key=str(keys["access_key"]), secret_key=str(keys["secret_key"]), bucket=BUCKET)
    run_dir, log_dir = base / "run", base / "logs"
    try:
        wait_servers_healthy([start_server(server, run_dir, log_dir)], timeout=60)
        yield f"s3://{BUCKET}?endpoint={server.endpoint}", keys
    finally:
        stop_server(run_dir, server.name, timeout=30, stop_signal=server.stop_signal)


class PhaseClock:
    """FixedOwner's progress hook: when the chunk phase started and ended."""

    def __init__(self) -> None:
        self.chunks_started: float | None = None
        self.chunks_done: float | None = None

    def __call__(self, what: str, done: int, total: int) -> None:
        if what != "chunks":
            return
        now = time.perf_counter()
        if self.chunks_started is None:
            self.chunks_started = now
        if done == total:
            self.chunks_done = now


def run_once(workers: int, store_url: str, keys: dict[str, str | None], pipeline: Pipeline, reference: str,
             work: Path, rows: int) -> dict:
    objects = open_object_store(store_url, **keys)
    key = f"input/orders-{workers}w.csv"
    objects.copy("input/orders.csv", key)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.WARNING) as cluster:
        executor = DaskExecutor(cluster.scheduler_address)
        executor.warm_up()
        clock = PhaseClock()
        state = open_state_store(f"sqlite:///{work / f'state-{workers}.db'}", "scale", feed=False)
        try:
            orchestrator = Orchestrator(
                objects=objects, store_url=store_url, store_options=keys, state=state, executor=executor,
                notifier=OutboxNotifier(work / "outbox"), pipeline=pipeline, region="scale",
                events=FixedOwner("scale", progress=clock), signing_key=secrets.token_bytes(32),
                link_base="http://127.0.0.1:8700", cache_dir=work / "cache", reference_index=reference)
            started = time.perf_counter()
            job_id = orchestrator.trigger(key)
            assert job_id is not None
            job = orchestrator.run_job(job_id)
            seconds = time.perf_counter() - started
            chunks = len(state.list_chunks(job_id))
        finally:
            state.close()
            executor.close()
    if job.status != JobStatus.COMPLETED or job.rows_in != rows:
        sys.exit(f"{workers} worker(s): job ended {job.status} ({job.reason}), rows_in {job.rows_in}")
    assert clock.chunks_started is not None and clock.chunks_done is not None
    chunk_s = clock.chunks_done - clock.chunks_started
    return {"workers": workers, "chunks": chunks, "seconds": round(seconds, 2),
            "rows_per_second": round(rows / seconds), "chunk_phase_seconds": round(chunk_s, 2),
            "chunk_rows_per_second": round(rows / chunk_s),
            "rows_ok": job.rows_ok, "rows_rejected": job.rows_rejected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rf-scale-") as tmp:
        work = Path(tmp)
        data = generate(args.rows, work / "data", seed=7)
        pipeline = default_pipeline()
        with seaweedfs(work / "seaweedfs") as (store_url, keys):
            with data.orders.open("rb") as fh:
                open_object_store(store_url, **keys).put("input/orders.csv", fh, content_type="text/csv")
            reference = index_reference(work, pipeline, data.financial, kept=False)
            assert reference is not None
            results = [run_once(n, store_url, keys, pipeline, reference, work, args.rows) for n in args.workers]
    base = results[0]
    for r in results:
        r["speedup"] = round(base["seconds"] / r["seconds"], 2)
        r["chunk_speedup"] = round(base["chunk_phase_seconds"] / r["chunk_phase_seconds"], 2)
    if args.json:
        print(json.dumps({"rows": args.rows, "runs": results}, indent=2))
        return
    print(f"{args.rows:,} rows on the S3 store (SeaweedFS), Dask workers of 1 thread each; "
          f"speed-up against {base['workers']} worker(s) in this run")
    print(f"{'workers':>7} {'chunks':>6} {'job s':>7} {'rows/s':>10} {'x':>5} {'chunk s':>8} "
          f"{'chunk rows/s':>12} {'x':>5}")
    for r in results:
        print(f"{r['workers']:>7} {r['chunks']:>6} {r['seconds']:>7.2f} {r['rows_per_second']:>10,} "
              f"{r['speedup']:>5.2f} {r['chunk_phase_seconds']:>8.2f} {r['chunk_rows_per_second']:>12,} "
              f"{r['chunk_speedup']:>5.2f}")


if __name__ == "__main__":
    main()
