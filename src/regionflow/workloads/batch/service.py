"""The batch workload inside a region: the trigger, the job queue and its runner, and the sweep.

It implements OrchestratorEvents for its orchestrator: ownership comes from the region's routing control,
objects a worker wrote go into the change feed, events become metrics and log lines.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator

from regionflow.errors import FencedOut, ObjectNotFound
from regionflow.ids import job_id_for
from regionflow.replication.feeding import FeedingObjectStore
from regionflow.state.base import JobStatus, StateStore
from regionflow.storage.base import ObjectInfo
from regionflow.workloads.batch.events import Lifecycle
from regionflow.workloads.batch.metrics import CHUNK_EVENT_PREFIX, BatchMetrics, JobRun, NotifyOutcome, RowOutcome
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX, InputMissing, JobInterrupted, Orchestrator

log = logging.getLogger("regionflow.region")


class BatchService:
    def __init__(self, region: str, objects: FeedingObjectStore, state: StateStore, metrics: BatchMetrics,
                 owner: Callable[[], tuple[str, int]]):
        self.region = region
        self.objects = objects
        self.state = state
        self.metrics = metrics
        self._owner = owner
        self.orchestrator: Orchestrator | None = None
        self._queue: queue.Queue[str] = queue.Queue()
        self._queued: set[str] = set()
        self._held: dict[str, int] = {}  # input keys being uploaded (not acknowledged yet)
        self._lock = threading.Lock()

    def attach(self, orchestrator: Orchestrator) -> None:
        """The orchestrator this service drives (built with this service as its events)."""
        self.orchestrator = orchestrator

    @property
    def _orch(self) -> Orchestrator:
        assert self.orchestrator is not None, "BatchService.attach() was not called"
        return self.orchestrator

    # -- OrchestratorEvents --------------------------------------------------------------------------
    def owner(self) -> tuple[str, int]:
        return self._owner()

    def object_written(self, info: ObjectInfo) -> None:
        self.objects.record(info)

    def notified(self, delivered: bool) -> None:
        self.metrics.notifications.labels(NotifyOutcome.SENT if delivered else NotifyOutcome.DUPLICATE).inc()

    def lifecycle(self, name: str, job_id: str) -> None:
        if name == Lifecycle.SPLIT:
            self.metrics.files_split.inc()
        elif name.startswith(CHUNK_EVENT_PREFIX):
            self.metrics.chunk_event(name)
        log.info("%s", name, extra={"job_id": job_id})

    def progress(self, what: str, done: int, total: int) -> None:
        pass  # a region reports progress through job views, not a terminal

    # -- trigger -------------------------------------------------------------------------------------
    def object_created(self, key: str) -> str | None:
        """An object under input/ arrived (uploaded or replicated): create and queue its job if active."""
        if not key.startswith(INPUT_PREFIX):
            return None
        job_id = self._orch.trigger(key)
        if job_id is None:
            self.metrics.files_skipped.inc()
            return None
        self.enqueue(job_id)
        return job_id

    @contextlib.contextmanager
    def holding(self, key: str) -> Iterator[None]:
        """While an upload of key is stored and replicated, the sweep does not start a job for it."""
        with self._lock:
            self._held[key] = self._held.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._held[key] -= 1
                if not self._held[key]:
                    del self._held[key]

    def replicated_object(self, key: str) -> None:
        # ObjectNotFound: archived at the source before it got here; the active region has it in hand.
        with contextlib.suppress(ObjectNotFound):
            self.object_created(key)

    # -- the queue -----------------------------------------------------------------------------------
    def enqueue(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._queued:
                return
            self._queued.add(job_id)
        self._queue.put(job_id)

    def busy(self) -> bool:
        """Whether a job is in hand or queued (a region that lost the control drains this quickly)."""
        with self._lock:
            return bool(self._queued)

    def run_jobs(self, stop: threading.Event) -> None:
        """Run queued jobs one at a time until stop is set (a region runs this on several threads: a job is
        queued once, so each runs on one of them)."""
        while not stop.is_set():
            try:
                job_id = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.run_one(job_id)
            finally:
                with self._lock:
                    self._queued.discard(job_id)

    def run_one(self, job_id: str) -> None:
        m = self.metrics
        m.orchestrator.labels(JobRun.STARTED).inc()
        try:
            job = self._orch.run_job(job_id)
        except FencedOut as exc:
            log.info("stopped work on %s: %s", job_id, exc, extra={"job_id": job_id})
            return
        except InputMissing as exc:
            log.info("waiting for input of %s: %s", job_id, exc, extra={"job_id": job_id})
            return
        except JobInterrupted as exc:
            m.orchestrator.labels(JobRun.INTERRUPTED).inc()
            log.warning("%s; the sweep resumes it", exc, extra={"job_id": job_id})
            return
        except Exception:
            m.orchestrator.labels(JobRun.FAILED).inc()
            log.exception("job %s stopped by an error; the sweep retries it", job_id, extra={"job_id": job_id})
            return
        log.info("job %s", job.status.lower(), extra={"job_id": job_id})
        if job.status == JobStatus.COMPLETED:
            m.orchestrator.labels(JobRun.SUCCEEDED).inc()
            m.files_processed.inc()
            m.rows.labels(RowOutcome.OK).inc(job.rows_ok or 0)
            m.rows.labels(RowOutcome.REJECTED).inc(job.rows_rejected or 0)
        else:
            m.orchestrator.labels(JobRun.FAILED).inc()

    def sweep_once(self) -> None:
        """Resume unfinished work this region owns and start jobs for inputs that have none."""
        active, epoch = self.owner()
        if active != self.region:
            return
        for job in self.state.list_jobs_unfinished():
            if job.owner_region == self.region and job.owner_epoch == epoch:
                self.enqueue(job.job_id)
        for info in self.objects.list(INPUT_PREFIX):
            if not info.etag:
                continue  # written around regionflow and not taken in yet: the store watcher feeds it first
            with self._lock:
                held = info.key in self._held
            if not held and self.state.get_job(job_id_for(info.key, info.version_id)) is None:
                self.object_created(info.key)
