"""Admin: fault injection into this region (chaos experiments)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from regionflow.api import routes
from regionflow.region.auth import TokenCheck
from regionflow.region.runtime import Region


class InjectFault(BaseModel):
    kind: str
    duration: float = 60.0
    params: dict[str, Any] = {}


def router(region: Region, tokens: TokenCheck) -> APIRouter:
    r = APIRouter(dependencies=[Depends(tokens.require_admin)])

    @r.get(routes.FAULTS)
    def faults() -> dict[str, Any]:
        return {"region": region.name, "faults": region.faults.active()}

    @r.post(routes.FAULTS, status_code=201)
    def inject(body: InjectFault) -> dict[str, Any]:
        return region.fault_control.inject(body.kind, body.duration, body.params).to_dict()

    @r.delete(routes.FAULTS)
    def clear(fault_id: str | None = None) -> dict[str, Any]:
        return {"region": region.name, "cleared": [f.to_dict() for f in region.fault_control.clear(fault_id)]}

    return r
