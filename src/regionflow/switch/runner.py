"""Running a plan in the activating region, recording every step, and measuring the achieved RTO."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from regionflow.ids import new_version_id
from regionflow.replication.source import SourceUnavailable
from regionflow.switch.plan import Group, Plan, Step
from regionflow.switch.steps import STEPS, StepFailed

if TYPE_CHECKING:
    from regionflow.region.runtime import Region

log = logging.getLogger("regionflow.switch")

TERMINAL = {"SUCCEEDED", "FAILED"}


class PlanRun:
    def __init__(self, region: Region, plan: Plan, target: str, *, practice: bool, started_by: str):
        self.region = region
        self.plan = plan
        self.target = target
        self.practice = practice
        self.execution_id = "exec-" + new_version_id()
        self.epoch: int | None = None
        self.missing: list[dict] = []
        self.approved = threading.Event()
        self.approved_by = ""
        self.started = time.time()
        self._t0 = time.monotonic()
        self.snapshot: dict[str, int | None] = {}
        self.record: dict[str, Any] = {
            "execution_id": self.execution_id, "plan": plan.name, "plan_path": plan.path, "target": target,
            "region": region.name, "practice": practice, "started_by": started_by, "started_at": self.started,
            "ended_at": None, "status": "RUNNING", "desired_rto_seconds": plan.desired_rto_seconds,
            "rto_seconds": None, "steps": [], "missing": [], "switch_point": {}, "error": None,
        }
        self._lock = threading.Lock()

    # -- persistence ----------------------------------------------------------------------------------
    def save(self) -> None:
        with self._lock:
            self.record["missing"] = self.missing
            self.region.state.save_execution(self.record)

    def waiting_for_approval(self, step: Step) -> None:
        self.record["status"] = "WAITING_APPROVAL"
        self.save()

    def approve(self, by: str) -> None:
        self.approved_by = by
        self.approved.set()

    # -- running --------------------------------------------------------------------------------------
    def _take_snapshot(self) -> None:
        """What each other region's feed held when the switch began (None: unreachable)."""
        for source, rep in self.region.replicators.items():
            try:
                self.snapshot[source] = rep.source.stats(rep.checkpoint("state"))["head"]
            except (SourceUnavailable, Exception):  # an unreachable source is expected during a failover
                self.snapshot[source] = None
        self.record["switch_point"] = dict(self.snapshot)

    def run(self) -> dict:
        self.save()
        try:
            self._take_snapshot()
            records = self.run_workflow(self.plan.workflow(self.target), depth=0)
            ok = all(r["status"] == "SUCCEEDED" for r in records)
            self.record["status"] = "SUCCEEDED" if ok else "FAILED"
        except Exception as exc:
            log.exception("plan %s failed", self.plan.name)
            self.record["status"] = "FAILED"
            self.record["error"] = f"{type(exc).__name__}: {exc}"
        self.record["ended_at"] = time.time()
        if self.record["rto_seconds"] is None and not self.practice and self.record["status"] == "SUCCEEDED":
            self.record["rto_seconds"] = round(time.monotonic() - self._t0, 3)
        self.save()
        self.region.metrics.plan_executions.labels(self.record["status"].lower()).inc()
        return self.record

    def run_workflow(self, workflow: list[Step | Group], depth: int) -> list[dict]:
        records: list[dict] = []
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
            if any(r["status"] != "SUCCEEDED" for r in records):
                break
        return records

    def _new_record(self, step: Step, depth: int) -> dict:
        rec = {"name": step.name, "kind": step.kind, "line": step.line, "status": "PENDING", "started": None,
               "ended": None, "attempts": 0, "output": None, "error": None}
        if depth == 0:
            with self._lock:
                self.record["steps"].append(rec)
        return rec

    def _run_step(self, step: Step, rec: dict) -> None:
        rec["status"], rec["started"] = "RUNNING", time.time()
        self.save()
        deadline = time.monotonic() + step.timeout
        for attempt in range(step.retries + 1):
            rec["attempts"] = attempt + 1
            try:
                rec["output"] = STEPS[step.kind](self, step, deadline)
                rec["status"], rec["error"] = "SUCCEEDED", None
                break
            except StepFailed as exc:
                rec["status"], rec["error"] = "FAILED", str(exc)
            except Exception as exc:
                log.exception("step %s", step.name)
                rec["status"], rec["error"] = "FAILED", f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                break
        rec["ended"] = time.time()
        if self.record["status"] == "WAITING_APPROVAL":
            self.record["status"] = "RUNNING"
        if step.kind == "reconcile" and rec["status"] == "SUCCEEDED" and not self.practice:
            # RTO: from the command until the region accepts uploads and has resumed every job.
            self.record["rto_seconds"] = round(time.monotonic() - self._t0, 3)
        self.save()


class SwitchRunner:
    """The executions of one region: started in the background, looked up by id, approved."""

    def __init__(self, region: Region):
        self.region = region
        self.runs: dict[str, PlanRun] = {}
        self._busy = threading.Lock()

    def start(self, plan: Plan, target: str, *, practice: bool, started_by: str, wait: bool = False) -> dict:
        if not practice and not self._busy.acquire(blocking=False):
            raise RuntimeError("another region switch is running in this region")
        run = PlanRun(self.region, plan, target, practice=practice, started_by=started_by)
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
        return dict(run.record)

    def approve(self, execution_id: str, by: str) -> bool:
        run = self.runs.get(execution_id)
        if run is None or run.record["status"] in TERMINAL:
            return False
        run.approve(by)
        return True
