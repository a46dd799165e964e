"""The missing-transaction report: what an old primary committed that never reached the new one.

After an unplanned failover the old primary may hold transfers it acknowledged but never streamed. Before
it is rewound (which discards them) it is started fenced — no TCP listener, only a private unix socket —
and every transfer it has that the new primary lacks is copied, with its commit time
(track_commit_timestamp), into missing_transfers on the primary. Comparing transfer ids over the whole
table, rather than from the divergence LSN, keeps the report exact whatever the timeline history says;
it is one indexed scan per node.

Re-applying (optional) commits each missing transfer on the primary under its original transfer id, once:
one already present (same id or idempotency key) is skipped, one that would overdraw is refused; the
result is kept beside the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from psycopg.rows import namedtuple_row

from regionflow.servers.ledger_db import LedgerNode

__all__ = ["MISSING_SQL", "missing_report", "reapply_missing", "record_missing", "report_of"]


def record_missing(old: LedgerNode, primary: LedgerNode, old_region: str) -> dict[str, Any]:
    """Copy into the primary's missing_transfers every transfer old has and primary does not; the report."""
    with old.connect("ledger") as conn:
        rows = conn.execute(
            "select transfer_id, idempotency_key, from_account, to_account, amount, region, "
            "coalesce(pg_xact_commit_timestamp(xmin), committed_at) from transfers").fetchall()
    with primary.connect("ledger") as conn:
        present = {r[0] for r in conn.execute("select transfer_id from transfers").fetchall()}
        missing = [r for r in rows if r[0] not in present]
        with conn.transaction():
            for r in missing:
                conn.execute(
                    "insert into missing_transfers (transfer_id, idempotency_key, from_account, to_account, amount, "
                    "region, committed_at, old_primary) values (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "on conflict (transfer_id) do nothing", (*r, old_region))
    report = missing_report(primary)
    report["found_now"] = len(missing)
    report["old_primary_transfers"] = len(rows)
    return report


MISSING_SQL = "select * from missing_transfers order by committed_at, transfer_id"


def report_of(rows: Sequence[Any]) -> dict[str, Any]:
    """The report of missing_transfers rows (attribute access: SQLAlchemy rows or psycopg namedtuples)."""
    transfers = [{"transfer_id": str(r.transfer_id), "idempotency_key": r.idempotency_key, "from": r.from_account,
                  "to": r.to_account, "amount": f"{r.amount:.2f}", "region": r.region,
                  "committed_at": r.committed_at.isoformat() if r.committed_at else None,
                  "old_primary": r.old_primary, "found_at": r.found_at.isoformat(),
                  "reapplied_at": r.reapplied_at.isoformat() if r.reapplied_at else None,
                  "reapply_result": r.reapply_result} for r in rows]
    return {"count": len(transfers), "amount": f"{sum((r.amount for r in rows), Decimal(0)):.2f}",
            "transfers": transfers}


def missing_report(node: LedgerNode) -> dict[str, Any]:
    """Every recorded missing transfer, oldest commit first, with totals."""
    with node.connect("ledger") as conn:
        rows = conn.cursor(row_factory=namedtuple_row).execute(MISSING_SQL).fetchall()
    return report_of(rows)


def reapply_missing(primary: LedgerNode) -> dict[str, Any]:
    """Commit each not yet re-applied missing transfer on primary (one transaction each); the results."""
    results: dict[str, int] = {"reapplied": 0, "already_present": 0, "refused_overdraw": 0, "refused_account": 0}
    with primary.connect("ledger") as conn:
        pending = conn.execute(
            "select transfer_id, idempotency_key, from_account, to_account, amount, region from missing_transfers "
            "where reapplied_at is null and reapply_result is distinct from 'reapplied' "
            "order by committed_at, transfer_id").fetchall()
        for tid, key, src, dst, amount, region in pending:
            with conn.transaction():
                outcome = _reapply_one(conn, tid, key, src, dst, amount, region)
                conn.execute("update missing_transfers set reapply_result = %s, "
                             "reapplied_at = case when %s in ('reapplied', 'already_present') then clock_timestamp() "
                             "end where transfer_id = %s", (outcome, outcome, tid))
            results[outcome] += 1
    return {**results, "considered": len(pending)}


def _reapply_one(conn: Any, tid: Any, key: str, src: str, dst: str, amount: Decimal, region: str) -> str:
    if conn.execute("select 1 from transfers where transfer_id = %s or idempotency_key = %s",
                    (tid, key)).fetchone():
        return "already_present"
    balances = dict(conn.execute("select id, balance from accounts where id in (%s, %s) order by id for update",
                                 (src, dst)).fetchall())
    if src not in balances or dst not in balances:
        return "refused_account"
    if balances[src] < amount:
        return "refused_overdraw"
    conn.execute("update accounts set balance = balance - %s where id = %s", (amount, src))
    conn.execute("update accounts set balance = balance + %s where id = %s", (amount, dst))
    conn.execute("insert into transfers (transfer_id, idempotency_key, from_account, to_account, amount, region) "
                 "values (%s, %s, %s, %s, %s, %s)", (tid, key, src, dst, amount, region))
    return "reapplied"
