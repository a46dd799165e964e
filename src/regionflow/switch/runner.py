"""Running a plan in the activating region, recording every step, and measuring the achieved RTO."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from regionflow.ids import new_version_id
from regionflow.switch.context import StepAborted, StepFailed, SwitchContext
from regionflow.switch.model import Group, Plan, Step
from regionflow.switch.records import Execution, ExecutionStatus, StepRecord, StepStatus
from regionflow.switch.registry import StepRegistry

log = logging.getLogger("regionflow.switch")


class SwitchBusy(Exception):
    """Another (non-practice) region switch is running in this region."""


class PlanRun:
    """One execution of a plan: implements StepRun for the steps it runs."""

    def __init__(self, ctx: SwitchContext, steps: StepRegistry, plan: Plan, target: str, *, practice: bool,
                 started_by: str, trigger: dict[str, Any] | None = None):
        self.ctx = ctx
        self.steps = steps
        self.plan = plan
        self.target = target
        self.practice = practice
        self.execution_id = "exec-" + new_version_id()
        self.epoch: int | None = None
        self.missing: list[dict[str, Any]] = []
        self.approved_by = ""
        self.snapshot: dict[str, int | None] = {}
        self._approved = threading.Event()
        self._accepting_approval = False
        self._approval_lock = threading.Lock()
        self.aborted: str | None = None
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self.record = Execution(
            execution_id=self.execution_id, plan=plan.name, plan_path=plan.path, target=target, region=ctx.name,
            practice=practice, started_by=started_by, started_at=time.time(),
            desired_rto_seconds=plan.desired_rto_seconds, trigger=trigger)

    # -- persistence ----------------------------------------------------------------------------------
    def save(self) -> None:
        with self._lock:
            self.record.missing = self.missing
            self.ctx.save_execution(self.record.to_dict())

    def waiting_for_approval(self, step: Step, until: float, on_timeout: str) -> None:
        with self._approval_lock:
            # an approval counts for the step that waits now, not for a later one
            self._approved.clear()
            self.approved_by = ""
            self._accepting_approval = True
        self.record.status = ExecutionStatus.WAITING_APPROVAL
        self.record.waiting_for = {"step": step.name, "prompt": step.params.get("prompt", ""), "until": until,
                                   "on_timeout": on_timeout}
        self.save()

    def approve(self, by: str) -> bool:
        """Approve the step waiting now; False when none is waiting."""
        with self._approval_lock:
            if not self._accepting_approval:
                return False
            self._accepting_approval = False
            self.approved_by = by
            self._approved.set()
            return True

    def approval_ended(self) -> None:
        with self._approval_lock:
            self._accepting_approval = False
        self.record.waiting_for = None

    def wait_approved(self, timeout: float) -> bool:
        return self._approved.wait(timeout)

    # -- running --------------------------------------------------------------------------------------
    def _take_snapshot(self) -> None:
        """What each other region's feed held when the switch began (None: unreachable)."""
        replication = self.ctx.replication
        self.snapshot = {source: replication.source_head(source) for source in replication.sources()}
        self.record.switch_point = dict(self.snapshot)

    def _rto_now(self) -> None:
        self.record.rto_seconds = round(time.monotonic() - self._t0, 3)

    def run(self) -> Execution:
        self.save()
        try:
            self._take_snapshot()
            records = self.run_workflow(self.plan.workflow(self.target), depth=0)
            ok = all(r.status == StepStatus.SUCCEEDED for r in records)
            self.record.status = ExecutionStatus.SUCCEEDED if ok else ExecutionStatus.FAILED
            if self.aborted is not None:
                self.record.status = ExecutionStatus.ABORTED
                self.record.error = self.aborted
        except Exception as exc:
            log.exception("plan %s failed", self.plan.name)
            self.record.status = ExecutionStatus.FAILED
            self.record.error = f"{type(exc).__name__}: {exc}"
        self.record.ended_at = time.time()
        if self.record.rto_seconds is None and not self.practice and self.record.status == ExecutionStatus.SUCCEEDED:
            self._rto_now()
        self.save()
        self.ctx.count_execution(self.record.status.lower())
        return self.record

    def run_workflow(self, workflow: list[Step | Group], depth: int) -> list[StepRecord]:
        records: list[StepRecord] = []
        for item in workflow:
            if isinstance(item, Group):
                group = [self._new_record(s, depth) for s in item.steps]
                records.extend(group)
                with ThreadPoolExecutor(len(item.steps)) as pool:
                    list(pool.map(lambda pair: self._run_step(*pair), zip(item.steps, group, strict=True)))
            else:
                rec = self._new_record(item, depth)
                records.append(rec)
                self._run_step(item, rec)
            if any(r.status != StepStatus.SUCCEEDED for r in records):
                break
        return records

    def _new_record(self, step: Step, depth: int) -> StepRecord:
        rec = StepRecord(name=step.name, kind=step.kind, line=step.line)
        if depth == 0:
            with self._lock:
                self.record.steps.append(rec)
        return rec

    def _run_step(self, step: Step, rec: StepRecord) -> None:
        kind = self.steps.get(step.kind)
        rec.status, rec.started = StepStatus.RUNNING, time.time()
        self.save()
        deadline = time.monotonic() + step.timeout
        for attempt in range(step.retries + 1):
            rec.attempts = attempt + 1
            try:
                rec.output = kind.run(self, step, deadline)
                rec.status, rec.error = StepStatus.SUCCEEDED, None
                break
            except StepAborted as exc:  # on purpose: no retry, and the execution ends ABORTED
                rec.status, rec.error = StepStatus.FAILED, str(exc)
                self.aborted = f"step {step.name!r}: {exc}"
                break
            except StepFailed as exc:
                rec.status, rec.error = StepStatus.FAILED, str(exc)
            except Exception as exc:
                log.exception("step %s", step.name)
                rec.status, rec.error = StepStatus.FAILED, f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                break
        rec.ended = time.time()
        if self.record.status == ExecutionStatus.WAITING_APPROVAL:
            self.record.status = ExecutionStatus.RUNNING
        if kind.ends_rto and rec.status == StepStatus.SUCCEEDED and not self.practice:
            self._rto_now()
        self.save()


class SwitchRunner:
    """The executions of one region: started in the background, looked up by id, approved."""

    def __init__(self, ctx: SwitchContext, steps: StepRegistry):
        self.ctx = ctx
        self.steps = steps
        self.runs: dict[str, PlanRun] = {}
        self._busy = threading.Lock()

    def start(self, plan: Plan, target: str, *, practice: bool, started_by: str, wait: bool = False,
              trigger: dict[str, Any] | None = None) -> Execution:
        """Start an execution (in the background unless wait); SwitchBusy while another real one runs.
        trigger: why a trigger started it (recorded in the execution)."""
        if not practice and not self._busy.acquire(blocking=False):
            raise SwitchBusy("another region switch is running in this region")
        run = PlanRun(self.ctx, self.steps, plan, target, practice=practice, started_by=started_by, trigger=trigger)
        self.runs[run.execution_id] = run

        def go() -> None:
            try:
                run.run()
            finally:
                if not practice:
                    self._busy.release()

        if wait:
            go()
        else:
            run.save()
            threading.Thread(target=go, name=f"switch-{run.execution_id}", daemon=True).start()
        return run.record

    def approve(self, execution_id: str, by: str) -> bool:
        """Approve the manual_approval step an execution waits at; False if it is not waiting (unknown here,
        finished, or not at an approval step)."""
        run = self.runs.get(execution_id)
        if run is None or run.record.finished:
            return False
        return run.approve(by)
