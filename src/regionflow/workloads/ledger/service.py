"""The ledger service of one region: money transfers between accounts on the ledger's PostgreSQL.

Every transfer is one transaction on the database primary: both accounts locked in id order (two
transfers in opposite directions cannot deadlock), the debit refused if it would make the balance
negative (the CHECK in the schema refuses it too), the transfer row inserted under its unique idempotency
key. A retry with the same key returns the first transfer, whichever region it reaches.

A region writes only when all of these hold, and otherwise answers with a reason (HTTP 503): it is the
active region of the routing control; the ledger secret names it as the database primary and does not
hold writes; and the database it reaches says it is not in recovery, inside the same transaction (a
standby, or a fenced old primary with no TCP listener, can therefore never take a write). Reads come
from the region's own node, a standby included.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from regionflow.errors import RegionflowError
from regionflow.workloads.ledger.secret import LedgerSecret, SecretWatcher

__all__ = ["LedgerService", "LedgerUnavailable", "TransferRefused", "TransferRequest"]



class LedgerUnavailable(RegionflowError):
    """This region cannot serve the request now (not the primary, writes held, database unreachable)."""


class TransferRefused(RegionflowError):
    """The transfer is not valid: unknown account, insufficient funds, key reused for another transfer."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TransferRequest:
    from_account: str
    to_account: str
    amount: Decimal
    idempotency_key: str


def _row(r: Any) -> dict[str, Any]:
    return {"transfer_id": str(r.transfer_id), "from": r.from_account, "to": r.to_account,
            "amount": f"{r.amount:.2f}", "idempotency_key": r.idempotency_key, "region": r.region,
            "committed_at": r.committed_at.isoformat()}


