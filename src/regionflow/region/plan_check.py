"""Plan evaluation: is the plan valid, and could it run now (regions and control reachable, tokens valid)?

Run by `regionflow plan validate` and, every few minutes, by each region (shown in `status`).
"""

from __future__ import annotations

import time
from typing import Any

from regionflow.api.client import ApiClient, ApiError
from regionflow.config import Config, Secrets
from regionflow.config.plans import PlanNotAllowed, allowed_plan
from regionflow.control import open_control
from regionflow.errors import RegionflowError
from regionflow.switch.plan import load_plan, plan_regions_known
from regionflow.workloads.registry import step_registry

EVALUATION_INTERVAL = 180.0


def _answers(client: ApiClient, call: Any) -> tuple[bool, str]:
    try:
        call(client)
        return True, "HTTP 200"
    except ApiError as exc:
        return False, f"HTTP {exc.status_code}" if exc.status_code else str(exc)


def evaluate_plan(config: Config, secrets: Secrets, plan_path: str) -> dict[str, Any]:
    """{"status": "ok"|"failing", "plan", "checks": [{"check", "ok", "detail"}], "evaluated_at"}."""
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks.append({"check": name, "ok": ok, "detail": detail})

    plan = None
    try:
        plan = load_plan(plan_path, step_registry())
        plan_regions_known(plan, config.region_names)
        triggers = "".join(f"; trigger {t.name} ({t.condition.describe()} for {t.for_seconds:g}s -> {t.activate})"
                           for t in plan.triggers)
        check("plan is valid", True, f"{plan.name}: workflows for {', '.join(plan.workflows)}{triggers}")
    except RegionflowError as exc:
        check("plan is valid", False, str(exc))
    try:
        check("the regions may run it", True, f"in {allowed_plan(config, plan_path).parent}")
    except PlanNotAllowed as exc:
        check("the regions may run it", False, str(exc))
    try:
        c = open_control(config.control).get()
        check("routing control reachable", True, f"active {c.active_region}, epoch {c.epoch}")
    except RegionflowError as exc:
        check("routing control reachable", False, str(exc))
    regions = plan.regions if plan else config.region_names
    for name in regions:
        try:
            url = config.region_url(name)
        except RegionflowError as exc:
            check(f"{name} reachable", False, str(exc))
            continue
        verify = config.tls_verify()
        with ApiClient(url, secrets.api_token, target=name, timeout=1.5, verify=verify) as api, \
                ApiClient(url, secrets.admin_token, target=name, timeout=1.5, verify=verify) as admin, \
                ApiClient(url, secrets.replication_token, target=name, timeout=1.5, verify=verify) as peer:
            try:
                api.health()
                check(f"{name} reachable", True, "HTTP 200")
            except ApiError as exc:
                if exc.unreachable:
                    check(f"{name} reachable", False, str(exc).rsplit(": ", 1)[-1])
                    continue
                check(f"{name} reachable", False, f"HTTP {exc.status_code}")
            check(f"{name} accepts the API token", *_answers(api, lambda c: c.jobs(limit=1)))
            check(f"{name} accepts the admin token", *_answers(admin, lambda c: c.faults()))
            # the token the other regions replicate with: a region given another secrets file fails here
            check(f"{name} accepts the replication token", *_answers(peer, lambda c: c.feed_stats(0)))
    return {"status": "ok" if all(c["ok"] for c in checks) else "failing", "plan": plan_path,
            "checks": checks, "evaluated_at": time.time()}
