"""The step kinds of a region-switch plan. Each takes the run context and the step, returns its output
(a JSON-able dict) or raises StepFailed. In practice mode a step checks and changes nothing."""

from __future__ import annotations

import importlib
import shlex
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx

from regionflow.replication.source import SourceUnavailable
from regionflow.switch.plan import Step
from regionflow.switch.reconcile import reconcile

if TYPE_CHECKING:
    from regionflow.switch.runner import PlanRun


class StepFailed(Exception):
    """The step did not reach its goal; the message says why."""


def routing_control(run: PlanRun, step: Step, deadline: float) -> dict:
    region = step.params.get("region", run.target)
    current = run.region.control.get(fresh=True)
    if run.practice:
        return {"would_set": region, "current_active": current.active_region, "current_epoch": current.epoch}
    if current.active_region == region:
        run.epoch = current.epoch
        return {"active": region, "epoch": current.epoch, "changed": False}
    new = run.region.control.set_active(region, current.epoch, by=f"plan {run.plan.name} ({run.execution_id})")
    run.epoch = new.epoch
    return {"from": current.active_region, "to": new.active_region, "epoch": new.epoch, "changed": True}


def wait_replication(run: PlanRun, step: Step, deadline: float) -> dict:
    """Wait until this region has applied what every other region's feed held when the switch began.
    A source that cannot be reached is waited for at most max_wait, then recorded as unconfirmed."""
    max_wait = float(step.params.get("max_wait", 30))
    poll = float(step.params.get("poll", 0.05))
    settle = bool(step.params.get("settle", False))
    started = time.monotonic()
    out: dict[str, Any] = {}
    for source, rep in run.region.replicators.items():
        target_seq = run.snapshot.get(source)
        settled: dict[str, Any] | None = None
        if settle and not run.practice:
            # After the control moved: wait until the previous owner has seen the new epoch and finished
            # the step it was in, then catch up with everything it wrote until then.
            settled = _settle(run, source, min(deadline, time.monotonic() + max_wait))
            target_seq = settled.get("head")
            if target_seq is None:
                out[source] = {"confirmed": False, "settled": settled}
                continue
        while True:
            applied = {k: rep.checkpoint(k) for k in ("objects", "state")}
            if target_seq is not None and rep.caught_up_to(target_seq):
                out[source] = {"confirmed": True, "applied_through": applied, "switch_point": target_seq}
                if settled is not None:
                    out[source]["settled"] = settled
                break
            paused = [k for k in ("objects", "state") if run.region.state.is_paused(rep.cursor(k))]
            if run.practice:
                out[source] = {"confirmed": False, "applied_through": applied, "switch_point": target_seq,
                               "paused": paused}
                break
            if target_seq is None:
                try:  # the source may have come back since the switch began
                    target_seq = rep.source.stats(min(applied.values()))["head"]
                    continue
                except (SourceUnavailable, httpx.HTTPError, KeyError):
                    pass
            now = time.monotonic()
            # A source that cannot serve its changes (down, or its stores failing) is waited for max_wait.
            cannot_serve = target_seq is None or not rep.status.reachable
            # (a settle pass has already waited for the old owner; it does not wait twice)
            if cannot_serve and (settled is not None or now - started >= max_wait):
                known = max(rep.status.source_head, *applied.values())
                out[source] = {"confirmed": False, "applied_through": applied, "switch_point": None,
                               "unconfirmed_backlog": {k: rep.status.backlog.get(k, 0) for k in applied},
                               "last_known_source_head": known, "waited_seconds": round(now - started, 3)}
                break
            if now > deadline:
                raise StepFailed(f"replication from {source} did not reach {target_seq} before the step timeout "
                                 f"(applied through {applied})")
            if paused and target_seq is not None:
                raise StepFailed(f"replication of {', '.join(paused)} from {source} is paused; resume it, or the "
                                 "switch cannot confirm that this region caught up")
            time.sleep(poll)
    return out


