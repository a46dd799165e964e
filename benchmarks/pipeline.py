"""Benchmark: `regionflow process` against a bare polars read -> join -> write of the same data.

Usage: python benchmarks/pipeline.py --rows 1000000 [--chunk-rows N] [--workers N] [--invalid-ratio R]

Both run in this process on the same generated files; the ratio is engine time / baseline time.
Peak RSS covers this process and its worker processes (sampled).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
import psutil

from regionflow.workloads.batch.local import process_file
from regionflow.workloads.batch.pipeline import default_pipeline
from regionflow.workloads.batch.sample import generate


class PeakRss:
    """Samples the RSS of this process and its children every 50 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker may exit between listing and reading
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def baseline(orders: Path, financial: Path, out: Path) -> float:
    started = time.perf_counter()
    left = pl.read_csv(orders, infer_schema=False)
    right = pl.read_csv(financial, infer_schema=False)
    left.join(right, on="uuid", how="inner", maintain_order="left").write_csv(out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=None, help="default: the pipeline's (1000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--invalid-ratio", type=float, default=0.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rf-bench-") as tmp:
        work = Path(tmp)
        data = generate(args.rows, work / "data", invalid_ratio=args.invalid_ratio, seed=7)
        base_s = baseline(data.orders, data.financial, work / "baseline.csv")
        with PeakRss() as rss:
            result = process_file(data.orders, data.financial, work / "engine.csv", pipeline=default_pipeline(),
                                  chunk_rows=args.chunk_rows, workers=args.workers)
        report = {
            "rows": args.rows,
            "chunk_rows": args.chunk_rows or default_pipeline().chunk_rows,
            "workers": args.workers,
            "baseline_seconds": round(base_s, 3),
            "baseline_rows_per_second": round(args.rows / base_s),
            "engine_seconds": round(result.seconds, 3),
            "engine_rows_per_second": round(args.rows / result.seconds),
            "ratio": round(result.seconds / base_s, 2),
            "peak_rss_mib": round(rss.peak / 2**20),
            "rows_ok": result.job.rows_ok,
            "rows_rejected": result.job.rows_rejected,
        }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:26} {value}")


if __name__ == "__main__":
    main()
