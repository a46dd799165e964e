"""Running the whole engine in-process, one region, no servers: what `regionflow process` does."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from regionflow.errors import RegionflowError
from regionflow.executor import open_executor, parse_executor
from regionflow.notify import OutboxNotifier, open_notifier
from regionflow.state import open_state_store
from regionflow.state.base import JobRecord, JobStatus
from regionflow.storage.file import FileObjectStore
from regionflow.workloads.batch.events import FixedOwner, ProgressHook
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX, Orchestrator, reference_cache_base
from regionflow.workloads.batch.pipeline import Pipeline
from regionflow.workloads.batch.reference import index_exists, index_reference_file

LOCAL_REGION = "local"
LOCAL_LINK_BASE = "http://127.0.0.1:8700"


@dataclass
class LocalRunResult:
    job: JobRecord
    chunks: int
    seconds: float
    workdir: Path
    output: Path | None
    rejects: Path | None
    kept: bool = False  # the embedded store stays in workdir (--state-dir)

    @property
    def rows_per_second(self) -> float:
        return (self.job.rows_in or 0) / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        j = self.job
        return {
            "job_id": j.job_id, "status": j.status, "reason": j.reason, "rows_in": j.rows_in,
            "rows_ok": j.rows_ok, "rows_rejected": j.rows_rejected, "chunks": self.chunks,
            "seconds": round(self.seconds, 3), "rows_per_second": round(self.rows_per_second, 1),
            "output": str(self.output) if self.output else None,
            "rejects": str(self.rejects) if self.rejects else None,
            "state_dir": str(self.workdir) if self.kept else None,
        }


@contextmanager
def _workdir(state_dir: Path | None, beside: Path) -> Iterator[Path]:
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        yield state_dir
        return
    # Beside the output, so that the finished output can be linked there instead of copied.
    beside.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".regionflow-process-", dir=beside))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _signing_key(workdir: Path) -> bytes:
    path = workdir / "signing.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def process_file(
    input_path: Path,
    reference_path: Path | None,
    out_path: Path,
    *,
    pipeline: Pipeline,
    rejects_path: Path | None = None,
    chunk_rows: int | None = None,
    workers: int = 2,
    executor: str = "threads",
    state_dir: Path | None = None,
    notifier_url: str | None = None,
    progress: ProgressHook | None = None,
) -> LocalRunResult:
    """Process one file end to end on an embedded store and copy the output (and rejects) out.

    With state_dir the store persists there, and running the same command again resumes the same
    job where it stopped (the input is identified by its content). executor: "threads" (the default:
    no interpreters to start), "processes" (each chunk isolated in a worker process), or a Dask cluster
    (tcp://HOST:PORT of a running scheduler, dask://local?workers=N to start one for the run); its
    workers must share this machine, since the run's store and reference index are local files.
    """
    parse_executor(executor)  # a bad address is refused before anything is written
    if not input_path.is_file():
        raise RegionflowError(f"{input_path}: no such file")
    if pipeline.enrichment is not None and reference_path is None:
        raise RegionflowError(f"the pipeline enriches from {pipeline.enrichment.table!r}: pass --reference")
    started = time.perf_counter()
    with _workdir(state_dir, out_path.parent) as workdir:
        bucket = workdir / "bucket"
        objects = FileObjectStore(bucket)
        state = open_state_store(f"sqlite:///{workdir / 'state.db'}", LOCAL_REGION, feed=False)
        pool = open_executor(executor, workers, preload=("regionflow.workloads.batch.worker",))
        pool.warm_up()
        background = ThreadPoolExecutor(1, thread_name_prefix="reference")
        try:
            # The reference table is indexed while the input is stored and split (both mostly I/O and
            # polars, which let go of the GIL); the chunks start once both are done.
            reference_indexed = background.submit(index_reference, workdir, pipeline, reference_path,
                                                  kept=state_dir is not None)
            key = f"{INPUT_PREFIX}{input_path.name}"
            orchestrator = Orchestrator(
                objects=objects, store_url=f"file://{bucket}", state=state, executor=pool,
                notifier=open_notifier(notifier_url) if notifier_url else OutboxNotifier(workdir / "outbox"),
                pipeline=pipeline, region=LOCAL_REGION, events=FixedOwner(LOCAL_REGION, progress=progress),
                signing_key=_signing_key(workdir), link_base=LOCAL_LINK_BASE, cache_dir=workdir / "cache",
                chunk_rows=chunk_rows,
            )
            # The same content under the same name is the same job: resume it (or report it) rather than
            # start over, even after its input was archived.
            # (A fresh store has no earlier job: the input's hash is then left to the put.)
            input_digest = _sha256_file(input_path) if state_dir is not None else None
            earlier = next((j for j in state.list_jobs() if j.input_key == key and j.input_etag == input_digest
                            and j.status != JobStatus.FAILED), None) if input_digest is not None else None
            if earlier is not None:
                job_id = earlier.job_id
            else:
                existing = objects.head(key) if input_digest is not None else None
                if existing is None or existing.etag != input_digest:
                    with input_path.open("rb") as fh:
                        objects.put(key, fh, content_type="text/csv")
                triggered = orchestrator.trigger(key)
                assert triggered is not None  # the local region is always active
                job_id = triggered
                orchestrator.run_job(job_id, until=JobStatus.SPLIT)  # (the split needs no reference)
            orchestrator.reference_index = reference_indexed.result()
            job = orchestrator.run_job(job_id)
            chunks = len(state.list_chunks(job_id))
            output = rejects = None
            if job.status == JobStatus.COMPLETED:
                output = out_path
                _copy_out(objects, job.output_key or "", out_path, link=state_dir is None)
                if rejects_path is not None:
                    rejects = rejects_path
                    write_rejects_csv(state, job_id, rejects_path)
            return LocalRunResult(job=job, chunks=chunks, seconds=time.perf_counter() - started,
                                  workdir=workdir, output=output, rejects=rejects,
                                  kept=state_dir is not None)
        finally:
            background.shutdown(wait=True)
            pool.close()
            state.close()


def index_reference(workdir: Path, pipeline: Pipeline, reference_path: Path | None, *, kept: bool) -> str | None:
    """Index the enrichment table from the file given; the index's base path.

    The run's reference is the file on its command line, so it is not loaded into the state store (where
    a region keeps its tables to replicate them): indexing it is all the chunks need. A kept store
    (--state-dir) names the index by the file's content, so a rerun with the same file reuses it.
    """
    enrichment = pipeline.enrichment
    if enrichment is None or reference_path is None:
        return None
    version = _sha256_file(reference_path)[:16] if kept else "run"
    base = reference_cache_base(workdir / "cache", enrichment.table, version, enrichment.reference_key)
    if not index_exists(base):
        index_reference_file(reference_path, enrichment.reference_key, enrichment.fields, base)
    return str(base)


def _copy_out(objects: FileObjectStore, key: str, dest: Path, *, link: bool) -> None:
    """Put the object's bytes at dest atomically: a hard link to the object's file when the store is about
    to be deleted (nothing can change the object after that), else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    if link:
        try:
            os.link(objects.data_path(key), tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # as a copy would be made (the store keeps its files private)
            os.replace(tmp, dest)
            return
        except OSError:
            pass  # another file system, or one without links: copy
    with objects.open(key) as src, tmp.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, dest)


def write_rejects_csv(state, job_id: str, dest: Path, page: int = 50_000) -> int:  # noqa: ANN001
    """Write the job's rejects as CSV (row,reason,raw); returns how many."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with dest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["row", "reason", "raw"])
        while True:
            batch = state.list_rejects(job_id, limit=page, offset=count)
            for r in batch:
                writer.writerow([r.row_no, r.reason, r.raw])
            count += len(batch)
            if len(batch) < page:
                return count
