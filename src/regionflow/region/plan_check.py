"""Plan evaluation: is the plan valid, and could it run now (regions and control reachable, tokens valid)?

Run by `regionflow plan validate` and, every few minutes, by each region (shown in `status`).
"""

from __future__ import annotations

import time

import httpx

from regionflow.config import Config, Secrets
from regionflow.control import open_control
from regionflow.errors import RegionflowError
from regionflow.switch.plan import load_plan, plan_regions_known

EVALUATION_INTERVAL = 180.0


def evaluate_plan(config: Config, secrets: Secrets, plan_path: str) -> dict:
    """{"status": "ok"|"failing", "plan", "checks": [{"check", "ok", "detail"}], "evaluated_at"}."""
    checks: list[dict] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks.append({"check": name, "ok": ok, "detail": detail})

    plan = None
    try:
        plan = load_plan(plan_path)
        plan_regions_known(plan, config.region_names)
        check("plan is valid", True, f"{plan.name}: workflows for {', '.join(plan.workflows)}")
    except RegionflowError as exc:
        check("plan is valid", False, str(exc))
    try:
        c = open_control(config.control).get()
        check("routing control reachable", True, f"active {c.active_region}, epoch {c.epoch}")
    except RegionflowError as exc:
        check("routing control reachable", False, str(exc))
    regions = plan.regions if plan else config.region_names
    with httpx.Client(timeout=1.5) as http:
        for name in regions:
            try:
                url = config.region_url(name)
            except RegionflowError as exc:
                check(f"{name} reachable", False, str(exc))
                continue
            try:
                health = http.get(f"{url}/health")
                check(f"{name} reachable", health.status_code == 200, f"HTTP {health.status_code}")
                api = http.get(f"{url}/jobs", params={"limit": 1},
                               headers={"Authorization": f"Bearer {secrets.api_token}"})
                check(f"{name} accepts the API token", api.status_code == 200, f"HTTP {api.status_code}")
                admin = http.get(f"{url}/admin/faults", headers={"Authorization": f"Bearer {secrets.admin_token}"})
                check(f"{name} accepts the admin token", admin.status_code == 200, f"HTTP {admin.status_code}")
            except httpx.HTTPError as exc:
                check(f"{name} reachable", False, type(exc).__name__)
    return {"status": "ok" if all(c["ok"] for c in checks) else "failing", "plan": plan_path,
            "checks": checks, "evaluated_at": time.time()}
