"""Bearer-token checks shared by the gateway and the access point."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class TokenCheck:
    """require_api accepts the API or the admin token; require_admin only the admin token."""

    def __init__(self, api_token: str, admin_token: str):
        self._api = api_token.encode()
        self._admin = admin_token.encode()

    def _is(self, token: str, expected: bytes) -> bool:
        return bool(token) and hmac.compare_digest(token.encode(), expected)

    def require_api(self, request: Request) -> None:
        token = bearer(request)
        if not (self._is(token, self._api) or self._is(token, self._admin)):
            raise HTTPException(401, "missing or invalid API token", headers={"WWW-Authenticate": "Bearer"})

    def require_admin(self, request: Request) -> None:
        token = bearer(request)
        if not self._is(token, self._admin):
            if self._is(token, self._api):
                raise HTTPException(403, "this action needs the admin token")
            raise HTTPException(401, "missing or invalid admin token", headers={"WWW-Authenticate": "Bearer"})
