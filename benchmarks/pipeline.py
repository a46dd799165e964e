"""Benchmark: `regionflow process` against a bare polars read -> join -> write of the same data.

Usage: python benchmarks/pipeline.py [--rows 400000 1000000] [--repeat 3] [--chunk-rows N] [--workers N]
                                     [--invalid-ratio R] [--json]

Both are whole processes (interpreter start and imports included) run by this script on the same
generated files, best of --repeat each; the ratio is engine time / baseline time. Peak RSS is sampled
over the engine process and its workers. The engine's output is checked against the baseline's rows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from regionflow.workloads.batch.sample import generate

REGIONFLOW = str(Path(sys.executable).with_name("regionflow"))
BASELINE = """
import sys
import polars as pl
orders, financial, out = sys.argv[1:4]
left = pl.read_csv(orders, infer_schema=False)
right = pl.read_csv(financial, infer_schema=False)
left.join(right, on="uuid", how="inner", maintain_order="left").write_csv(out)
"""


class PeakRss:
    """Samples the RSS of a process and its children every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                for proc in [self._proc, *self._proc.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # a worker may exit between listing and reading
                        total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(cmd: list[str]) -> tuple[float, int, str]:
    """(seconds, peak RSS bytes, stdout) of one whole process; exits the benchmark if it fails."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRss(proc.pid) as rss:
        out, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}): {err.strip()[-2000:]}")
    return seconds, rss.peak, out


def rows_of(path: Path) -> bytes:
    """The file without its header line (the baseline names its columns differently)."""
    with path.open("rb") as fh:
        fh.readline()
        return fh.read()


def measure(rows: int, work: Path, args: argparse.Namespace) -> dict:
    data = generate(rows, work / f"data-{rows}", invalid_ratio=args.invalid_ratio, seed=7)
    base_out, engine_out = work / "baseline.csv", work / "engine.csv"
    base = [timed([sys.executable, "-c", BASELINE, str(data.orders), str(data.financial), str(base_out)])[0]
            for _ in range(args.repeat)]
    cmd = [REGIONFLOW, "process", str(data.orders), "--reference", str(data.financial), "--out", str(engine_out),
           "--json"]
    if args.chunk_rows:
        cmd += ["--chunk-rows", str(args.chunk_rows)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    runs = [timed(cmd) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r[0])
    summary = json.loads(best[2])
    same = args.invalid_ratio == 0 and rows_of(base_out) == rows_of(engine_out)
    base_s = min(base)
    return {
        "rows": rows,
        "workers": args.workers or 2,
        "chunk_rows": args.chunk_rows or "auto",
        "chunks": summary["chunks"],
        "baseline_seconds": round(base_s, 3),
        "baseline_rows_per_second": round(rows / base_s),
        "engine_seconds": round(best[0], 3),
        "engine_rows_per_second": round(rows / best[0]),
        "ratio": round(best[0] / base_s, 2),
        "engine_peak_rss_mib": round(max(r[1] for r in runs) / 2**20),
        "rows_ok": summary["rows_ok"],
        "rows_rejected": summary["rows_rejected"],
        "output_equals_baseline": same if args.invalid_ratio == 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[400_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=None, help="default: sized from the file")
    parser.add_argument("--workers", type=int, default=None, help="default: the CLI's (2)")
    parser.add_argument("--invalid-ratio", type=float, default=0.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    reports = []
    with tempfile.TemporaryDirectory(prefix="rf-bench-") as tmp:
        for rows in args.rows:
            report = measure(rows, Path(tmp), args)
            reports.append(report)
            if not args.json:
                for key, value in report.items():
                    print(f"{key:26} {value}")
                print()
    if args.json:
        print(json.dumps(reports))


if __name__ == "__main__":
    main()
