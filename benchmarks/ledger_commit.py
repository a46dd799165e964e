"""Benchmark: the ledger's commit latency, asynchronous replication against synchronous (remote_apply).

Usage: python benchmarks/ledger_commit.py [--transfers 2000] [--concurrency 8] [--json]

Method. A ledger primary and its streaming standby (servers/ledger_db.py, the nodes `regionflow up` runs)
are started on loopback ports in a temporary directory, with the ledger's schema, login and secret. The
same LedgerService transfer path the gateway runs (lock both accounts, check the balance, insert the
transfer, commit) is then timed in this process, first with the standby asynchronous (the default: a commit
returns once the primary has flushed it), then synchronous (`[ledger] synchronous = true`: the commit
returns once the standby has applied it). Each mode runs --transfers sequential transfers (commit
latency p50/p95/p99) and as many at --concurrency (throughput). The baseline is the asynchronous run in the
same process; the ratio is synchronous / asynchronous. Both nodes run on this machine, so the synchronous
cost shown is the loopback round trip plus the standby's apply, not a network's distance between regions.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from regionflow.polling import poll_until  # noqa: E402
from regionflow.servers.ledger_db import LedgerNode  # noqa: E402
from regionflow.servers.ports import free_ports  # noqa: E402
from regionflow.servers.runner import start_server, stop_server, wait_servers_healthy  # noqa: E402
from regionflow.workloads.ledger.schema import SCHEMA, create_app_role  # noqa: E402
from regionflow.workloads.ledger.secret import LedgerSecret, write_secret  # noqa: E402
from regionflow.workloads.ledger.service import LedgerService, TransferRequest  # noqa: E402

ACCOUNTS = 64


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)


def _run(service: LedgerService, transfers: int, concurrency: int) -> dict:
    ids = [f"bench-{i:03d}" for i in range(ACCOUNTS)]
    latencies: list[float] = []
    for i in range(transfers):
        req = TransferRequest(ids[i % ACCOUNTS], ids[(i + 1) % ACCOUNTS], Decimal("0.01"), str(uuid.uuid4()))
        started = time.perf_counter()
        service.transfer(req)
        latencies.append(time.perf_counter() - started)
    counter = iter(range(transfers))
    lock = threading.Lock()

    def worker(w: int) -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            # Each worker its own pair of accounts: the figure is commit cost, not lock contention.
            a, b = ids[(2 * w) % ACCOUNTS], ids[(2 * w + 1) % ACCOUNTS]
            service.transfer(TransferRequest(a, b, Decimal("0.01"), str(uuid.uuid4())))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    return {"sequential_ms": {"mean": round(1000 * statistics.fmean(latencies), 3), "p50": _pct(latencies, 0.5),
                              "p95": _pct(latencies, 0.95), "p99": _pct(latencies, 0.99)},
            "concurrent_transfers_per_second": round(transfers / seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transfers", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="regionflow-bench-ledger-"))
    base.chmod(0o711)  # the nodes run as the postgres user
    password = secrets.token_urlsafe(18)
    east_port, west_port = free_ports(2)
    east = LedgerNode("bench-east", "us-east-1", base / "east", port=east_port, password=password)
    west = LedgerNode("bench-west", "us-west-2", base / "west", port=west_port, password=password,
                      upstream_port=east_port, upstream_name="bench-east")
    run, logs = base / "run", base / "logs"
    service = None
    try:
        for node in (east, west):
            wait_servers_healthy([start_server(node, run, logs)], timeout=120)
        with east.connect("ledger") as conn, conn.transaction():
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute("insert into accounts (id, balance) select 'bench-' || lpad(i::text, 3, '0'), 1000000 "
                         f"from generate_series(0, {ACCOUNTS - 1}) i")
        user, app_password = create_app_role(east, 1)
        secret_file = base / "secret.json"
        write_secret(secret_file, LedgerSecret(version=1, primary_region="us-east-1", host="127.0.0.1",
                                               port=east_port, user=user, password=app_password))
        service = LedgerService("us-east-1", east_port, secret_file, lambda: ("us-east-1", 1))
        results = {}
        for mode in ("asynchronous", "synchronous"):
            east.set_synchronous("us-west-2" if mode == "synchronous" else None)
            expected = [("sync",)] if mode == "synchronous" else [("async",)]

            def ready(expected: list = expected) -> bool:
                with east.connect() as conn:
                    return conn.execute("select sync_state from pg_stat_replication").fetchall() == expected

            poll_until(ready, timeout=30, what=f"the standby to be {mode}")
            _run(service, min(200, args.transfers), args.concurrency)  # warm the pool and the caches
            results[mode] = _run(service, args.transfers, args.concurrency)
        sync, async_ = results["synchronous"], results["asynchronous"]
        ratio = round(sync["sequential_ms"]["mean"] / async_["sequential_ms"]["mean"], 2)
        throughput_ratio = round(results["synchronous"]["concurrent_transfers_per_second"]
                                 / results["asynchronous"]["concurrent_transfers_per_second"], 2)
        report = {"transfers": args.transfers, "concurrency": args.concurrency, "cpus": os.cpu_count(), **results,
                  "latency_ratio_sync_over_async": ratio, "throughput_ratio_sync_over_async": throughput_ratio}
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            for mode in ("asynchronous", "synchronous"):
                r = results[mode]
                print(f"{mode:>12}: commit mean {r['sequential_ms']['mean']} ms, p50 {r['sequential_ms']['p50']} ms, "
                      f"p95 {r['sequential_ms']['p95']} ms, p99 {r['sequential_ms']['p99']} ms; "
                      f"{r['concurrent_transfers_per_second']} transfers/s at {args.concurrency} concurrent")
            print(f"synchronous / asynchronous: latency x{ratio}, throughput x{throughput_ratio}")
        return 0
    finally:
        if service is not None:
            service.close()
        for node in (west, east):
            stop_server(run, node.name, kill=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
