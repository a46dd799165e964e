"""The orchestrator: drives a job's persisted state machine, one idempotent step at a time.

INITIALIZED -> SPLIT -> PROCESSING -> MERGED -> NOTIFIED -> COMPLETED (or FAILED, with a reason).
Chunks are byte ranges of the input, recorded at split; workers read their range from the input itself
and write one output each under work/, which the merge composes into the job's output. A job of one
chunk has the chunk write the job's output itself (header and all), so its merge copies nothing.
Every step may be cut short by a crash and run again: chunk outputs are deterministic,
chunk completion is recorded once per chunk, and the notification is recorded before it is sent.
Before each step the current owner is re-read; a region that no longer owns the job stops (DESIGN §3).
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from regionflow.crashpoints import crash_point
from regionflow.errors import FencedOut, FileRefused, ObjectNotFound, RegionflowError
from regionflow.executor.base import Executor
from regionflow.ids import job_id_for
from regionflow.notify.base import Notifier, build_message
from regionflow.replication.replicator import HeldRecipe
from regionflow.state.base import (
    TERMINAL_STATUSES,
    ChunkRecord,
    ChunkStatus,
    JobRecord,
    JobStatus,
    NotificationRecord,
    RejectRecord,
    StateStore,
)
from regionflow.storage import ObjectStore
from regionflow.storage.presign import presign_url
from regionflow.workloads.batch.chunk import ChunkPlan
from regionflow.workloads.batch.events import Lifecycle, OrchestratorEvents
from regionflow.workloads.batch.pipeline import Pipeline
from regionflow.workloads.batch.reference import index_exists, index_reference_table
from regionflow.workloads.batch.split import ChunkCut, ChunkRange, auto_chunk_bytes, read_header, split_stream
from regionflow.workloads.batch.worker import ChunkResult, ChunkTask, merged_metadata, run_chunk_task

log = logging.getLogger("regionflow.orchestrator")

INPUT_PREFIX = "input/"
OUTPUT_PREFIX = "output/completed/"
ARCHIVE_PREFIX = "archive/"
WORK_PREFIX = "work/"
_LAYOUTS_KEPT = 256



def job_name(job: JobRecord) -> str:
    """The input's name below input/ (what its output and archive copy are called)."""
    key = job.input_key
    return key[len(INPUT_PREFIX):] if key.startswith(INPUT_PREFIX) else key.rsplit("/", 1)[-1]


def archived_input(key: str) -> str | None:
    """The input key an archive copy's key was made from (archive/<version>/<name> of input/<name>), else
    None: the bytes a region that replicated the input may hold already."""
    if not key.startswith(ARCHIVE_PREFIX):
        return None
    _, sep, name = key[len(ARCHIVE_PREFIX):].partition("/")
    return f"{INPUT_PREFIX}{name}" if sep and name else None


def output_head(pipeline: Pipeline) -> bytes:
    """The header line every merged output starts with."""
    header = io.StringIO()
    csv.writer(header, delimiter=pipeline.csv.delimiter, quotechar=pipeline.csv.quote,
               lineterminator="\n").writerow(pipeline.output_header)
    return header.getvalue().encode("utf-8")


def held_bytes(pipeline: Pipeline, key: str, metadata: Mapping[str, str]) -> HeldRecipe | None:
    """How a region that replicated a job's objects can make the object at key itself (Replicator.held_bytes):
    an archive copy from the input, a merged output from its header and the job's chunk outputs (its
    metadata names the job and the number of chunks). The result is used only when its sha256 is the
    object's."""
    source = archived_input(key)
    if source is not None:
        return HeldRecipe(b"", (source,))
    job, chunks = metadata.get("job"), metadata.get("chunks", "")
    if not key.startswith(OUTPUT_PREFIX) or not job or not chunks.isdigit():
        return None
    return HeldRecipe(output_head(pipeline), tuple(chunk_output_key(job, i) for i in range(int(chunks))))


def chunk_output_key(job_id: str, idx: int) -> str:
    """Where a chunk's output is written."""
    return f"{WORK_PREFIX}{job_id}/out/{idx:06d}.csv"


def input_source(objects: ObjectStore, job: JobRecord) -> str | None:
    """Where objects holds the job's input bytes: the input itself, or (once the job was completed
    somewhere and its input archived) the archive copy; None when it has neither."""
    info = objects.head(job.input_key)
    if info is not None and info.version_id == job.version_id:
        return job.input_key
    archived = objects.head(f"{ARCHIVE_PREFIX}{job.version_id}/{job_name(job)}")
    if archived is not None and archived.etag == job.input_etag:
        return archived.key
    return None


