"""The state of this region's plan triggers (condition holding since, last evaluated, last fired)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from regionflow.api import routes
from regionflow.region.auth import TokenCheck
from regionflow.region.runtime import Region


def router(region: Region, tokens: TokenCheck) -> APIRouter:
    r = APIRouter()

    @r.get(routes.TRIGGERS, dependencies=[Depends(tokens.require_api)])
    def triggers() -> dict[str, Any]:
        return region.triggers.status()

    return r
