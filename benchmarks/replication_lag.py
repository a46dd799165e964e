"""Benchmark: replication lag from us-east-1 (active) to us-west-2 (standby) under a steady upload load.

Usage: python benchmarks/replication_lag.py --files 50 [--rows 2000] [--interval 0.05] [--timeout 600] [--json]

Method. A fresh two-region stack is started in a temporary directory (`regionflow init`, `up --detach`,
all addresses on loopback), the reference table is loaded and left to replicate (backlog 0) before timing
starts. Then, in one asyncio loop with httpx:

- uploads: --files copies of one generated orders file go through the access point
  (`PUT /objects/input/bench-NNNN.csv`), one started every --interval seconds (fixed schedule);
- sampler: every 0.1 s, us-west-2's `GET /replication`; for the us-east-1 -> us-west-2 direction it
  records backlog = objects + state and lag = max(lag_seconds). These are the replicator's own figures
  as of its last pass, which under load can be seconds old; their age (now - updated_at) is reported too,
  so lag_seconds understates the true lag by up to that age;
- job poller: every 0.05 s, `GET /jobs/{id}` on us-east-1 for each job not yet COMPLETED there, and on
  us-west-2 for each job already COMPLETED on us-east-1 but not yet on us-west-2. A job's time in a region
  is when the poll that first saw COMPLETED returned, so each is late by up to one period plus a request;
  the replication delay of a job is (seen on us-west-2) - (seen on us-east-1). The time a round of polls
  takes is reported, as it bounds the resolution.

Totals: "total" runs from the first upload to the last job seen COMPLETED on us-east-1 (throughput =
files / total). "drain" is the time from that moment to the first sample with backlog 0. The run ends
when every job is COMPLETED in both regions and the backlog has drained, or fails after --timeout.
The stack is always stopped with `regionflow down`.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from regionflow.api import routes
from regionflow.api.wire import auth_header
from regionflow.config import Config, load_config, load_secrets

SOURCE, TARGET = "us-east-1", "us-west-2"
SAMPLE_EVERY, POLL_EVERY = 0.1, 0.05
CLI = str(Path(sys.executable).with_name("regionflow"))


@dataclass
class Run:
    started: float = 0.0
    uploaded: dict[str, float] = field(default_factory=dict)  # job id -> upload returned (s since start)
    east: dict[str, float] = field(default_factory=dict)  # job id -> seen COMPLETED on us-east-1
    west: dict[str, float] = field(default_factory=dict)  # job id -> seen COMPLETED on us-west-2
    failed: dict[str, str] = field(default_factory=dict)  # job id -> region where it FAILED
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (t, backlog, lag)
    ages: list[float] = field(default_factory=list)  # per sample: how old the replicator's figures were
    poll_rounds: list[float] = field(default_factory=list)  # seconds each round of job polls took
    uploads_done: bool = False

    def now(self) -> float:
        return time.monotonic() - self.started


def cli(*args: str, cwd: Path, timeout: float = 120) -> str:
    proc = subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"regionflow {' '.join(args)} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc.stdout


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


def check_loopback(cfg: Config) -> None:
    for url in [cfg.access_point_url, *(cfg.region_url(n) for n in cfg.region_names)]:
        host = httpx.URL(url).host
        if not ipaddress.ip_address(host).is_loopback:
            raise RuntimeError(f"{url} is not a loopback address")


async def direction(http: httpx.AsyncClient, west: str) -> dict:
    resp = await http.get(f"{west}{routes.REPLICATION}")
    resp.raise_for_status()
    return next(d for d in resp.json()["directions"] if d["source"] == SOURCE and d["target"] == TARGET)


async def settle(http: httpx.AsyncClient, west: str, deadline: float) -> None:
    """Wait until the direction is reachable with an empty backlog (the reference table has replicated)."""
    while time.monotonic() < deadline:
        d = await direction(http, west)
        if d["reachable"] and d["backlog"]["objects"] + d["backlog"]["state"] == 0 and d["source_head"] > 0:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("replication did not settle before the load")


async def upload(http: httpx.AsyncClient, ap: str, data: bytes, files: int, interval: float, run: Run) -> None:
    for i in range(files):
        await asyncio.sleep(max(0.0, i * interval - run.now()))
        resp = await http.put(f"{ap}{routes.object_path(f'input/bench-{i:04d}.csv')}", content=data,
                              headers={"content-type": "text/csv"})
        resp.raise_for_status()
        run.uploaded[resp.json()["job_id"]] = run.now()
    run.uploads_done = True


def finished(run: Run, files: int) -> bool:
    done = run.uploads_done and len(run.west) + len(run.failed) >= files
    return done and any(t >= max(run.east.values(), default=0.0) and b == 0 for t, b, _ in run.samples)


async def sample(http: httpx.AsyncClient, west: str, files: int, run: Run) -> None:
    tick = run.now()
    while not finished(run, files):
        d = await direction(http, west)
        run.samples.append((run.now(), d["backlog"]["objects"] + d["backlog"]["state"], max(d["lag_seconds"].values())))
        run.ages.append(max(0.0, time.time() - d["updated_at"]))
        tick += SAMPLE_EVERY
        await asyncio.sleep(max(0.0, tick - run.now()))


async def status(http: httpx.AsyncClient, url: str, job_id: str) -> str | None:
    resp = await http.get(f"{url}{routes.job_path(job_id)}")
    if resp.status_code == 404:  # not replicated yet
        return None
    resp.raise_for_status()
    return resp.json()["status"]


async def poll(http: httpx.AsyncClient, east: str, west: str, files: int, run: Run) -> None:
    tick = run.now()
    while not (run.uploads_done and len(run.west) + len(run.failed) >= files):
        todo = [(SOURCE, east, j) for j in run.uploaded if j not in run.east and j not in run.failed]
        todo += [(TARGET, west, j) for j in run.east if j not in run.west and j not in run.failed]
        began = run.now()
        results = await asyncio.gather(*(status(http, url, j) for _, url, j in todo))
        seen = run.now()
        run.poll_rounds.append(seen - began)
        for (region, _, job_id), st in zip(todo, results, strict=True):
            if st == "COMPLETED":
                (run.east if region == SOURCE else run.west)[job_id] = seen
            elif st == "FAILED":
                run.failed[job_id] = region
        tick += POLL_EVERY
        await asyncio.sleep(max(0.0, tick - run.now()))


async def measure(cfg: Config, data: bytes, args: argparse.Namespace, deadline: float) -> Run:
    token = load_secrets(cfg).api_token
    east, west = cfg.region_url(SOURCE), cfg.region_url(TARGET)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(headers=auth_header(token), timeout=30, limits=limits,
                                 verify=cfg.tls_verify()) as http:
        await settle(http, west, deadline)
        run = Run(started=time.monotonic())
        tasks = [upload(http, cfg.access_point_url, data, args.files, args.interval, run),
                 sample(http, west, args.files, run), poll(http, east, west, args.files, run)]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=deadline - time.monotonic())
        return run


def report(run: Run, files: int, interval: float, rows: int) -> dict:
    last_east = max(run.east.values(), default=None)
    delays = [run.west[j] - run.east[j] for j in run.west if j in run.east]
    lags = [lag for _, _, lag in run.samples]
    drained = next((t for t, b, _ in run.samples if last_east is not None and t >= last_east and b == 0), None)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "files": files, "rows_per_file": rows, "interval_s": interval, "completed": len(run.east),
        "replicated": len(run.west), "failed": len(run.failed),
        "total_s": r(last_east), "throughput_files_per_s": r(files / last_east if last_east else None),
        "all_replicated_s": r(max(run.west.values(), default=None)),
        "samples": len(run.samples),
        "lag_s": {"p50": r(pct(lags, 50)), "p95": r(pct(lags, 95)), "max": r(max(lags, default=None))},
        "status_age_s": {"p50": r(pct(run.ages, 50)), "max": r(max(run.ages, default=None))},
        "backlog_max": max((b for _, b, _ in run.samples), default=None),
        "replication_delay_s": {"p50": r(pct(delays, 50)), "p95": r(pct(delays, 95)),
                                "max": r(max(delays, default=None))},
        "poll_round_s": {"p50": r(pct(run.poll_rounds, 50)), "max": r(max(run.poll_rounds, default=None))},
        "drain_s": r(None if drained is None or last_east is None else drained - last_east),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, required=True)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between upload starts")
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout

    with tempfile.TemporaryDirectory(prefix="rf-replag-") as tmp:
        work = Path(tmp)
        cli("init", "--dir", str(work), cwd=work)
        cfg = load_config(work / "regionflow.toml")
        check_loopback(cfg)
        cli("sample", "--rows", str(args.rows), "--seed", "7", "--out", str(work / "data"), cwd=work)
        try:
            cli("up", "--detach", cwd=work)
            cli("reference", "load", str(work / "data" / "financial_data.csv"), cwd=work)
            data = (work / "data" / "orders.csv").read_bytes()
            run = asyncio.run(measure(cfg, data, args, deadline))
        finally:  # never masks the run's own error
            down = subprocess.run([CLI, "down"], cwd=work, capture_output=True, text=True, timeout=120)
            if down.returncode != 0:
                print(f"regionflow down failed: {down.stderr or down.stdout}", file=sys.stderr)

    result = report(run, args.files, args.interval, args.rows)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"files {result['files']} x {args.rows} rows, one every {args.interval} s; "
          f"completed {result['completed']}, replicated {result['replicated']}, failed {result['failed']}")
    print(f"total {result['total_s']} s (first upload -> last COMPLETED on {SOURCE}), "
          f"throughput {result['throughput_files_per_s']} files/s, all on {TARGET} at {result['all_replicated_s']} s")
    lag, delay = result["lag_s"], result["replication_delay_s"]
    print(f"lag ({result['samples']} samples) p50 {lag['p50']} s, p95 {lag['p95']} s, max {lag['max']} s; "
          f"backlog max {result['backlog_max']}")
    print(f"age of those figures (replicator's updated_at) p50 {result['status_age_s']['p50']} s, "
          f"max {result['status_age_s']['max']} s")
    print(f"replication delay per job p50 {delay['p50']} s, p95 {delay['p95']} s, max {delay['max']} s")
    print(f"job poll round (the delay's resolution, plus {POLL_EVERY} s) p50 {result['poll_round_s']['p50']} s, "
          f"max {result['poll_round_s']['max']} s")
    print(f"backlog drained {result['drain_s']} s after the last job completed on {SOURCE}")


if __name__ == "__main__":
    main()
