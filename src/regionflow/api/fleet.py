"""Operations a client runs across the regions of a topology: run a plan and follow it, gather executions,
notifications and faults from every region that answers, approve wherever the execution waits.

These are what the CLI (and anything else acting as an operator) calls; the CLI itself only parses and
prints. Client construction errors (a missing or unreadable secrets file) propagate as ConfigError; only
a region that does not answer (or answers with an error) is skipped where a function says so.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regionflow.api.client import ApiClient, ApiError
from regionflow.config.plans import allowed_plan, plan_by_name
from regionflow.errors import RegionflowError
from regionflow.polling import PollTimeout, poll_until
from regionflow.switch.records import TERMINAL_EXECUTION_STATUSES, ExecutionStatus, merge_executions

if TYPE_CHECKING:
    from regionflow.config import Config

POLL_INTERVAL = 0.1


class ExecutionTimeout(RegionflowError):
    """run_plan_and_wait gave up before the execution finished (it keeps running in its region)."""


def operator(via: str = "cli") -> str:
    """Who is acting, as recorded on executions and approvals: user@via."""
    return f"{getpass.getuser()}@{via}"


def run_plan_and_wait(config: Config, plan_file: str, target: str, *, practice: bool, timeout: float,
                      on_waiting: Callable[[str], None] | None = None,
                      started_by: str | None = None) -> dict[str, Any]:
    """Run plan_file's workflow for target, in target, and return the execution record once it finished.

    The plan is checked here first (target is a known region, the file is one the regions may run, see
    config.plans, it parses, every region it names is known, it has a workflow for target), then posted
    to target itself with the admin token: a plan runs in the region it activates, so it needs nothing
    from the failed one. The execution is polled until
    its status is terminal; on_waiting(execution_id) is called once when it is seen waiting for approval.
    The record gets command_seconds (from before the post to the end). ExecutionTimeout after timeout
    seconds; any other RegionflowError (invalid plan, region unreachable or refusing) propagates.
    """
    from regionflow.switch.plan import load_plan, plan_regions_known
    from regionflow.workloads.registry import step_registry

    config.region(target)
    plan_file = str(plan_by_name(config, plan_file))
    # the region would refuse a plan outside its plans directory: say so before sending anything
    plan = load_plan(allowed_plan(config, plan_file), step_registry())
    plan_regions_known(plan, config.region_names)
    plan.workflow(target)
    started = time.monotonic()
    with ApiClient.for_config(config, target, admin=True) as client:
        record = client.run_plan(str(Path(plan.path).resolve()), target, practice=practice,
                                 started_by=started_by or operator())
        exec_id = record["execution_id"]
        current, first, told = record, True, False

        def finished() -> dict[str, Any] | None:
            nonlocal current, first, told
            if not first:  # the first look is at the answer to the post itself
                current = client.execution(exec_id)
            first = False
            if current["status"] in TERMINAL_EXECUTION_STATUSES:
                return current
            if current["status"] == ExecutionStatus.WAITING_APPROVAL and not told:
                told = True
                if on_waiting is not None:
                    on_waiting(exec_id)
            return None

        try:
            record = poll_until(finished, timeout=timeout - (time.monotonic() - started), interval=POLL_INTERVAL,
                                what=f"execution {exec_id}")
        except PollTimeout:
            raise ExecutionTimeout(f"execution {exec_id} still {current['status']} after {timeout:g}s; "
                                   f"see `regionflow plan show {exec_id}`") from None
    record["command_seconds"] = round(time.monotonic() - started, 3)
    return record


def all_executions(config: Config) -> list[dict[str, Any]]:
    """Every region-switch execution any region answers with, newest first.

    Regions that do not answer are left out. An execution is replicated to every region; the copy of the
    region that ran it wins (see merge_executions), because a replica may lag behind it."""
    answers: dict[str, list[dict[str, Any]]] = {}
    for name in config.region_names:
        with ApiClient.for_config(config, name) as client:
            try:
                answers[name] = client.executions()
            except ApiError:
                continue
    return merge_executions(answers)


def approve_anywhere(config: Config, execution_id: str, by: str, region: str | None = None) -> dict[str, Any]:
    """Approve the manual_approval step execution_id waits at, in the first region that accepts it.

    Only the region running the execution accepts (the others refuse or do not answer), so each region is
    asked in turn (or only region, when given). Returns that region's answer; RegionflowError when none
    accepted."""
    for name in [region] if region else config.region_names:
        with ApiClient.for_config(config, name, admin=True) as client:
            try:
                return client.approve(execution_id, by)
            except ApiError:
                continue
    raise RegionflowError(f"no region is running execution {execution_id} waiting for approval")


def all_triggers(config: Config) -> dict[str, dict[str, Any]]:
    """Each region's plan triggers as it last evaluated them (GET /plans/triggers), by region name; a region
    that does not answer maps to {"region", "error"}."""
    states: dict[str, dict[str, Any]] = {}
    for name in config.region_names:
        with ApiClient.for_config(config, name, timeout=2.0) as client:
            try:
                states[name] = client.triggers()
            except ApiError as exc:
                states[name] = {"region": name, "error": str(exc)}
    return states


def all_notifications(config: Config) -> tuple[list[dict[str, Any]], list[str]]:
    """Every notification record of every region, each with stored_in (the region that holds it), and the
    regions that did not answer.

    Notification records are replicated, so one message has one record per region (merge_notifications
    makes messages of them)."""
    rows: list[dict[str, Any]] = []
    unreachable: list[str] = []
    for name in config.region_names:
        with ApiClient.for_config(config, name) as client:
            try:
                rows += [{**n, "stored_in": name} for n in client.outbox()]
            except ApiError:
                unreachable.append(name)
    return rows, unreachable


def merge_notifications(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One message per job id from the per-region records (as all_notifications returns them), oldest first.

    A message is the record of the region that sent it (its own copy is the freshest: a replica may still
    say "sending"), or the first record when that region did not answer, without stored_in, plus regions
    (the regions that recorded it, in the order given) and differences: {field: {region: value}} for every
    field the records disagree on (a lagging replica, or two regions that each sent one: a duplicate).
    """
    by_job: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_job.setdefault(record["job_id"], []).append(record)
    messages = []
    for copies in by_job.values():
        own = next((c for c in copies if c["stored_in"] == c.get("region")), copies[0])
        fields = sorted({k for c in copies for k in c} - {"stored_in"})
        differences = {f: {c["stored_in"]: c.get(f) for c in copies} for f in fields
                       if len({repr(c.get(f)) for c in copies}) > 1}
        message = {k: v for k, v in own.items() if k != "stored_in"}
        messages.append({**message, "regions": [c["stored_in"] for c in copies], "differences": differences})
    return sorted(messages, key=lambda m: (m.get("created_at") or 0.0, m["job_id"]))


def all_faults(config: Config) -> list[dict[str, Any]]:
    """The active faults of every region that answers (admin token), each with its region."""
    rows: list[dict[str, Any]] = []
    for name in config.region_names:
        with ApiClient.for_config(config, name, admin=True) as client:
            try:
                rows += [{**f, "region": name} for f in client.faults()]
            except ApiError:
                continue
    return rows