class LedgerService:
    """Transfers, balances and the audit of one region (see the module docstring for when it writes)."""

    def __init__(self, region: str, local_port: int, secret_file: Any, owner: Callable[[], tuple[str, int]],
                 *, observe: Callable[[str, float], None] | None = None):
        self.region = region
        self.local_port = local_port
        self.secrets = SecretWatcher(secret_file)
        self.owner = owner
        self.observe = observe or (lambda _outcome, _seconds: None)
        self._lock = threading.Lock()
        self._engines: dict[tuple[int, str, int], Engine] = {}

    # -- connections -------------------------------------------------------------------------------
    def _secret(self) -> LedgerSecret:
        secret = self.secrets.current()
        if secret is None:
            raise LedgerUnavailable("the ledger is not set up yet (no database secret): start it with `regionflow up`")
        return secret

    def _engine(self, secret: LedgerSecret, host: str, port: int) -> Engine:
        key = (secret.version, host, port)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                # A new secret (rotation, failover): drop the pools of older ones, their logins are retired.
                for old_key in [k for k in self._engines if k[0] != secret.version]:
                    self._engines.pop(old_key).dispose()
                url = URL.create("postgresql+psycopg", username=secret.user, password=secret.password, host=host,
                                 port=port, database=secret.database)
                engine = sa.create_engine(url, pool_size=5, max_overflow=20, pool_pre_ping=True, pool_timeout=10,
                                          connect_args={"connect_timeout": 3, "application_name": f"regionflow-"
                                                        f"{self.region}"})
                self._engines[key] = engine
            return engine

    def secret_version(self) -> int | None:
        secret = self.secrets.current()
        return secret.version if secret else None

    def write_refusal(self) -> str | None:
        """Why this region may not write now (None: it may, subject to the database's own check)."""
        active, _ = self.owner()
        secret = self.secrets.current()
        if secret is None:
            return "the ledger is not set up yet (no database secret): start it with `regionflow up`"
        if active != self.region:
            return f"{self.region} is not the active region ({active} is): send writes to the access point"
        if secret.primary_region != self.region:
            return f"the ledger's database primary is in {secret.primary_region}, not in {self.region}"
        if not secret.writable:
            return "writes are held while the ledger database switches over; retry in a few seconds"
        return None

    def _reader(self) -> Engine:
        return self._engine(self._secret(), "127.0.0.1", self.local_port)

    # -- writes ------------------------------------------------------------------------------------
    def transfer(self, req: TransferRequest) -> tuple[dict[str, Any], bool]:
        """Commit req (or find the transfer its idempotency key already made): (transfer, created)."""
        refusal = self.write_refusal()
        if refusal:
            raise LedgerUnavailable(refusal)
        secret = self._secret()
        if req.from_account == req.to_account:
            raise TransferRefused("from and to are the same account", 422)
        started = time.perf_counter()
        try:
            with self._engine(secret, secret.host, secret.port).connect() as conn:
                result = self._transfer_txn(conn, req)
        except IntegrityError:
            # The same key committed by a concurrent request between our lookup and our insert.
            with self._engine(secret, secret.host, secret.port).connect() as conn:
                existing = self._by_key(conn, req)
            if existing is None:
                raise
            result = (existing, False)
        except (OperationalError, DBAPIError) as exc:
            self.observe("unavailable", time.perf_counter() - started)
            raise LedgerUnavailable(f"the ledger database at {secret.host}:{secret.port} cannot take the transfer: "
                                    f"{_reason(exc)}") from None
        self.observe("created" if result[1] else "repeated", time.perf_counter() - started)
        return result

    def _by_key(self, conn: Connection, req: TransferRequest) -> dict[str, Any] | None:
        r = conn.execute(sa.text("select * from transfers where idempotency_key = :k"),
                         {"k": req.idempotency_key}).first()
        if r is None:
            return None
        if (r.from_account, r.to_account, r.amount) != (req.from_account, req.to_account, req.amount):
            raise TransferRefused(f"idempotency key {req.idempotency_key!r} was used for another transfer "
                                  f"({r.transfer_id})", 409)
        return _row(r)

    def _transfer_txn(self, conn: Connection, req: TransferRequest) -> tuple[dict[str, Any], bool]:
        with conn.begin():
            standby = conn.execute(sa.text("select pg_is_in_recovery()")).scalar()
            if standby:
                raise LedgerUnavailable("the ledger database this region reaches is a standby (read-only); "
                                        "writes wait for the failover to promote it")
            existing = self._by_key(conn, req)
            if existing is not None:
                return existing, False
            accounts = {r.id: r.balance for r in conn.execute(
                sa.text("select id, balance from accounts where id in (:a, :b) order by id for update"),
                {"a": req.from_account, "b": req.to_account})}
            for account in (req.from_account, req.to_account):
                if account not in accounts:
                    raise TransferRefused(f"no account {account!r}", 404)
            if accounts[req.from_account] < req.amount:
                raise TransferRefused(f"insufficient funds: {req.from_account} has {accounts[req.from_account]:.2f}, "
                                      f"the transfer needs {req.amount:.2f}", 422)
            conn.execute(sa.text("update accounts set balance = balance - :amt where id = :id"),
                         {"amt": req.amount, "id": req.from_account})
            conn.execute(sa.text("update accounts set balance = balance + :amt where id = :id"),
                         {"amt": req.amount, "id": req.to_account})
            r = conn.execute(sa.text(
                "insert into transfers (transfer_id, idempotency_key, from_account, to_account, amount, region) "
                "values (:id, :k, :f, :t, :amt, :region) returning *"),
                {"id": uuid.uuid4(), "k": req.idempotency_key, "f": req.from_account, "t": req.to_account,
                 "amt": req.amount, "region": self.region}).one()
        # Returned only now: the commit above has returned (and with synchronous mode, the standby applied it).
        return _row(r), True

    def open_accounts(self, balances: dict[str, Decimal]) -> int:
        """Create accounts with opening balances (existing ids are left as they are); how many were new."""
        refusal = self.write_refusal()
        if refusal:
            raise LedgerUnavailable(refusal)
        secret = self._secret()
        try:
            with self._engine(secret, secret.host, secret.port).begin() as conn:
                if conn.execute(sa.text("select pg_is_in_recovery()")).scalar():
                    raise LedgerUnavailable("the ledger database this region reaches is a standby (read-only)")
                created = 0
                for account, balance in balances.items():
                    created += conn.execute(sa.text(
                        "insert into accounts (id, balance) values (:id, :b) on conflict (id) do nothing"),
                        {"id": account, "b": balance}).rowcount
                return created
        except (OperationalError, DBAPIError) as exc:
            raise LedgerUnavailable(f"the ledger database cannot take the accounts: {_reason(exc)}") from None

    # -- reads -------------------------------------------------------------------------------------
    def _read(self, fn: Callable[[Connection], Any]) -> Any:
        try:
            with self._reader().connect() as conn:
                return fn(conn)
        except (OperationalError, DBAPIError) as exc:
            raise LedgerUnavailable(f"the ledger database of {self.region} cannot be read: {_reason(exc)}") from None

    def get_transfer(self, transfer_id: str) -> dict[str, Any] | None:
        try:
            tid = uuid.UUID(transfer_id)
        except ValueError:
            return None
        r = self._read(lambda c: c.execute(sa.text("select * from transfers where transfer_id = :id"),
                                           {"id": tid}).first())
        return None if r is None else _row(r)

    def latest_transfers(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._read(lambda c: c.execute(sa.text(
            "select * from transfers order by committed_at desc, transfer_id limit :n"), {"n": limit}).all())
        return [_row(r) for r in rows]

    def accounts(self) -> list[dict[str, Any]]:
        rows = self._read(lambda c: c.execute(sa.text("select id, balance from accounts order by id")).all())
        return [{"id": r.id, "balance": f"{r.balance:.2f}"} for r in rows]

    def audit(self) -> dict[str, Any]:
        """Every account and transfer with the total balance, read in one snapshot."""
        def read(c: Connection) -> dict[str, Any]:
            c.execute(sa.text("set transaction isolation level repeatable read"))
            accounts = c.execute(sa.text("select id, balance from accounts order by id")).all()
            transfers = c.execute(sa.text("select * from transfers order by committed_at, transfer_id")).all()
            return {"region": self.region,
                    "accounts": [{"id": r.id, "balance": f"{r.balance:.2f}"} for r in accounts],
                    "transfers": [_row(r) for r in transfers],
                    "total_balance": f"{sum((r.balance for r in accounts), Decimal(0)):.2f}",
                    "transfer_count": len(transfers)}

        def in_txn(c: Connection) -> dict[str, Any]:
            with c.begin():
                return read(c)

        return self._read(in_txn)

    def missing(self) -> dict[str, Any]:
        """The missing-transaction report as recorded on the primary (read from this region's node)."""
        from regionflow.workloads.ledger.missing import MISSING_SQL, report_of

        return self._read(lambda c: report_of(c.execute(sa.text(MISSING_SQL)).all()))

    def node_view(self) -> dict[str, Any]:
        """What the region's own node says: role and positions (reachable: False when it cannot be asked)."""
        def ask(c: Connection) -> dict[str, Any]:
            r = c.execute(sa.text(
                "select pg_is_in_recovery() as standby, "
                "case when pg_is_in_recovery() then null else pg_current_wal_lsn()::text end as current_lsn, "
                "pg_last_wal_replay_lsn()::text as replay_lsn, "
                "case when pg_is_in_recovery() and pg_last_wal_receive_lsn() <> pg_last_wal_replay_lsn() "
                "then extract(epoch from now() - pg_last_xact_replay_timestamp()) else 0 end as lag_seconds")).one()
            return {"reachable": True, "role": "standby" if r.standby else "primary", "current_lsn": r.current_lsn,
                    "replay_lsn": r.replay_lsn, "replay_lag_seconds": float(r.lag_seconds or 0)}

        try:
            return self._read(ask)
        except (LedgerUnavailable, SQLAlchemyError) as exc:
            return {"reachable": False, "reason": str(exc)}

    def status(self) -> dict[str, Any]:
        secret = self.secrets.current()
        refusal = self.write_refusal()
        return {"region": self.region, "secret_version": secret.version if secret else None,
                "primary_region": secret.primary_region if secret else None,
                "writable": bool(secret and secret.writable), "serves_writes": refusal is None,
                "reason": refusal, "node": self.node_view()}

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
