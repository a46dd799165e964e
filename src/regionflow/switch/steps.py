"""The generic step kinds of a region-switch plan (workloads register their own). Each takes the run,
the step and its deadline, returns its output (a JSON-able dict) or raises StepFailed. In practice mode a
step checks and changes nothing."""

from __future__ import annotations

import importlib
import shlex
import subprocess
import threading
import time
from dataclasses import asdict
from typing import Any

from regionflow.polling import PollTimeout, poll_until
from regionflow.switch.context import StepAborted, StepFailed, StepRun
from regionflow.switch.model import Step
from regionflow.switch.records import StepStatus
from regionflow.switch.registry import StepKind, StepRegistry


def routing_control(run: StepRun, step: Step, deadline: float) -> dict:
    region = step.params.get("region", run.target)
    current = run.ctx.control.get(fresh=True)
    if run.practice:
        return {"would_set": region, "current_active": current.active_region, "current_epoch": current.epoch}
    if current.active_region == region:
        # set_by tells an operator who made it active: e.g. an earlier run whose write etcd applied late,
        # after answering ControlOutcomeUnknown (control/etcd.py).
        run.epoch = current.epoch
        return {"active": region, "epoch": current.epoch, "changed": False, "set_by": current.updated_by}
    new = run.ctx.control.set_active(region, current.epoch, by=f"plan {run.plan.name} ({run.execution_id})")
    run.epoch = new.epoch
    return {"from": current.active_region, "to": new.active_region, "epoch": new.epoch, "changed": True}


def wait_replication(run: StepRun, step: Step, deadline: float) -> dict:
    """Wait until this region has applied what every other region's feed held when the switch began.
    A source that cannot be reached is waited for at most max_wait, then recorded as unconfirmed."""
    max_wait = float(step.params.get("max_wait", 30))
    poll = float(step.params.get("poll", 0.05))
    settle = bool(step.params.get("settle", False))
    started = time.monotonic()
    replication = run.ctx.replication
    out: dict[str, Any] = {}
    for source in replication.sources():
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
            applied = replication.applied(source)
            if target_seq is not None and replication.caught_up_to(source, target_seq):
                out[source] = {"confirmed": True, "applied_through": applied, "switch_point": target_seq}
                if settled is not None:
                    out[source]["settled"] = settled
                break
            paused = replication.paused_kinds(source)
            if run.practice:
                out[source] = {"confirmed": False, "applied_through": applied, "switch_point": target_seq,
                               "paused": paused}
                break
            if target_seq is None:
                target_seq = replication.source_head(source)  # the source may have come back since
                if target_seq is not None:
                    continue
            now = time.monotonic()
            # A source that cannot serve its changes (down, or its stores failing) is waited for max_wait.
            cannot_serve = target_seq is None or not replication.reachable(source)
            # (a settle pass has already waited for the old owner; it does not wait twice)
            if cannot_serve and (settled is not None or now - started >= max_wait):
                known = max(replication.last_known_head(source), *applied.values())
                backlog = replication.backlog(source)
                out[source] = {"confirmed": False, "applied_through": applied, "switch_point": None,
                               "unconfirmed_backlog": {k: backlog.get(k, 0) for k in applied},
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


def _settle(run: StepRun, source: str, until: float) -> dict[str, Any]:
    """Wait (until `until`) for source to report the current epoch and no job in hand; its feed head then."""
    epoch = run.ctx.control.get(fresh=True).epoch
    while True:
        seen = run.ctx.peers.activity(source)
        if seen is None or seen.feed_head is None:
            return {"settled": False, "reason": "unreachable", "head": None}  # gone: it writes nothing more
        quiet = (seen.epoch_seen or 0) >= epoch and not seen.busy
        if quiet or time.monotonic() > until:
            return {"settled": quiet, "epoch_seen": seen.epoch_seen, "head": seen.feed_head}
        time.sleep(0.1)


def health_check(run: StepRun, step: Step, deadline: float) -> dict:
    region = step.params["region"]
    expect = step.params.get("expect", "ok")
    said = {"status": "no answer"}

    def as_expected() -> bool:
        said["status"] = run.ctx.peers.deep_health(region)
        return ("ok" if said["status"] == "ok" else "failing") == expect

    try:
        poll_until(as_expected, timeout=max(0.0, deadline - time.monotonic()), interval=0.2)
    except PollTimeout:
        raise StepFailed(f"{region} is {said['status']}, expected {expect}") from None
    return {"region": region, "status": said["status"], "expected": expect}


def manual_approval(run: StepRun, step: Step, deadline: float) -> dict:
    """Wait for `plan approve` until the step's timeout; then on_timeout: abort (the default: the execution
    ends ABORTED, nothing after this step runs) or proceed (recorded as proceeded without approval)."""
    on_timeout = str(step.params.get("on_timeout", "abort"))
    prompt = step.params.get("prompt", "")
    if run.practice:
        return {"would_wait_for_approval": True, "on_timeout": on_timeout}
    started = time.monotonic()
    run.waiting_for_approval(step, time.time() + max(0.0, deadline - started), on_timeout)
    try:
        while not run.wait_approved(0.1):
            if time.monotonic() > deadline:
                run.approval_ended()
                if run.wait_approved(0):  # approved in the last instant: it counts
                    break
                waited = round(time.monotonic() - started, 1)
                if on_timeout == "proceed":
                    return {"approved_by": None, "proceeded_without_approval": True, "waited_seconds": waited,
                            "on_timeout": on_timeout, "prompt": prompt}
                raise StepAborted(f"not approved within {step.timeout:g}s (on_timeout: abort); the execution "
                                  "stopped here and changed nothing further")
    finally:
        run.approval_ended()
    return {"approved_by": run.approved_by, "prompt": prompt,
            "waited_seconds": round(time.monotonic() - started, 1)}


def custom(run: StepRun, step: Step, deadline: float) -> dict:
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
            result["value"] = func({"region": run.ctx.name, "target": run.target, "plan": run.plan.name,
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


def child_plan(run: StepRun, step: Step, deadline: float) -> dict:
    assert step.child is not None
    records = run.run_workflow(step.child.workflow(run.target), depth=1)
    if any(r.status != StepStatus.SUCCEEDED for r in records):
        raise StepFailed(f"child plan {step.child.name} failed")
    return {"plan": step.child.name, "steps": [asdict(r) for r in records]}


def generic_steps() -> StepRegistry:
    """A registry holding the step kinds every workload shares."""
    return StepRegistry([
        StepKind("routing_control", routing_control, frozenset({"region"})),
        StepKind("wait_replication", wait_replication, frozenset({"max_wait", "poll", "settle"})),
        StepKind("health_check", health_check, frozenset({"region", "expect"})),
        StepKind("manual_approval", manual_approval, frozenset({"prompt", "on_timeout"})),
        StepKind("custom", custom, frozenset({"function", "command"})),
        StepKind("child_plan", child_plan, frozenset({"plan"})),
    ])
