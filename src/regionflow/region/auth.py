"""Bearer-token checks shared by the gateway and the access point.

Three credentials, each for its own callers (the secrets file says which is which):

- the API token: clients; every data route (objects, jobs, reference data, replication status, metrics);
- the admin token: operators; everything the API token may do, plus region switches and faults, and the
  region-to-region routes (to debug replication with the same view a peer has);
- the replication token: regions only; the region-to-region routes (``/internal/...``: the change feed,
  its stats, raw object reads) and nothing else, so a leaked client token cannot read every row of state
  and a leaked replication token cannot upload or switch regions.

A route that only regions call takes ``dependencies=[Depends(tokens.require_replication)]``.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from regionflow.config import Secrets

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class TokenCheck:
    """FastAPI dependencies: require_api (API or admin token), require_admin (admin token only),
    require_replication (replication or admin token). A known token on a route it may not use is a 403
    that says which token the route needs; an unknown or missing one is a 401."""

    def __init__(self, api_token: str, admin_token: str, replication_token: str):
        self._api = api_token.encode()
        self._admin = admin_token.encode()
        self._replication = replication_token.encode()

    @classmethod
    def from_secrets(cls, secrets: Secrets) -> TokenCheck:
        """The checks for the tokens of a secrets file."""
        return cls(secrets.api_token, secrets.admin_token, secrets.replication_token)

    def _is(self, token: str, expected: bytes) -> bool:
        return bool(token) and hmac.compare_digest(token.encode(), expected)

    def require_api(self, request: Request) -> None:
        token = bearer(request)
        if self._is(token, self._api) or self._is(token, self._admin):
            return
        if self._is(token, self._replication):
            raise HTTPException(403, "the replication token only serves region-to-region routes (/internal/...); "
                                     "use the API token")
        raise HTTPException(401, "missing or invalid API token", headers=_CHALLENGE)

    def require_admin(self, request: Request) -> None:
        token = bearer(request)
        if self._is(token, self._admin):
            return
        if self._is(token, self._api) or self._is(token, self._replication):
            raise HTTPException(403, "this action needs the admin token")
        raise HTTPException(401, "missing or invalid admin token", headers=_CHALLENGE)

    def require_replication(self, request: Request) -> None:
        token = bearer(request)
        if self._is(token, self._replication) or self._is(token, self._admin):
            return
        if self._is(token, self._api):
            raise HTTPException(403, "this route is for region-to-region replication: it needs the replication "
                                     "token (replication_token in the secrets file), not the API token")
        raise HTTPException(401, "missing or invalid replication token", headers=_CHALLENGE)