def reference_cache_base(cache_dir: Path, table: str, revision: int | str, key: str) -> Path:
    """Where the index of a reference table's revision is cached (the name carries the index format).
    revision: the table's revision in the state store, or the digest of the file a run indexed itself."""
    return cache_dir / f"ref-{table}-r{revision}-{key}-arrow2"


class InputMissing(RegionflowError):
    """The job's input object (at its version) is not in this region's store (yet)."""


class JobInterrupted(RegionflowError):
    """An outage stopped the job where it was; it resumes when the region retries it."""


def _infrastructure(exc: BaseException) -> bool:
    """Errors of the machinery (unreachable or faulted stores, lost workers), not of the chunk's data."""
    return isinstance(exc, OSError | BrokenProcessPool | TimeoutError | RegionflowError)


@dataclass
class Orchestrator:
    objects: ObjectStore
    store_url: str  # how workers open the same object store
    state: StateStore
    executor: Executor
    notifier: Notifier
    pipeline: Pipeline
    region: str
    events: OrchestratorEvents
    signing_key: bytes
    link_base: str
    cache_dir: Path
    chunk_rows: int | None = None
    max_chunk_attempts: int = 3
    # open_object_store's keyword arguments besides the URL (an S3 store's credentials), for the workers.
    store_options: dict[str, str | None] = field(default_factory=dict)
    # Workers honour storage faults injected into the region (chaos experiments) through this file.
    fault_file: str | None = None
    # The enrichment index a caller built from the file it was given (`regionflow process`); None: the
    # state store's table, indexed once per revision.
    reference_index: str | None = None
    skipped: int = field(default=0, init=False)
    _layouts: dict[str, dict] = field(default_factory=dict, init=False, repr=False)
    _layouts_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # -- trigger ---------------------------------------------------------------------------------
    def trigger(self, key: str) -> str | None:
        """An object was created under input/: create its job if this region is active.

        Returns the job id, or None when this region is not active (the event is counted as skipped).
        A repeated event for the same (key, version) finds the job already there and changes nothing.
        """
        active, epoch = self.events.owner()
        if active != self.region:
            self.skipped += 1
            return None
        info = self.objects.head(key)
        if info is None:
            raise ObjectNotFound(f"no object at {key!r}")
        # An older version can reappear after a newer one was processed and archived (replicated late
        # from a region that stored it but could not answer, so the client sent it again): it is
        # superseded, and processing it would deliver the file twice.
        newer = [j.job_id for j in self.state.list_jobs(input_key=key) if j.version_id > info.version_id]
        if newer:
            log.info("%s version %s is superseded by the job %s; not processed", key, info.version_id, newer[0])
            return None
        now = time.time()
        job = JobRecord(
            job_id=job_id_for(key, info.version_id), input_key=key, version_id=info.version_id,
            input_etag=info.etag, pipeline=self.pipeline.name, owner_region=self.region, owner_epoch=epoch,
            created_at=now, updated_at=now,
        )
        self.state.create_job(job)
        return job.job_id

    # -- driving -----------------------------------------------------------------------------------
    def run_job(self, job_id: str, *, until: JobStatus | None = None) -> JobRecord:
        """Drive the job until it is COMPLETED or FAILED (or has reached `until`: a caller that has more to
        prepare before the chunks run splits first). Raises FencedOut if another owner took it."""
        steps = {
            JobStatus.INITIALIZED: self._split,
            JobStatus.SPLIT: self._process,
            JobStatus.PROCESSING: self._process,
            JobStatus.MERGED: self._notify,
            JobStatus.NOTIFIED: self._complete,
        }
        job = self._job(job_id)
        while True:
            if job.status in TERMINAL_STATUSES or job.status == until:
                return job
            self._fence(job)
            # A step that moved the job hands back the row it wrote; one that did not, ends by reading it.
            job = steps[JobStatus(job.status)](job) or self._job(job_id)

    def _emit(self, name: str, job_id: str) -> None:
        self.events.lifecycle(name, job_id)

    def _job(self, job_id: str) -> JobRecord:
        job = self.state.get_job(job_id)
        if job is None:
            raise RegionflowError(f"no job {job_id}")
        return job

    def _fence(self, job: JobRecord) -> None:
        active, epoch = self.events.owner()
        if active != self.region or epoch != job.owner_epoch:
            raise FencedOut(
                f"job {job.job_id} is owned under epoch {job.owner_epoch}; control says {active} at epoch "
                f"{epoch}, so {self.region} stops working on it"
            )

    def _work(self, job: JobRecord) -> str:
        return f"{WORK_PREFIX}{job.job_id}/"

    def _name(self, job: JobRecord) -> str:
        return job_name(job)

    # -- split -------------------------------------------------------------------------------------
    def _split(self, job: JobRecord) -> JobRecord | None:
        # The archive copy serves as well: state and objects replicate apart, so a region taking over can
        # hold a job still INITIALIZED whose input the old owner already archived (and deleted).
        source = self.input_source(job)
        if source is None:
            raise InputMissing(f"input {job.input_key} version {job.version_id} is not in {self.region}")
        info = self.objects.head(source)
        cut = self._chunk_cut(info.size if info is not None else 0)
        emitted = 0

        def emit(chunk: ChunkRange) -> None:
            nonlocal emitted
            emitted += chunk.rows
            self.events.progress("split", emitted, 0)

        try:
            with self.objects.open(source) as stream:
                result = split_stream(stream, self.pipeline, cut, emit)
        except FileRefused as exc:
            self._discard_work(job)
            return self.state.transition_job(job.job_id, epoch=job.owner_epoch, from_status=JobStatus.INITIALIZED,
                                             to_status=JobStatus.FAILED, reason=str(exc))
        crash_point("split:chunks_written")
        self._remember_layout(job.job_id, {"header": result.header, "columns": result.columns})
        chunks = [
            ChunkRecord(job_id=job.job_id, idx=c.idx, object_key=job.input_key, first_row=c.first_row, rows=c.rows,
                        byte_offset=c.offset, byte_length=c.length)
            for c in result.chunks
        ]
        # The chunk list and the step in one transaction (one write here, one apply in the standby).
        split = self.state.record_split(job.job_id, chunks, epoch=job.owner_epoch, rows_in=result.rows_in)
        crash_point("split:chunks_recorded")
        self._emit(Lifecycle.SPLIT, job.job_id)
        crash_point("split:done")
        return split

    def _chunk_cut(self, size: int) -> ChunkCut:
        """Rows per chunk when the run or the pipeline names them, else a byte size chosen from the input."""
        rows = self.chunk_rows or self.pipeline.chunk_rows
        if rows:
            return ChunkCut(rows=rows)
        return ChunkCut(bytes=auto_chunk_bytes(size, self.executor.workers))

    def _discard_work(self, job: JobRecord) -> None:
        for info in list(self.objects.list(self._work(job))):
            self.objects.delete(info.key)

    # -- process + merge ---------------------------------------------------------------------------
    def _process(self, job: JobRecord) -> JobRecord | None:
        if job.status == JobStatus.SPLIT:
            job = self.state.transition_job(job.job_id, epoch=job.owner_epoch, from_status=JobStatus.SPLIT,
                                            to_status=JobStatus.PROCESSING)
        with self._layouts_lock:
            layout = self._layouts.pop(job.job_id, None)
        chunks = self.state.list_chunks(job.job_id)
        todo = [c for c in chunks if not self._chunk_output_present(c)]
        done = len(chunks) - len(todo)
        self.events.progress("chunks", done, len(chunks))
        if todo:
            source = self.input_source(job)
            if source is None:
                raise InputMissing(f"chunks {[c.idx for c in todo][:5]} of {job.job_id} need its input "
                                   f"{job.input_key}, which is not in {self.region}")
            layout = layout or self._read_layout(source)
            plan = ChunkPlan(self.pipeline.to_dict(), dict(layout["columns"]), len(layout["header"]))
            reference = self._reference_path()
            while todo:
                self._fence(job)
                todo, done = self._run_chunks(job, todo, plan, reference, source, done, len(chunks))
        crash_point("process:all_chunks_done")
        return self._merge(job, self.state.list_chunks(job.job_id))

    def input_source(self, job: JobRecord) -> str | None:
        return input_source(self.objects, job)

    def _remember_layout(self, job_id: str, layout: dict) -> None:
        # The split hands the input's header and column mapping to the step after it, which usually runs
        # at once on the same thread. Kept in memory, not stored: the chunks cannot run without the input,
        # and the input gives them again (_read_layout) to a process or region that resumes the job.
        with self._layouts_lock:
            self._layouts[job_id] = layout
            while len(self._layouts) > _LAYOUTS_KEPT:  # jobs fenced out between their split and their chunks
                self._layouts.pop(next(iter(self._layouts)))

    def _read_layout(self, source: str) -> dict:
        """The header and column mapping of the input at source (its first block)."""
        with self.objects.open(source) as stream:
            header, columns = read_header(stream, self.pipeline)
        return {"header": header, "columns": columns}

    def _chunk_output_present(self, chunk: ChunkRecord) -> bool:
        if chunk.status != ChunkStatus.DONE or not chunk.out_key:
            return False
        info = self.objects.head(chunk.out_key)
        return info is not None and info.etag == chunk.out_etag

    def _run_chunks(self, job: JobRecord, todo: list[ChunkRecord], plan: ChunkPlan, reference: str | None,
                    source: str, done: int, total: int) -> tuple[list[ChunkRecord], int]:
        by_idx = {c.idx: c for c in todo}
        attempts: dict[int, int] = {}
        # A job of one chunk: the chunk writes the job's output itself, and the merge copies nothing.
        only = total == 1

        def dispatched() -> Iterator[ChunkTask]:
            # An attempt is counted as its chunk is handed to a worker, not before: after a crash only the
            # chunks that were in flight (at most 2 x workers) count as processed again.
            for c in todo:
                attempts[c.idx] = self.state.start_chunk(job.job_id, c.idx, epoch=job.owner_epoch)
                self._emit(Lifecycle.CHUNK_STARTED, job.job_id)
                yield ChunkTask(job_id=job.job_id, idx=c.idx, store_url=self.store_url,
                                store_options=self.store_options, source_key=source, source_etag=job.input_etag,
                                byte_offset=c.byte_offset or 0, byte_length=c.byte_length or 0,
                                out_key=self._output_key(job) if only else chunk_output_key(job.job_id, c.idx),
                                first_row=c.first_row, plan=plan, reference_path=reference, fault_file=self.fault_file,
                                final_head=output_head(self.pipeline) if only else None)

        retry: list[ChunkRecord] = []
        unavailable: BaseException | None = None
        for task, result in self.executor.map_unordered(run_chunk_task, dispatched()):
            if isinstance(result, BaseException):
                self._emit(Lifecycle.CHUNK_FAILED, job.job_id)
                log.warning("chunk %s of %s failed (attempt %s): %r", task.idx, job.job_id, attempts[task.idx],
                            result, extra={"job_id": job.job_id})
                if _infrastructure(result):
                    # An outage (store, state, a lost worker) is not the chunk's fault: it never fails the
                    # job; after a few quick tries the job waits where it is and the region retries it later.
                    if attempts[task.idx] >= self.max_chunk_attempts:
                        unavailable = result
                    retry.append(by_idx[task.idx])
                    continue
                if attempts[task.idx] >= self.max_chunk_attempts:
                    self._fail(job, f"chunk {task.idx} failed {attempts[task.idx]} times: {result!r}")
                    raise RegionflowError(f"job {job.job_id} failed: chunk {task.idx}: {result!r}")
                retry.append(by_idx[task.idx])
                continue
            self._record_chunk(job, task, result)
            self._emit(Lifecycle.CHUNK_SUCCEEDED, job.job_id)
            done += 1
            self._fence(job)  # cheap (the control is cached ~1 s); a region that lost the job stops here
            self.events.progress("chunks", done, total)
        if unavailable is not None:
            raise JobInterrupted(f"job {job.job_id} paused at {len(retry)} chunk(s): {unavailable}")
        return sorted(retry, key=lambda c: c.idx), done

    def _record_chunk(self, job: JobRecord, task: ChunkTask, result: ChunkResult) -> None:
        self.events.object_written(result.out_info)
        rejects = [RejectRecord(job_id=job.job_id, row_no=row, chunk_idx=task.idx, raw=raw, reason=reason)
                   for row, raw, reason in result.rejects]
        self.state.complete_chunk(job.job_id, task.idx, epoch=job.owner_epoch, out_key=task.out_key,
                                  out_etag=result.out_info.etag, rows_ok=result.rows_ok,
                                  rows_rejected=len(rejects), rejects=rejects)
        crash_point(f"chunk_recorded:{task.idx}")

    def _fail(self, job: JobRecord, reason: str) -> JobRecord:
        current = self._job(job.job_id)
        return self.state.transition_job(job.job_id, epoch=job.owner_epoch, from_status=current.status,
                                         to_status=JobStatus.FAILED, reason=reason)

    def _reference_path(self) -> str | None:
        """The enrichment table indexed for lookups, cached on disk per table revision."""
        enrichment = self.pipeline.enrichment
        if enrichment is None:
            return None
        if self.reference_index is not None:
            return self.reference_index
        info = self.state.reference_info(enrichment.table)
        if info is None:
            raise RegionflowError(
                f"reference table {enrichment.table!r} is not loaded in {self.region} "
                "(run `regionflow reference load`)"
            )
        base = reference_cache_base(self.cache_dir, enrichment.table, info.revision, enrichment.reference_key)
        if not index_exists(base):
            index_reference_table(self.state, enrichment.table, enrichment.reference_key, enrichment.fields, base)
        return str(base)

    def _merge(self, job: JobRecord, chunks: list[ChunkRecord]) -> JobRecord:
        def parts() -> Iterator[str]:
            for i, chunk in enumerate(chunks):
                if i == len(chunks) // 2:
                    crash_point("merge:midway")
                yield chunk.out_key or ""

        rows_ok = sum(c.rows_ok or 0 for c in chunks)
        rows_rejected = sum(c.rows_rejected or 0 for c in chunks)
        output_key = self._output_key(job)
        # The only chunk of a job wrote the output itself (checked present, at its etag, by _process).
        written = chunks[0] if len(chunks) == 1 and chunks[0].out_key == output_key else None
        if job.rows_in != rows_ok + rows_rejected:
            # Never expected: it would mean a row was lost or counted twice. Refuse to publish.
            if written is not None:
                self.objects.delete(output_key)
            return self._fail(job, f"row count mismatch: in {job.rows_in} != ok {rows_ok} + rejected {rows_rejected}")
        self._fence(job)
        if written is not None:
            etag = written.out_etag
        else:
            # Composed by the store (the directory store copies in the kernel): the chunk outputs are not read
            # back into this process. The metadata names the parts (chunk_output_key): a region holding the
            # chunk outputs makes the same bytes itself instead of fetching them (held_bytes).
            etag = self.objects.compose(output_key, parts(), head=output_head(self.pipeline), content_type="text/csv",
                                        metadata=merged_metadata(job.job_id, rows_ok, len(chunks))).etag
        crash_point("merge:written")
        return self.state.transition_job(job.job_id, epoch=job.owner_epoch, from_status=JobStatus.PROCESSING,
                                         to_status=JobStatus.MERGED, output_key=output_key, output_etag=etag,
                                         rows_ok=rows_ok, rows_rejected=rows_rejected)

    def _output_key(self, job: JobRecord) -> str:
        return f"{OUTPUT_PREFIX}{self._name(job)}"

    # -- notify + complete -------------------------------------------------------------------------
    def _notify(self, job: JobRecord) -> JobRecord:
        self._fence(job)
        spec = self.pipeline.notify
        link = presign_url(self.link_base, job.output_key or "", self.signing_key, spec.link_expiry_seconds)
        record = NotificationRecord(
            job_id=job.job_id, recipients=spec.recipients,
            subject=f"regionflow: {self._name(job)} processed", link=link, rows_ok=job.rows_ok or 0,
            rows_rejected=job.rows_rejected or 0, region=self.region, channel=self.notifier.channel,
            created_at=time.time(),
        )
        # Inserted: the record is the one just written. Not inserted: an earlier run's (a resumed step, the
        # old owner's) came first, and its link and status are the ones that count.
        existing = record if self.state.record_notification(record) else self.state.get_notification(job.job_id)
        assert existing is not None
        if existing.status != "sent":
            message = build_message(
                job_id=job.job_id, name=self._name(job), sender=spec.sender, recipients=existing.recipients,
                link=existing.link, expires_in=spec.link_expiry_seconds, rows_in=job.rows_in or 0,
                rows_ok=existing.rows_ok, rows_rejected=existing.rows_rejected, region=self.region,
            )
            crash_point("notify:before_send")
            delivered = self.notifier.send(message)
            if not delivered:
                log.info("notification of %s was already delivered (dedupe key)", job.job_id,
                         extra={"job_id": job.job_id})
            self.events.notified(delivered)
            crash_point("notify:sent")
        # The mark and the step in one transaction (one write here, one apply in the standby); a crash before
        # it leaves the notification unmarked, and the resumed step resends it under its dedupe key.
        return self.state.mark_notified(job.job_id, epoch=job.owner_epoch)

    def _complete(self, job: JobRecord) -> JobRecord:
        archive_key = f"{ARCHIVE_PREFIX}{job.version_id}/{self._name(job)}"
        info = self.objects.head(job.input_key)
        if info is not None and info.version_id == job.version_id:
            archived = self.objects.head(archive_key)
            if archived is None or archived.etag != job.input_etag:
                self.objects.copy(job.input_key, archive_key)
            crash_point("complete:archived")
            self.objects.delete(job.input_key)
        return self.state.transition_job(job.job_id, epoch=job.owner_epoch, from_status=JobStatus.NOTIFIED,
                                         to_status=JobStatus.COMPLETED, completing_region=self.region)
