"""Region switch: run a plan (in the region it activates), its executions, approval, plan evaluation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from regionflow.api import routes
from regionflow.config.plans import allowed_plan
from regionflow.region.auth import TokenCheck
from regionflow.region.runtime import Region
from regionflow.switch.plan import load_plan, plan_regions_known
from regionflow.switch.runner import SwitchBusy


class RunPlan(BaseModel):
    plan_path: str
    activate: str
    practice: bool = False
    started_by: str = "api"
    wait: bool = False


class Approve(BaseModel):
    by: str = "api"


def router(region: Region, tokens: TokenCheck) -> APIRouter:
    r = APIRouter()
    api = [Depends(tokens.require_api)]
    admin = [Depends(tokens.require_admin)]

    @r.post(routes.PLANS_RUN, dependencies=admin)
    def run_plan(body: RunPlan) -> dict[str, Any]:
        if body.activate != region.name:
            raise HTTPException(400, f"a plan runs in the region it activates: send it to {body.activate}, "
                                     f"not {region.name}")
        plan = load_plan(allowed_plan(region.config, body.plan_path), region.steps)  # 400 outside plans_dir
        plan_regions_known(plan, region.config.region_names)
        plan.workflow(body.activate)
        try:
            execution = region.switch.start(plan, body.activate, practice=body.practice,
                                            started_by=body.started_by, wait=body.wait)
        except SwitchBusy as exc:
            raise HTTPException(409, str(exc)) from None
        return execution.to_dict()

    @r.get(routes.EXECUTIONS, dependencies=api)
    def executions(limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        return {"region": region.name, "executions": region.state.list_executions(limit)}

    @r.get(routes.EXECUTION, dependencies=api)
    def execution(execution_id: str) -> dict[str, Any]:
        record = region.state.get_execution(execution_id)
        if record is None:
            raise HTTPException(404, f"no execution {execution_id} in {region.name}")
        return record

    @r.post(routes.EXECUTION_APPROVE, dependencies=admin)
    def approve(execution_id: str, body: Approve) -> dict[str, Any]:
        if not region.switch.approve(execution_id, body.by):
            raise HTTPException(409, f"execution {execution_id} is not waiting in {region.name}")
        return {"execution_id": execution_id, "approved_by": body.by}

    @r.get(routes.EVALUATION, dependencies=api)
    def evaluation() -> dict[str, Any]:
        return region.plan_evaluation or {"status": "not evaluated yet"}

    return r
