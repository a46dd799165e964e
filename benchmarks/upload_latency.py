"""Benchmark: what sync upload replication costs, against async uploads measured in the same run.

Usage: python benchmarks/upload_latency.py [--files 50] [--kib 100] [--json]

Method. One two-region stack in a temporary directory (`regionflow init`, loopback addresses). For each
mode, async first (the baseline) then sync, the stack is started with `[replication] uploads = MODE`
(`up --detach`), --files objects of --kib KiB are PUT one after the other straight to us-east-1's gateway
(`/objects/bench/NNNN.bin`: not under input/, so no job competes with the uploads), each timed from
request to answer with httpx, then the stack is stopped (`down`). In sync mode every answer must say
us-west-2 confirmed it (otherwise the run is reported as invalid: it measured the fallback). Printed:
p50, p95 and mean latency per mode and the sync/async ratio of each.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from regionflow.api import routes
from regionflow.api.wire import auth_header
from regionflow.config import load_config, load_secrets

CLI = str(Path(sys.executable).with_name("regionflow"))
SOURCE, PEER = "us-east-1", "us-west-2"


def _rf(root: Path, *args: str) -> None:
    subprocess.run([CLI, *args], cwd=root, check=True, capture_output=True, text=True, timeout=180)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(root: Path, mode: str, files: int, kib: int) -> dict:
    path = root / "regionflow.toml"
    path.write_text(re.sub(r'^uploads = .*$', f'uploads = "{mode}"', path.read_text(), flags=re.MULTILINE))
    config = load_config(path)
    token = load_secrets(config).api_token
    body = os.urandom(kib * 1024)
    _rf(root, "up", "--detach")
    try:
        latencies, unconfirmed = [], 0
        with httpx.Client(base_url=config.region_url(SOURCE), headers=auth_header(token), timeout=60) as http:
            for i in range(files):
                t0 = time.perf_counter()
                resp = http.put(routes.object_path(f"bench/{mode}-{i:04d}.bin"), content=body)
                latencies.append(time.perf_counter() - t0)
                resp.raise_for_status()
                if mode == "sync" and resp.json()["replication"].get("confirmed_by") != [PEER]:
                    unconfirmed += 1
    finally:
        _rf(root, "down")
    return {"mode": mode, "files": files, "kib": kib, "p50_ms": _percentile(latencies, 0.5) * 1000,
            "p95_ms": _percentile(latencies, 0.95) * 1000, "mean_ms": statistics.fmean(latencies) * 1000,
            "unconfirmed": unconfirmed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--kib", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rf-upload-bench-") as tmp:
        root = Path(tmp)
        _rf(root, "init", "--dir", ".")
        baseline = measure(root, "async", args.files, args.kib)
        sync = measure(root, "sync", args.files, args.kib)
    ratios = {k: sync[k] / baseline[k] for k in ("p50_ms", "p95_ms", "mean_ms")}
    result = {"async": baseline, "sync": sync, "ratio_sync_over_async": ratios,
              "valid": sync["unconfirmed"] == 0}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for r in (baseline, sync):
            print(f"{r['mode']:>5}: p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms  mean {r['mean_ms']:.1f} ms"
                  f"  ({r['files']} uploads of {r['kib']} KiB)")
        print("sync / async: " + "  ".join(f"{k.removesuffix('_ms')} {v:.2f}x" for k, v in ratios.items()))
        if not result["valid"]:
            print(f"warning: {sync['unconfirmed']} sync uploads fell back to lagging; this measured the fallback")
    return 0 if result["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
