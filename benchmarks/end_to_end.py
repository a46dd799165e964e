"""Benchmark: one file through a two-region stack, against a bare polars read -> join -> write of it.

Usage: python benchmarks/end_to_end.py [--rows 1000000] [--json]

Method. A two-region stack on the embedded defaults (`regionflow init`, `up --detach`) in a temporary
directory; the reference table is loaded and replicated first (not timed). The clock starts when the
file's upload to the access point starts (httpx PUT of input/NAME) and stops (1) when the active region
reports the job COMPLETED and (2) when the standby reports it COMPLETED with its output object present
(both polled every 20 ms with httpx). The baseline is a whole `python -c` polars process on the same files,
best of 3, in the same run. Printed: both times, their ratios to the baseline, rows/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from regionflow.api import routes
from regionflow.api.wire import auth_header
from regionflow.config import load_config, load_secrets
from regionflow.workloads.batch.sample import generate

sys.path.insert(0, str(Path(__file__).parent))
from pipeline import BASELINE, REGIONFLOW, timed  # noqa: E402  (the sibling benchmark's helpers)

ACTIVE, STANDBY = "us-east-1", "us-west-2"


def _rf(root: Path, *args: str, timeout: float = 300) -> str:
    done = subprocess.run([REGIONFLOW, *args], cwd=root, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"regionflow {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _until(predicate, timeout: float) -> float:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.perf_counter()
        time.sleep(0.02)
    sys.exit(f"timed out after {timeout:.0f} s")


def measure(rows: int, root: Path) -> dict:
    data = generate(rows, root / "data", seed=7)
    base_s = min(timed([sys.executable, "-c", BASELINE, str(data.orders), str(data.financial),
                        str(root / "baseline.csv")])[0] for _ in range(3))
    _rf(root, "init", "--dir", str(root / "stack"))
    stack = root / "stack"
    _rf(stack, "up", "--detach")
    try:
        _rf(stack, "reference", "load", str(data.financial))
        config = load_config(stack / "regionflow.toml")
        headers = auth_header(load_secrets(config).api_token)
        regions = {name: httpx.Client(base_url=config.region_url(name), headers=headers, timeout=30)
                   for name in (ACTIVE, STANDBY)}

        since = time.time()

        def drained() -> bool:  # the reference table (and everything else) has reached the standby
            directions = regions[STANDBY].get(routes.REPLICATION).json()["directions"]
            return bool(directions) and all(d["updated_at"] > since and not any(d["backlog"].values())
                                            for d in directions)

        _until(drained, 120)
        body = data.orders.read_bytes()
        key = "input/e2e.csv"
        with httpx.Client(base_url=config.access_point_url, headers=headers, timeout=300) as ap:
            started = time.perf_counter()
            ap.put(routes.object_path(key), content=body).raise_for_status()
        uploaded = time.perf_counter()

        def job_in(region: str) -> dict | None:
            answer = regions[region].get(routes.JOBS)
            jobs = [j for j in answer.json().get("jobs", []) if j["input_key"] == key] if answer.is_success else []
            return jobs[0] if jobs else None

        def completed(region: str) -> bool:
            job = job_in(region)
            if not job or job["status"] != "COMPLETED":
                return False
            if region == ACTIVE:
                return True
            return regions[region].head(routes.object_path(job["output_key"])).status_code == 200

        active_done = _until(lambda: completed(ACTIVE), 600)
        standby_done = _until(lambda: completed(STANDBY), 600)
        job = job_in(ACTIVE) or {}
    finally:
        _rf(stack, "down")
    active_s, standby_s = active_done - started, standby_done - started
    return {
        "rows": rows,
        "baseline_seconds": round(base_s, 3),
        "upload_seconds": round(uploaded - started, 3),
        "active_completed_seconds": round(active_s, 3),
        "active_ratio": round(active_s / base_s, 2),
        "standby_completed_seconds": round(standby_s, 3),
        "standby_ratio": round(standby_s / base_s, 2),
        "active_rows_per_second": round(rows / active_s),
        "rows_ok": job.get("rows_ok"),
        "rows_rejected": job.get("rows_rejected"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rf-e2e-") as tmp:
        report = measure(args.rows, Path(tmp))
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k:28} {v}")


if __name__ == "__main__":
    main()
