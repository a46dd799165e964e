"""The engine end to end: reference output, the CLI, and crash-resume at every step."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from batchkit import independent_join
from regionflow.crashpoints import CRASH_EXIT_CODE
from regionflow.state import open_state_store
from regionflow.state.base import JobStatus
from regionflow.workloads.batch.pipeline import default_pipeline
from regionflow.workloads.batch.split import ChunkCut, auto_chunk_bytes, split_stream
from testenv import REGIONFLOW

OUTPUT_HEADER = ("uuid,Country,Item Type,Sales Channel,Order Priority,Order Date,Region,Ship Date,Units Sold,"
                 "Unit Price,Unit Cost,Total Revenue,Total Cost,Total Profit")


def rf(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([REGIONFLOW, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_reference_file_matches_an_independent_join(reference_data, tmp_path):
    fin = os.path.join(reference_data, "financial_data.csv")
    src = os.path.join(reference_data, "testfile.csv")
    out = tmp_path / "out.csv"
    result = rf("process", src, "--reference", fin, "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows_in"], summary["rows_ok"], summary["rows_rejected"]) == (10000, 10000, 0)
    # no --chunk-rows: chunks are cut by bytes, sized from the file for the default two workers
    with open(src, "rb") as fh:
        cut = ChunkCut(bytes=auto_chunk_bytes(os.path.getsize(src), 2))
        expected_chunks = split_stream(fh, default_pipeline(), cut)
    assert summary["chunks"] == len(expected_chunks.chunks) >= 1
    for key in ("seconds", "rows_per_second"):
        assert summary[key] > 0
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == OUTPUT_HEADER
    expected = independent_join(Path(src).read_text(encoding="utf-8"), Path(fin).read_text(encoding="utf-8"))
    assert len(expected) == 10000
    assert list(csv.reader(io.StringIO(text)))[1:] == expected
    # byte for byte what a plain csv writer produces: values copied through as text
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([OUTPUT_HEADER.split(","), *expected])
    assert text == buf.getvalue()


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    result = rf("sample", "--rows", "5000", "--invalid-ratio", "0.1", "--seed", "5", "--out", str(d), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["invalid_rows"] == 500
    return d


@pytest.fixture(scope="module")
def clean_run(sample, tmp_path_factory):
    d = tmp_path_factory.mktemp("clean")
    result = rf("process", str(sample / "orders.csv"), "--reference", str(sample / "financial_data.csv"),
                "--out", str(d / "out.csv"), "--rejects", str(d / "rejects.csv"), "--chunk-rows", "400", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), (d / "out.csv").read_bytes(), (d / "rejects.csv").read_text()


def test_sample_rejects_cover_every_kind(clean_run):
    summary, output, rejects = clean_run
    assert summary["rows_in"] == 5000
    assert summary["rows_in"] == summary["rows_ok"] + summary["rows_rejected"]
    assert summary["rows_rejected"] == 500
    rows = list(csv.DictReader(io.StringIO(rejects)))
    assert len(rows) == 500
    reasons = {r["reason"].split(":")[0] for r in rows}
    assert reasons == {"field count", "schema", "enrichment"}
    assert len({r["row"] for r in rows}) == 500  # no reject recorded twice
    assert len(output.decode().splitlines()) == 1 + summary["rows_ok"]


def test_bad_files_are_refused_with_one_line_and_no_output(tmp_path, sample):
    cases = {
        "empty.csv": b"",
        "nohead.csv": b"\n\n",
        "missing.csv": b"uuid,Country\n1,x\n",
        "latin1.csv": "uuid,Country,Item Type,Sales Channel,Order Priority,Order Date,Region,Ship Date\n"
                      "1,Côte,a,b,c,d,e,f\n".encode("latin-1"),
        "binary.csv": bytes(range(256)),
    }
    for name, data in cases.items():
        src = tmp_path / name
        src.write_bytes(data)
        out = tmp_path / f"{name}.out"
        result = rf("process", str(src), "--reference", str(sample / "financial_data.csv"), "--out", str(out))
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        assert len(lines) <= 2 and "error" in result.stderr.lower(), result.stderr
        assert not out.exists(), name


def test_usage_errors_are_clear(tmp_path, sample):
    result = rf("process", str(tmp_path / "nope.csv"), "--reference", str(sample / "financial_data.csv"),
                "--out", str(tmp_path / "o.csv"))
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr
    result = rf("process", str(sample / "orders.csv"), "--out", str(tmp_path / "o.csv"))
    assert result.returncode == 2 and "--reference" in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nfields = {a = "A"}\nschema = {type = "object"}\noutput = {B = "b"}\n')
    result = rf("pipeline", "validate", str(bad))
    assert result.returncode == 1 and "output.B" in result.stderr


def _check_resumed(state_dir: Path, out: Path, clean_run, expect_attempts_over_one: bool = False):
    summary, output, _rejects = clean_run
    assert out.read_bytes() == output  # byte-identical to an uninterrupted run
    state = open_state_store(f"sqlite:///{state_dir / 'state.db'}", "local")
    try:
        jobs = state.list_jobs()
        assert len(jobs) == 1
        job = jobs[0]
        assert job.status == JobStatus.COMPLETED
        assert job.rows_in == job.rows_ok + job.rows_rejected == summary["rows_in"]
        assert (job.rows_ok, job.rows_rejected) == (summary["rows_ok"], summary["rows_rejected"])
        rejects = state.list_rejects(job.job_id)
        assert len(rejects) == summary["rows_rejected"] == len({r.row_no for r in rejects})
        assert len(state.list_notifications()) == 1
        chunks = state.list_chunks(job.job_id)
        if expect_attempts_over_one:
            assert max(c.attempts for c in chunks) >= 2
    finally:
        state.close()
    outbox = list((state_dir / "outbox").glob("*.eml"))
    assert len(outbox) == 1
    assert not list((state_dir / "outbox").glob(".partial/*"))  # a send the crash cut short left nothing
    assert f"Rows ok:       {summary['rows_ok']}" in outbox[0].read_text()


CRASH_POINTS = [
    "split:chunks_written", "split:chunks_recorded", "split:done", "chunk_recorded:3",
    "process:all_chunks_done", "merge:midway", "merge:written", "notify:before_send", "outbox:partial_written",
    "notify:sent", "complete:archived",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_between_and_inside_steps_resumes_to_the_same_output(point, sample, clean_run, tmp_path):
    state_dir, out = tmp_path / "state", tmp_path / "out.csv"
    args = ["process", str(sample / "orders.csv"), "--reference", str(sample / "financial_data.csv"),
            "--out", str(out), "--chunk-rows", "400", "--state-dir", str(state_dir), "--json"]
    crashed = rf(*args, env={"REGIONFLOW_CRASH_AT": point, "REGIONFLOW_CRASH_MARKERS": str(tmp_path / "m")})
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    assert not out.exists()
    resumed = rf(*args)
    assert resumed.returncode == 0, resumed.stderr
    _check_resumed(state_dir, out, clean_run)


@pytest.mark.parametrize("point", ["chunk:0", "chunk_recorded:0", "merge:written", "complete:archived"])
def test_a_one_chunk_job_writes_its_output_from_the_chunk_and_resumes_after_a_crash(point, sample, clean_run,
                                                                                       tmp_path):
    state_dir, out = tmp_path / "state", tmp_path / "out.csv"
    # no --chunk-rows: the 5,000-row sample is one chunk, whose task writes the job's output itself
    args = ["process", str(sample / "orders.csv"), "--reference", str(sample / "financial_data.csv"),
            "--out", str(out), "--workers", "2", "--executor", "processes", "--state-dir", str(state_dir)]
    crashed = rf(*args, env={"REGIONFLOW_CRASH_AT": point, "REGIONFLOW_CRASH_MARKERS": str(tmp_path / "m")})
    assert (tmp_path / "m" / point.replace(":", "_")).exists()  # it really crashed there
    # a worker that dies is replaced and its chunk retried in the same run; the engine dying ends the run
    assert crashed.returncode == (0 if point == "chunk:0" else CRASH_EXIT_CODE), crashed.stderr
    if crashed.returncode:
        resumed = rf(*args)
        assert resumed.returncode == 0, resumed.stderr
    _check_resumed(state_dir, out, clean_run)
    bucket = state_dir / "bucket"
    assert not list((bucket / "meta").glob("work/**/*.json"))  # no chunk output: nothing was composed
    [meta] = (bucket / "meta" / "output" / "completed").glob("*.json")
    metadata = json.loads(meta.read_text())["metadata"]
    assert set(metadata) == {"job", "rows"} and metadata["rows"] == str(clean_run[0]["rows_ok"])


def test_killed_worker_process_is_replaced_and_its_chunk_retried(sample, clean_run, tmp_path):
    state_dir, out = tmp_path / "state", tmp_path / "out.csv"
    result = rf("process", str(sample / "orders.csv"), "--reference", str(sample / "financial_data.csv"),
                "--out", str(out), "--chunk-rows", "400", "--workers", "2", "--executor", "processes",
                "--state-dir", str(state_dir),
                env={"REGIONFLOW_CRASH_AT": "chunk:4", "REGIONFLOW_CRASH_MARKERS": str(tmp_path / "m")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m" / "chunk_4").exists()  # the worker really died there
    _check_resumed(state_dir, out, clean_run, expect_attempts_over_one=True)


def test_inline_worker_crash_kills_the_run_and_a_rerun_resumes(sample, clean_run, tmp_path):
    state_dir, out = tmp_path / "state", tmp_path / "out.csv"
    args = ["process", str(sample / "orders.csv"), "--reference", str(sample / "financial_data.csv"),
            "--out", str(out), "--chunk-rows", "400", "--workers", "1", "--state-dir", str(state_dir)]
    crashed = rf(*args, env={"REGIONFLOW_CRASH_AT": "chunk:6", "REGIONFLOW_CRASH_MARKERS": str(tmp_path / "m")})
    assert crashed.returncode == CRASH_EXIT_CODE
    assert rf(*args).returncode == 0
    _check_resumed(state_dir, out, clean_run)


@pytest.fixture(scope="module")
def bigger_sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("bigger")
    assert rf("sample", "--rows", "20000", "--invalid-ratio", "0.05", "--seed", "9", "--out", str(d)).returncode == 0
    args = ["process", str(d / "orders.csv"), "--reference", str(d / "financial_data.csv"), "--chunk-rows", "100"]
    clean = rf(*args, "--out", str(d / "out.csv"), "--json")
    assert clean.returncode == 0, clean.stderr
    return d, args, json.loads(clean.stdout), (d / "out.csv").read_bytes()


@pytest.mark.parametrize("chunks_before_kill", [0, 7, 60, 150])
def test_sigkill_mid_flight_then_resume(chunks_before_kill, bigger_sample, tmp_path):
    d, args, summary, output = bigger_sample
    state_dir, out = tmp_path / "state", tmp_path / "out.csv"
    full = [REGIONFLOW, *args, "--out", str(out), "--state-dir", str(state_dir)]
    proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    outputs = state_dir / "bucket" / "meta" / "work"
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(list(outputs.glob("*/out/*.json"))) if outputs.exists() else 0
        if done >= chunks_before_kill and (chunks_before_kill or (state_dir / "state.db").exists()):
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the engine and its workers, mid-flight
    proc.wait(timeout=30)
    assert not out.exists(), "the run finished before the kill; the test proves nothing"
    resumed = subprocess.run(full, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    _check_resumed(state_dir, out, ({**summary}, output, None))
    # Only chunks that were in flight at the kill were processed twice: at most 2 x workers (2) of them.
    state = open_state_store(f"sqlite:///{state_dir / 'state.db'}", "local")
    try:
        chunks = state.list_chunks(state.list_jobs()[0].job_id)
    finally:
        state.close()
    assert all(c.attempts >= 1 for c in chunks)
    assert sum(c.attempts - 1 for c in chunks) <= 4, [c.attempts for c in chunks if c.attempts > 1]