def _settle(run: PlanRun, source: str, until: float) -> dict[str, Any]:
    """Wait (until `until`) for source to report the current epoch and no job in hand; its feed head then."""
    epoch = run.region.control.get(fresh=True).epoch
    url = run.region.config.region_url(source)
    headers = {"Authorization": f"Bearer {run.region.secrets.api_token}"}
    while True:
        try:
            health = httpx.get(f"{url}/health", timeout=1.0).json()
            quiet = (health.get("epoch_seen") or 0) >= epoch and not health.get("busy")
            if quiet or time.monotonic() > until:
                head = httpx.get(f"{url}/internal/feed/stats", params={"since": 0}, headers=headers,
                                 timeout=2.0).json()["head"]
                return {"settled": quiet, "epoch_seen": health.get("epoch_seen"), "head": head}
        except (httpx.HTTPError, ValueError, KeyError):
            return {"settled": False, "reason": "unreachable", "head": None}  # gone: it writes nothing more
        time.sleep(0.1)


def reconcile_step(run: PlanRun, step: Step, deadline: float) -> dict:
    epoch = run.epoch if run.epoch is not None else run.region.control.get(fresh=True).epoch
    active = run.region.control.get(fresh=True).active_region
    if not run.practice and active != run.region.name:
        raise StepFailed(f"{run.region.name} is not the active region ({active} is); reconcile only runs there")
    report = reconcile(run.region, epoch, practice=run.practice)
    run.missing = report["missing"]
    return report


def health_check(run: PlanRun, step: Step, deadline: float) -> dict:
    region = step.params["region"]
    expect = step.params.get("expect", "ok")
    url = run.region.config.region_url(region)
    last = "no answer"
    while True:
        try:
            resp = httpx.get(f"{url}/health/deep", timeout=1.0)
            last = resp.json().get("status", f"HTTP {resp.status_code}")
        except (httpx.HTTPError, ValueError) as exc:
            last = f"unreachable ({type(exc).__name__})"
        state = "ok" if last == "ok" else "failing"
        if state == expect:
            return {"region": region, "status": last, "expected": expect}
        if time.monotonic() > deadline:
            raise StepFailed(f"{region} is {last}, expected {expect}")
        time.sleep(0.2)


def manual_approval(run: PlanRun, step: Step, deadline: float) -> dict:
    if run.practice:
        return {"would_wait_for_approval": True}
    run.waiting_for_approval(step)
    while not run.approved.wait(0.1):
        if time.monotonic() > deadline:
            raise StepFailed("not approved before the step timeout")
    return {"approved_by": run.approved_by, "prompt": step.params.get("prompt", "")}


def custom(run: PlanRun, step: Step, deadline: float) -> dict:
    if run.practice:
        return {"would_run": step.params.get("function") or step.params.get("command")}
    timeout = max(0.1, deadline - time.monotonic())
    if "command" in step.params:
        try:
            proc = subprocess.run(shlex.split(str(step.params["command"])), capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"command timed out after {timeout:.1f}s") from None
        except OSError as exc:
            raise StepFailed(f"command could not start: {exc}") from None
        output = {"exit": proc.returncode, "stdout": proc.stdout[-2000:], "stderr": proc.stderr[-2000:]}
        if proc.returncode != 0:
            raise StepFailed(f"command exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
        return output
    module_name, _, func_name = str(step.params["function"]).partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise StepFailed(f"cannot load {step.params['function']}: {exc}") from None
    result: dict[str, Any] = {}

    def call() -> None:
        try:
            result["value"] = func({"region": run.region.name, "target": run.target, "plan": run.plan.name,
                                    "execution_id": run.execution_id})
        except Exception as exc:  # reported as the step's failure
            result["error"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise StepFailed(f"{step.params['function']} did not return within {timeout:.1f}s")
    if "error" in result:
        raise StepFailed(result["error"])
    value = result.get("value")
    return value if isinstance(value, dict) else {"result": value}


def child_plan(run: PlanRun, step: Step, deadline: float) -> dict:
    assert step.child is not None
    records = run.run_workflow(step.child.workflow(run.target), depth=1)
    if any(r["status"] != "SUCCEEDED" for r in records):
        raise StepFailed(f"child plan {step.child.name} failed")
    return {"plan": step.child.name, "steps": records}


STEPS = {
    "routing_control": routing_control,
    "wait_replication": wait_replication,
    "reconcile": reconcile_step,
    "health_check": health_check,
    "manual_approval": manual_approval,
    "custom": custom,
    "child_plan": child_plan,
}
