"""The ledger's JSON API (/ledger/api/...): transfers, accounts, the audit, the region's view of its database."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from regionflow.api import routes
from regionflow.errors import RegionflowError
from regionflow.region.auth import TokenCheck
from regionflow.region.runtime import Region
from regionflow.workloads.ledger.service import LedgerService, LedgerUnavailable, TransferRefused, TransferRequest

MAX_AMOUNT = Decimal("1000000000000")


def parse_amount(text: str) -> Decimal:
    """A positive amount of at most two decimals, given as a string ("12.50"); ValueError otherwise."""
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal amount (e.g. \"12.50\")") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"amount must be positive, got {text!r}")
    if amount >= MAX_AMOUNT:  # before quantize, which cannot represent a huge exponent with two decimals
        raise ValueError(f"amount {text!r} is too large (the limit is {MAX_AMOUNT})")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"amount {text!r} has more than two decimals")
    return amount.quantize(Decimal("0.01"))


class TransferBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_account: str = Field(alias="from", min_length=1, max_length=64)
    to_account: str = Field(alias="to", min_length=1, max_length=64)
    amount: str  # a decimal string: JSON numbers are floats in most clients, money is not
    idempotency_key: str = Field(min_length=1, max_length=200)

    @field_validator("amount")
    @classmethod
    def _amount(cls, v: str) -> str:
        parse_amount(v)
        return v


class AccountsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: dict[str, str] = Field(min_length=1, max_length=100000)  # id -> opening balance


def _unavailable(region: Region, exc: LedgerUnavailable) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "region": region.name}, status_code=503,
                        headers={"Retry-After": "1"})


def router(region: Region, tokens: TokenCheck) -> APIRouter:
    r = APIRouter(dependencies=[Depends(tokens.require_api)])
    ledger = region.service(LedgerService)

    @r.post(routes.LEDGER_TRANSFERS, status_code=201, response_model=None)
    def transfer(body: TransferBody) -> Any:
        req = TransferRequest(body.from_account, body.to_account, parse_amount(body.amount), body.idempotency_key)
        try:
            made, created = ledger.transfer(req)
        except LedgerUnavailable as exc:
            return _unavailable(region, exc)
        except TransferRefused as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return made if created else JSONResponse(made, status_code=200)

    @r.get(routes.LEDGER_TRANSFERS, response_model=None)
    def latest(limit: int = Query(50, ge=1, le=1000)) -> Any:
        try:
            return {"region": region.name, "transfers": ledger.latest_transfers(limit)}
        except LedgerUnavailable as exc:
            return _unavailable(region, exc)

    @r.get(routes.LEDGER_TRANSFER, response_model=None)
    def one(transfer_id: str) -> Any:
        try:
            found = ledger.get_transfer(transfer_id)
        except LedgerUnavailable as exc:
            return _unavailable(region, exc)
        if found is None:
            raise HTTPException(404, f"no transfer {transfer_id} in {region.name}")
        return found

    @r.get(routes.LEDGER_ACCOUNTS, response_model=None)
    def accounts() -> Any:
        try:
            return {"region": region.name, "accounts": ledger.accounts()}
        except LedgerUnavailable as exc:
            return _unavailable(region, exc)

    @r.post(routes.LEDGER_ACCOUNTS, dependencies=[Depends(tokens.require_admin)], response_model=None)
    def open_accounts(body: AccountsBody) -> Any:
        try:
            balances = {k: Decimal(v) for k, v in body.accounts.items()}
        except InvalidOperation:
            raise HTTPException(422, "every opening balance must be a decimal string") from None
        if any(not b.is_finite() or b < 0 or b >= MAX_AMOUNT or b != b.quantize(Decimal("0.01"))
               for b in balances.values()):
            raise HTTPException(422, f"opening balances must be non-negative, below {MAX_AMOUNT}, with at most two "
                                     "decimals")
        try:
            return {"region": region.name, "created": ledger.open_accounts(balances), "requested": len(balances)}
        except LedgerUnavailable as exc:
            return _unavailable(region, exc)

    @r.get(routes.LEDGER_AUDIT, response_model=None)
    def audit() -> Any:
        try:
            return ledger.audit()
        except LedgerUnavailable as exc:
            return _unavailable(region, exc)

    @r.get(routes.LEDGER_MISSING, response_model=None)
    def missing() -> Any:
        try:
            return {"region": region.name, **ledger.missing()}
        except LedgerUnavailable as exc:
            return _unavailable(region, exc)

    @r.post(routes.LEDGER_MISSING_REAPPLY, dependencies=[Depends(tokens.require_admin)], response_model=None)
    def reapply() -> Any:
        from regionflow.workloads.ledger.ops import LedgerOps

        try:
            return {"region": region.name, **region.service(LedgerOps).reapply_missing()}
        except RegionflowError as exc:
            return _unavailable(region, LedgerUnavailable(str(exc)))

    @r.get(routes.LEDGER_STATUS)
    def status() -> dict[str, Any]:
        return ledger.status()

    return r
