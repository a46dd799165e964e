"""The runtime of one region process: trigger, job runner, replicators, and the periodic sweep.

The gateway (HTTP) calls into this; nothing here knows about HTTP.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from pathlib import Path

from regionflow.chaos.faults import FaultRegistry, guard_control, guard_objects, guard_state
from regionflow.config import Config, load_secrets
from regionflow.control import CachedControl, open_control
from regionflow.errors import FencedOut, ObjectNotFound, RegionflowError
from regionflow.executor import LocalExecutor
from regionflow.ids import job_id_for
from regionflow.notify import OutboxNotifier, open_notifier
from regionflow.region.metrics import RegionMetrics
from regionflow.replication.feeding import FeedingObjectStore
from regionflow.replication.replicator import Replicator
from regionflow.replication.source import HttpFeedSource
from regionflow.state import open_state_store
from regionflow.state.base import JobStatus
from regionflow.storage import open_object_store
from regionflow.switch.runner import SwitchRunner
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX, InputMissing, JobInterrupted, Orchestrator

log = logging.getLogger("regionflow.region")

SWEEP_INTERVAL = 2.0


class Region:
    def __init__(self, config: Config, name: str):
        self.config = config
        self.name = name
        rc = config.region(name)
        self.secrets = load_secrets(config)
        self.metrics = RegionMetrics()
        data_dir = Path(config.data_dir) / name
        self.faults = FaultRegistry(data_dir / "faults.json")
        self.faults.clear()  # faults do not outlive the process they were injected into
        self.plain_objects = guard_objects(open_object_store(rc.objects), self.faults)
        self.state = guard_state(open_state_store(rc.state, name), self.faults)
        self.objects = FeedingObjectStore(self.plain_objects, self.state)
        self.control = CachedControl(guard_control(open_control(config.control), self.faults), ttl=1.0)
        self.control.initialize(config.primary)
        self.executor = LocalExecutor(rc.workers)
        # One outbox for the whole stack, like one mail system: the job id dedupes across regions.
        notifier = (open_notifier(config.notifier) if config.notifier
                    else OutboxNotifier(Path(config.data_dir) / "outbox"))
        self.orchestrator = Orchestrator(
            objects=self.objects, store_url=rc.objects, state=self.state, executor=self.executor,
            notifier=notifier, pipeline=config.load_pipeline(), region=name, owner=self._owner,
            signing_key=bytes.fromhex(self.secrets.signing_key), link_base=config.access_point_url,
            cache_dir=data_dir / "cache", object_written=self.objects.record,
            notified=lambda delivered: self.metrics.notifications.labels("sent" if delivered else "duplicate").inc(),
            event=self._count_event, fault_file=str(self.faults.path),
        )
        self.replicators = {
            other.name: Replicator(
                HttpFeedSource(other.name, config.region_url(other.name), self.secrets.api_token),
                name, self.state, self.plain_objects, on_object=self._replicated_object,
                interval=config.replication.interval, batch=config.replication.batch,
            )
            for other in config.regions if other.name != name
        }
        self._queue: queue.Queue[str] = queue.Queue()
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started_at = time.time()
        self.switch = SwitchRunner(self)
        self.plan_evaluation: dict | None = None
        self._applied: dict[str, dict] = {}  # injected faults whose side effects must be reverted

    def _count_event(self, name: str, job_id: str) -> None:
        m = self.metrics
        if name == "split":
            m.files_split.inc()
        elif name.startswith("chunk_"):
            m.chunks.labels(name.removeprefix("chunk_")).inc()
        log.info("%s", name, extra={"job_id": job_id})

    # -- ownership ---------------------------------------------------------------------------------
    def _owner(self) -> tuple[str, int]:
        c = self.control.get()
        self.metrics.epoch.set(c.epoch)
        for r in self.config.regions:
            self.metrics.active.labels(r.name).set(1 if r.name == c.active_region else 0)
        return c.active_region, c.epoch

    def is_active(self) -> bool:
        return self._owner()[0] == self.name

    # -- trigger -----------------------------------------------------------------------------------
    def object_created(self, key: str) -> str | None:
        """An object under input/ arrived (uploaded or replicated): create and queue its job if active."""
        if not key.startswith(INPUT_PREFIX):
            return None
        job_id = self.orchestrator.trigger(key)
        if job_id is None:
            self.metrics.files_skipped.inc()
            return None
        self.enqueue(job_id)
        return job_id

    def _replicated_object(self, key: str) -> None:
        # ObjectNotFound: archived at the source before it got here; the active region has it in hand.
        with contextlib.suppress(ObjectNotFound):
            self.object_created(key)

    def enqueue(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._queued:
                return
            self._queued.add(job_id)
        self._queue.put(job_id)

    # -- workers -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.executor.warm_up()
        loops = [(self._run_jobs, "jobs"), (self._sweep, "sweep"), (self._evaluate, "evaluate"),
                 (self._revert_faults, "faults")]
        if self.config.canary.interval > 0:
            loops.append((self._canary, "canary"))
        for target, name in loops:
            t = threading.Thread(target=target, name=f"{self.name}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        for rep in self.replicators.values():
            rep.start()

    def _run_jobs(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._run_one(job_id)
            finally:
                with self._lock:
                    self._queued.discard(job_id)

    def busy(self) -> bool:
        """Whether a job is in hand or queued (a region that lost the control drains this quickly)."""
        with self._lock:
            return bool(self._queued)

    def _run_one(self, job_id: str) -> None:
        self.metrics.orchestrator.labels("started").inc()
        try:
            job = self.orchestrator.run_job(job_id)
        except FencedOut as exc:
            log.info("stopped work on %s: %s", job_id, exc, extra={"job_id": job_id})
            return
        except InputMissing as exc:
            log.info("waiting for input of %s: %s", job_id, exc, extra={"job_id": job_id})
            return
        except JobInterrupted as exc:
            self.metrics.orchestrator.labels("interrupted").inc()
            log.warning("%s; the sweep resumes it", exc, extra={"job_id": job_id})
            return
        except Exception:
            self.metrics.orchestrator.labels("failed").inc()
            log.exception("job %s stopped by an error; the sweep retries it", job_id, extra={"job_id": job_id})
            return
        log.info("job %s", job.status.lower(), extra={"job_id": job_id})
        if job.status == JobStatus.COMPLETED:
            self.metrics.orchestrator.labels("succeeded").inc()
            self.metrics.files_processed.inc()
            self.metrics.rows.labels("ok").inc(job.rows_ok or 0)
            self.metrics.rows.labels("rejected").inc(job.rows_rejected or 0)
        else:
            self.metrics.orchestrator.labels("failed").inc()

    def _sweep(self) -> None:
        """Resume unfinished work this region owns and start jobs for inputs that have none."""
        while not self._stop.is_set():
            try:
                self.sweep_once()
            except RegionflowError as exc:
                log.warning("sweep: %s", exc)
            except Exception:
                log.exception("sweep failed")
            self._stop.wait(SWEEP_INTERVAL)

    def sweep_once(self) -> None:
        active, epoch = self._owner()
        if active != self.name:
            return
        for job in self.state.list_jobs_unfinished():
            if job.owner_region == self.name and job.owner_epoch == epoch:
                self.enqueue(job.job_id)
        for info in self.objects.list(INPUT_PREFIX):
            if self.state.get_job(job_id_for(info.key, info.version_id)) is None:
                self.object_created(info.key)

    # -- fault injection -----------------------------------------------------------------------------
    def inject_fault(self, kind: str, duration: float, params: dict) -> dict:
        """Inject a fault for duration seconds (reverted automatically); see chaos.faults.KINDS."""
        if kind == "replication_paused" and params.get("source") not in (None, *self.replicators):
            raise RegionflowError(f"{self.name} does not replicate from {params['source']!r}")
        if kind == "crash_at" and not params.get("point"):
            raise RegionflowError("crash_at needs a point, e.g. merge:midway")
        fault = self.faults.add(kind, duration, params)
        if kind == "replication_paused":
            self._set_replication_paused(params.get("source"), True)
        elif kind == "crash_at":
            os.environ["REGIONFLOW_CRASH_AT"] = str(params["point"])
        elif kind == "crash":
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGKILL)).start()  # after the response is sent
        self._applied[fault["id"]] = fault
        log.warning("fault injected: %s for %ss %s", kind, duration, params)
        return fault

    def clear_faults(self, fault_id: str | None = None) -> list[dict]:
        removed = self.faults.clear(fault_id)
        for fault in removed:
            self._revert(fault)
        return removed

    def _set_replication_paused(self, source: str | None, paused: bool) -> None:
        for name, rep in self.replicators.items():
            if source in (None, name):
                for kind in ("objects", "state"):
                    self.state.set_paused(rep.cursor(kind), paused)

    def _revert(self, fault: dict) -> None:
        if self._applied.pop(fault["id"], None) is None:
            return
        if fault["kind"] == "replication_paused":
            self._set_replication_paused(fault["params"].get("source"), False)
        elif fault["kind"] == "crash_at":
            os.environ.pop("REGIONFLOW_CRASH_AT", None)
        log.warning("fault reverted: %s", fault["kind"])

    def _revert_faults(self) -> None:
        while not self._stop.wait(0.5):
            active = {f["id"] for f in self.faults.active()}
            for fault in list(self._applied.values()):
                if fault["id"] not in active:
                    try:
                        self._revert(fault)
                    except Exception:  # e.g. the state store is itself faulted: try again next round
                        log.exception("reverting fault %s", fault["id"])
                        self._applied[fault["id"]] = fault

    def _canary(self) -> None:
        from regionflow.region.canary import canary_once

        while not self._stop.wait(self.config.canary.interval):
            canary_once(self)

    def _evaluate(self) -> None:
        """Continuous plan evaluation: the failover plan could run right now (or says why not)."""
        from regionflow.switch.evaluate import EVALUATION_INTERVAL, evaluate_plan

        self._stop.wait(5.0)
        while not self._stop.is_set():
            try:
                self.plan_evaluation = evaluate_plan(self.config, self.secrets, self.config.plan_path)
            except Exception:
                log.exception("plan evaluation failed")
            self._stop.wait(EVALUATION_INTERVAL)

    def stop(self) -> None:
        self._stop.set()
        for rep in self.replicators.values():
            rep.stop()
        for t in self._threads:
            t.join(timeout=10)
        self.executor.close()
        self.state.close()

    # -- views -------------------------------------------------------------------------------------
    def replication_status(self) -> list[dict]:
        out = []
        for rep in self.replicators.values():
            st = rep.status.as_dict()
            # the pause flags are read now, not at the replicator's last pass
            st["paused_kinds"] = [k for k in ("objects", "state") if self.state.is_paused(rep.cursor(k))]
            st["paused"] = bool(st["paused_kinds"])
            for kind in ("objects", "state"):
                self.metrics.backlog.labels(st["source"], st["target"], kind).set(st["backlog"][kind])
                self.metrics.lag.labels(st["source"], st["target"], kind).set(st["lag_seconds"][kind])
            out.append(st)
        return out
