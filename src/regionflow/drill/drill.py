"""The disaster-recovery drill: a fresh two-region stack, a load, a regional failure mid-way, failover,
failback, and a check that no file was lost or processed twice.

Steps (each bounded in time, loopback only):

1. `init` a stack in a temporary directory, `up`, load the reference table, and process the sample file
   once with the single-region engine (`process_file`): the output every upload must reproduce byte for byte.
2. Upload `files` copies of the sample (distinct keys) through the access point in the background. An upload
   that fails while regions switch is retried; a file counts as submitted once its upload succeeded.
3. About half-way through the uploads, inject the scenario into the primary region (us-east-1):

   - ``kill``: SIGKILL the region's process group (gateway, orchestrator, workers, replicators).
   - ``storage-outage``: the fault ``storage_unreachable`` for longer than the failover takes; the region's
     process stays up (its gateway answers, its state store and feed work, its objects cannot be read or
     written), as in a storage-service outage.
   - ``replication-pause``: replication us-east-1 -> us-west-2 is paused (objects and state) so a backlog
     builds up while the load goes on, then the region is killed. This is the scenario where the standby
     is behind when disaster strikes: it exercises the RPO (uploads the standby has not seen at the switch)
     and the "missing objects start by themselves when they arrive" path. (Pausing without a failure is not
     a drill: the failover plan rightly refuses to switch while the replication it must wait for is paused.)
4. Fail over to us-west-2 with the configured plan; the rest of the load goes through the access point to it.
5. Bring us-east-1 back (restart it / clear the fault / restart it and resume replication), fail back,
   wait until every job has finished and both regions agree.
6. Collect jobs, chunks, rejects, outputs and the shared outbox from both regions and check the invariants
   with `check_invariants` (a pure function of the collected data).

The report (JSON, and Markdown via `render_markdown`) gives RTO and RPO, lost files, duplicated outputs and
notifications, reprocessed chunks and each invariant. The stack is torn down in every case; its directory
is removed when the drill passed and kept (and named in the report) when it did not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from regionflow.config import Config, init_project, load_config, load_secrets
from regionflow.drill.loadtest import Upload, follow_jobs, load_reference, upload_files
from regionflow.errors import RegionflowError
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX, OUTPUT_PREFIX

SCENARIOS = ("kill", "storage-outage", "replication-pause")
TERMINAL = ("COMPLETED", "FAILED")
# Job fields both regions must agree on once replication has drained.
CONVERGED_FIELDS = ("status", "owner_region", "owner_epoch", "rows_in", "rows_ok", "rows_rejected", "output_key",
                    "output_etag", "completing_region")
STORAGE_OUTAGE_SECONDS = 600.0  # covers the failover and the rest of the load; cleared explicitly after
PAUSE_BUILDUP_SECONDS = 2.0  # replication-pause: how long the backlog builds before the region dies
STALL_SECONDS = 30.0  # after failback, no job finishing for this long means the rest are stuck

Narrate = Callable[[str], None]


class DrillError(RegionflowError):
    """A step of the drill could not be carried out (as opposed to an invariant that failed)."""


class SwitchFailed(DrillError):
    """A failover or failback execution ended FAILED; the record says which step and why."""

    def __init__(self, record: dict, what: str):
        failed = next((s for s in record.get("steps", []) if s["status"] == "FAILED"), None)
        super().__init__(f"{what} execution {record.get('execution_id')} {record.get('status')}: "
                         f"{(failed or {}).get('error') or record.get('error')}")
        self.record = record
        self.what = what


# ---------------------------------------------------------------------------------------------------
# The invariants: a pure function of the collected data
# ---------------------------------------------------------------------------------------------------


def output_key_for(input_key: str) -> str:
    """Where the merge step writes the output of input_key (output/completed/<name>)."""
    return OUTPUT_PREFIX + (input_key[len(INPUT_PREFIX):] if input_key.startswith(INPUT_PREFIX)
                            else input_key.rsplit("/", 1)[-1])


def check_invariants(data: dict[str, Any]) -> dict[str, Any]:
    """Check the drill's invariants over collected data; pure (no I/O), so any state can be fabricated.

    data:
      expected:   {"output_sha256", "rows_in", "rows_ok", "rows_rejected"} of the single-region run
      submitted:  [{"key", "job_id"}] uploads that succeeded (one per file)
      authoritative: the region active at the end (its records are the final word)
      regions:    {name: {"jobs": [job records], "outputs": {output key: sha256 or None (absent)},
                          "chunks": {job_id: [{"idx", "attempts", ...}]}, "rejects": {job_id: [row_no, ...]}}}
      notifications: [{"file", "job_id"}] the .eml files of the shared outbox

    A file is lost when no output of it exists in the authoritative region, unfinished when none of its jobs
    reached COMPLETED there (stuck or FAILED, whether or not an output was written).

    Returns lost, unfinished, duplicated_outputs, duplicated_notifications, missing_notifications,
    mismatched_outputs, reprocessed_chunks, invariants {name: bool}, violations [text] and passed.
    """
    expected = data["expected"]
    regions: dict[str, dict] = data["regions"]
    auth_name = data["authoritative"]
    auth = regions[auth_name]
    submitted = data["submitted"]
    violations: list[str] = []

    jobs_by_region = {name: {j["job_id"]: j for j in r.get("jobs", [])} for name, r in regions.items()}
    union: dict[str, dict] = {}
    for name, jobs in jobs_by_region.items():
        for job_id, job in jobs.items():
            if job_id not in union or name == auth_name:
                union[job_id] = job
    by_key: dict[str, list[dict]] = defaultdict(list)
    for job in union.values():
        by_key[job["input_key"]].append(job)
    submitted_keys = {s["key"] for s in submitted}
    emls = Counter(n["job_id"] for n in data.get("notifications", []))

    lost = unfinished = duplicated_outputs = duplicated_notifications = missing_notifications = mismatched = 0
    for s in submitted:
        key, job_id = s["key"], s["job_id"]
        jobs = by_key.get(key, [])
        if job_id not in union:
            violations.append(f"{key}: its upload's job {job_id} is in no region")
        states = "; ".join(
            f"{j['job_id']} {j['status']} (owner {j.get('owner_region')} epoch {j.get('owner_epoch')}"
            f"{', ' + str(j['reason']) if j.get('reason') else ''})" for j in jobs) or "no job"
        out_keys = sorted({j["output_key"] for j in jobs if j.get("output_key")} | {output_key_for(key)})
        if not any(auth["outputs"].get(k) for k in out_keys):
            lost += 1
            violations.append(f"{key}: lost: no output in {auth_name} ({states})")
        completed = [j for j in jobs if j["status"] == "COMPLETED"]
        if not any(jobs_by_region[auth_name].get(j["job_id"], {}).get("status") == "COMPLETED" for j in completed):
            unfinished += 1
            violations.append(f"{key}: no job completed in {auth_name}: {states}")
        if len(completed) > 1:
            duplicated_outputs += len(completed) - 1
            violations.append(f"{key}: {len(completed)} completed jobs: {', '.join(j['job_id'] for j in completed)}")
        for k in out_keys:
            for name, r in regions.items():
                sha = r["outputs"].get(k)
                if sha is not None and sha != expected["output_sha256"]:
                    mismatched += 1
                    violations.append(f"{key}: output {k} in {name} differs from the single-region run "
                                      f"(sha256 {sha[:12]} != {expected['output_sha256'][:12]})")
        notes = sum(emls.get(j["job_id"], 0) for j in jobs) if jobs else emls.get(job_id, 0)
        if notes == 0:
            missing_notifications += 1
            violations.append(f"{key}: no notification")
        elif notes > 1:
            duplicated_notifications += notes - 1
            violations.append(f"{key}: {notes} notifications")
    for key, jobs in by_key.items():
        if key not in submitted_keys:
            stray = [j for j in jobs if j["status"] == "COMPLETED"]
            if stray:
                duplicated_outputs += len(stray)
                violations.append(f"{key}: {len(stray)} completed job(s) for a file nobody submitted")
    known = set(union)
    for job_id, count in emls.items():
        if job_id not in known:
            duplicated_notifications += count
            violations.append(f"notification for unknown job {job_id} ({count})")

    balanced = counts_match = rejects_once = True
    for name, jobs in jobs_by_region.items():
        for job in jobs.values():
            if job["status"] != "COMPLETED":
                continue
            rows_in, ok, rej = job.get("rows_in"), job.get("rows_ok"), job.get("rows_rejected")
            if rows_in is None or ok is None or rej is None or rows_in != ok + rej:
                balanced = False
                violations.append(f"{job['job_id']} in {name}: rows_in {rows_in} != ok {ok} + rejected {rej}")
            if (rows_in, ok, rej) != (expected["rows_in"], expected["rows_ok"], expected["rows_rejected"]):
                counts_match = False
                violations.append(f"{job['job_id']} in {name}: counts {rows_in}/{ok}/{rej} differ from the "
                                  f"single-region run {expected['rows_in']}/{expected['rows_ok']}/"
                                  f"{expected['rows_rejected']}")
            rows = regions[name].get("rejects", {}).get(job["job_id"], [])
            dup = [r for r, c in Counter(rows).items() if c > 1]
            if dup:
                rejects_once = False
                violations.append(f"{job['job_id']} in {name}: rejects recorded twice for rows {sorted(dup)[:10]}")
            if len(rows) != rej:
                rejects_once = False
                violations.append(f"{job['job_id']} in {name}: {len(rows)} rejects recorded, rows_rejected {rej}")

    one_job = True
    versions: dict[tuple[str, str], set[str]] = defaultdict(set)
    for job in union.values():
        versions[(job["input_key"], job.get("version_id", ""))].add(job["job_id"])
    for (key, version), ids in versions.items():
        if len(ids) > 1:
            one_job = False
            violations.append(f"{key} version {version}: {len(ids)} jobs ({', '.join(sorted(ids))})")

    converged = True
    for job_id in union:
        records = {name: jobs.get(job_id) for name, jobs in jobs_by_region.items()}
        if any(r is None for r in records.values()):
            converged = False
            violations.append(f"{job_id}: not in {', '.join(n for n, r in records.items() if r is None)}")
            continue
        first = next(iter(records.values()))
        diff = [f for f in CONVERGED_FIELDS if any(r.get(f) != first.get(f) for r in records.values())]
        if diff:
            converged = False
            violations.append(f"{job_id}: regions disagree on {', '.join(diff)}")
        key = first.get("output_key")
        if first.get("status") == "COMPLETED" and key:
            absent = [n for n, r in regions.items() if r["outputs"].get(key) is None]
            if absent:
                converged = False
                violations.append(f"{job_id}: output {key} absent in {', '.join(absent)}")

    reprocessed = 0
    for job_id, chunks in auth.get("chunks", {}).items():
        if job_id in union:
            reprocessed += sum(max(0, int(c.get("attempts") or 0) - 1) for c in chunks)

    invariants = {
        "every_file_has_an_output": lost == 0,
        "every_job_completed": unfinished == 0,
        "one_output_per_file": duplicated_outputs == 0,
        "outputs_identical_to_single_region_run": mismatched == 0,
        "one_notification_per_file": duplicated_notifications == 0 and missing_notifications == 0,
        "rows_in_equals_ok_plus_rejected": balanced,
        "counts_match_single_region_run": counts_match,
        "no_reject_recorded_twice": rejects_once,
        "one_job_per_upload": one_job,
        "regions_converged": converged,
    }
    return {"lost": lost, "unfinished": unfinished, "duplicated_outputs": duplicated_outputs,
            "duplicated_notifications": duplicated_notifications, "missing_notifications": missing_notifications,
            "mismatched_outputs": mismatched, "reprocessed_chunks": reprocessed, "invariants": invariants,
            "violations": violations, "passed": all(invariants.values())}


# ---------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}{unit}"
    return f"{v}{unit}"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: verdict, RTO/RPO, counts, invariants, timeline, violations."""
    rto = report.get("rto_seconds") or {}
    rpo = report.get("rpo") or {}
    verdict = "PASSED" if report.get("passed") else "FAILED"
    lines = [
        f"# regionflow DR drill: {report['scenario']} - {verdict}",
        "",
        f"{report['files']} files of {report.get('rows_per_file')} rows through the access point; "
        f"{report.get('primary')} failed mid-way, failover to {report.get('standby')}, failback. "
        f"Started {report.get('started_at_iso', '-')}, took {_fmt(report.get('seconds'), ' s')}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| RTO failover | {_fmt(rto.get('failover'), ' s')} |",
        f"| RTO failback | {_fmt(rto.get('failback'), ' s')} |",
        f"| RPO files (not in {report.get('standby')} at the switch) | {_fmt(rpo.get('files'))} |",
        f"| RPO seconds (replication not applied at the switch) | {_fmt(rpo.get('seconds'), ' s')} |",
        f"| files submitted | {_fmt(report.get('submitted'))} of {report['files']} |",
        f"| lost (no output) | {_fmt(report.get('lost'))} |",
        f"| unfinished (no job completed) | {_fmt(report.get('unfinished'))} |",
        f"| duplicated outputs | {_fmt(report.get('duplicated_outputs'))} |",
        f"| duplicated notifications | {_fmt(report.get('duplicated_notifications'))} |",
        f"| missing notifications | {_fmt(report.get('missing_notifications'))} |",
        f"| reprocessed chunks (attempts beyond 1, final state) | {_fmt(report.get('reprocessed_chunks'))} |",
        f"| chunk executions beyond one per chunk (both regions' logs) | "
        f"{_fmt(report.get('chunk_executions_beyond_one'))} |",
        f"| upload retries | {_fmt((report.get('uploads') or {}).get('retries'))} |",
        "",
        "## Invariants",
        "",
        "| invariant | |",
        "|---|---|",
    ]
    for name, ok in (report.get("invariants") or {}).items():
        lines.append(f"| {name.replace('_', ' ')} | {'ok' if ok else '**FAILED**'} |")
    lines += ["", "Reprocessed chunks count the attempts recorded in the final state; a region's own attempts can be "
                  "replaced by the other region's record of the chunk when replication converges, so the logged "
                  "executions (both regions' logs survive a kill) are the upper figure."]
    if rpo.get("detail"):
        lines += ["", "## RPO", "", rpo["detail"]]
        if rpo.get("jobs"):
            lines.append("")
            lines.append("Jobs the standby did not have at the switch: " + ", ".join(rpo["jobs"][:20])
                         + (" ..." if len(rpo["jobs"]) > 20 else ""))
    for title, key in (("Failover", "failover"), ("Failback", "failback")):
        rec = report.get(key)
        if not rec:
            continue
        lines += ["", f"## {title}: {rec.get('execution_id')} {rec.get('status')} "
                      f"(RTO {_fmt(rec.get('rto_seconds'), ' s')})", "", "| step | kind | status | seconds |",
                  "|---|---|---|---|"]
        for step in rec.get("steps", []):
            secs = step["ended"] - step["started"] if step.get("ended") and step.get("started") else None
            lines.append(f"| {step['name']} | {step['kind']} | {step['status']} | {_fmt(secs)} |")
    if report.get("timeline"):
        lines += ["", "## Timeline", "", "| t (s) | event |", "|---|---|"]
        lines += [f"| {e['t']:.2f} | {e['event']} |" for e in report["timeline"]]
    if report.get("violations"):
        lines += ["", "## Violations", ""]
        lines += [f"- {v}" for v in report["violations"][:100]]
    if report.get("error"):
        lines += ["", "## Error", "", f"```\n{report['error']}\n```"]
    paths = report.get("paths") or {}
    if any(paths.values()):
        lines += ["", "## Files", ""]
        lines += [f"- {k}: `{v}`" for k, v in paths.items() if v]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# The drill
# ---------------------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Drill:
    def __init__(self, root: Path, files: int, scenario: str, rows: int, concurrency: int, interval: float,
                 deadline: float, narrate: Narrate | None):
        self.root = root
        self.files = files
        self.scenario = scenario
        self.rows = rows
        self.concurrency = concurrency
        self.interval = interval
        self.deadline = deadline
        self._narrate = narrate
        self.t0 = time.monotonic()
        self.timeline: list[dict] = []
        self.config: Config | None = None
        self.config_path: Path | None = None
        self.stop = threading.Event()
        self.uploads: list[Upload] = []
        self.submitted: list[Upload] = []
        self._sub_lock = threading.Lock()
        self._sub_changed = threading.Condition(self._sub_lock)
        self.loader: threading.Thread | None = None
        self.loader_error: BaseException | None = None
        self.sampler: threading.Thread | None = None
        self.samples: list[tuple[float, dict]] = []
        self.report: dict[str, Any] = {}
        self.failures: list[str] = []  # steps that failed but did not stop the drill
        self.stack_started = False

    # -- narration and time --------------------------------------------------------------------------
    def say(self, event: str) -> None:
        t = time.monotonic() - self.t0
        self.timeline.append({"t": round(t, 3), "at": time.time(), "event": event})
        if self._narrate is not None:
            self._narrate(f"[{t:6.1f}s] {event}")

    def remaining(self, cap: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DrillError("the drill ran out of time")
        return min(cap, left)

    def eventually(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
        limit = time.monotonic() + self.remaining(timeout)
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > limit:
                raise DrillError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(interval)

    # -- HTTP ------------------------------------------------------------------------------------------
    def http(self, region: str | None = None, admin: bool = False, timeout: float = 10.0) -> httpx.Client:
        assert self.config is not None
        token = self.secrets.admin_token if admin else self.secrets.api_token
        base = self.config.region_url(region) if region else self.config.access_point_url
        return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                            timeout=httpx.Timeout(timeout, connect=2.0))

    def get(self, region: str | None, path: str, **params: Any) -> Any:
        with self.http(region) as h:
            resp = h.get(path, params=params)
        if resp.status_code != 200:
            raise DrillError(f"GET {path} on {region or 'the access point'}: HTTP {resp.status_code}: "
                             f"{resp.text[:200]}")
        return resp.json()

    def try_get(self, region: str | None, path: str, **params: Any) -> Any:
        try:
            return self.get(region, path, **params)
        except (DrillError, httpx.HTTPError, ValueError):
            return None

    # -- steps -----------------------------------------------------------------------------------------
    def setup(self) -> None:
        from regionflow.region.stack import start_stack
        from regionflow.workloads.batch.local import process_file
        from regionflow.workloads.batch.sample import generate

        self.config_path = init_project(self.root)
        self.config = load_config(self.config_path)
        self.secrets = load_secrets(self.config)
        self.primary = self.config.primary
        self.standby = next(r.name for r in self.config.regions if r.name != self.primary)
        data_dir = self.root / "data"
        sample = generate(self.rows, data_dir, invalid_ratio=0.05, seed=11)
        self.sample = sample
        self.say(f"fresh stack in {self.root}; sample file of {self.rows} rows ({sample.invalid} invalid)")
        pipeline = self.config.load_pipeline()
        single = process_file(sample.orders, sample.financial, self.root / "single-region.csv", pipeline=pipeline,
                              rejects_path=self.root / "single-region-rejects.csv", workers=1)
        if single.job.status != "COMPLETED":
            raise DrillError(f"the single-region run of the sample failed: {single.job.reason}")
        self.expected = {"output_sha256": _sha256((self.root / "single-region.csv").read_bytes()),
                         "rows_in": single.job.rows_in, "rows_ok": single.job.rows_ok,
                         "rows_rejected": single.job.rows_rejected}
        self.say(f"single-region reference run: {single.job.rows_ok} ok, {single.job.rows_rejected} rejected, "
                 f"output sha256 {self.expected['output_sha256'][:12]}")
        self.stack_started = True
        start_stack(self.config_path, self.config, timeout=self.remaining(90))
        self.say(f"stack up: {self.primary} (active), {self.standby}, access point {self.config.access_point_url}")
        enrichment = pipeline.enrichment
        if enrichment is not None:
            load_reference(self.config.access_point_url, self.secrets.api_token, sample.financial,
                           enrichment.table, enrichment.reference_key)
            head = self.get(self.primary, "/internal/feed/stats", since=0)["head"]
            self.eventually(lambda: self._caught_up(head), 60, "the reference table to replicate")
            self.say(f"reference table {enrichment.table!r} loaded and replicated to {self.standby}")

    def _direction(self, target: str, source: str) -> dict | None:
        body = self.try_get(target, "/replication")
        if not body:
            return None
        return next((d for d in body["directions"] if d["source"] == source), None)

    def _caught_up(self, seq: int) -> bool:
        """Whether the standby has applied the primary's feed (objects and state) through seq."""
        d = self._direction(self.standby, self.primary)
        return bool(d and all(v >= seq for v in d["checkpoint"].values()))

    def start_load(self) -> None:
        assert self.config is not None
        data = self.sample.orders.read_bytes()
        keys = [f"input/drill-{i:04d}.csv" for i in range(self.files)]

        def submitted(up: Upload) -> None:
            with self._sub_changed:
                self.submitted.append(up)
                self._sub_changed.notify_all()

        def load() -> None:
            try:
                self.uploads = upload_files(self.config.access_point_url, self.secrets.api_token, data, keys,
                                            concurrency=self.concurrency, interval=self.interval,
                                            deadline=self.deadline, on_submitted=submitted, stop=self.stop)
            except BaseException as exc:
                self.loader_error = exc
            finally:
                with self._sub_changed:
                    self._sub_changed.notify_all()

        def sample_replication() -> None:
            while not self.stop.wait(0.25):
                d = self._direction(self.standby, self.primary)
                if d is not None and d.get("reachable"):
                    self.samples.append((time.time(), d))

        self.sampler = threading.Thread(target=sample_replication, name="drill-sampler", daemon=True)
        self.sampler.start()
        self.loader = threading.Thread(target=load, name="drill-load", daemon=True)
        self.loader.start()
        self.say(f"load started: {self.files} files, {self.concurrency} uploaders, one every {self.interval:g}s")

    def wait_submitted(self, count: int) -> int:
        limit = time.monotonic() + self.remaining(300)
        with self._sub_changed:
            while len(self.submitted) < count:
                if self.loader is not None and not self.loader.is_alive():
                    break
                if time.monotonic() > limit:
                    raise DrillError(f"only {len(self.submitted)} of {count} uploads succeeded in time")
                self._sub_changed.wait(0.2)
            return len(self.submitted)

    def _kill(self, region: str) -> None:
        from regionflow.region.stack import run_dir, running

        assert self.config is not None
        pid = int((run_dir(self.config) / f"{region}.pid").read_text().strip())
        os.killpg(pid, signal.SIGKILL)
        self.eventually(lambda: region not in running(self.config), 15, f"{region} to die", interval=0.05)

    def inject(self) -> None:
        half = max(1, self.files // 2)
        if self.scenario == "replication-pause":
            n = self.wait_submitted(half)
            with self.http(self.standby, admin=True) as h:
                resp = h.post(f"/replication/{quote(self.primary)}/pause", params={"kind": "all"})
            if resp.status_code != 200:
                raise DrillError(f"pausing replication {self.primary} -> {self.standby}: {resp.text[:200]}")
            self.paused_at = time.time()
            self.say(f"paused replication {self.primary} -> {self.standby} (objects and state) after {n} of "
                     f"{self.files} files")
            # let a backlog build: a few seconds, or until three quarters of the files are in
            until = time.monotonic() + PAUSE_BUILDUP_SECONDS
            with self._sub_changed:
                while (time.monotonic() < until and len(self.submitted) < max(n + 1, (3 * self.files) // 4)
                       and self.loader is not None and self.loader.is_alive()):
                    self._sub_changed.wait(0.1)
            d = self._direction(self.standby, self.primary) or {}
            self.say(f"backlog {self.primary} -> {self.standby}: {d.get('backlog')} changes, lag "
                     f"{d.get('lag_seconds')} s")
            n = len(self.submitted)
            self.fault_at = time.time()
            self._kill(self.primary)
            self.say(f"SIGKILL {self.primary} (process group) with replication still paused, after {n} files")
        elif self.scenario == "kill":
            n = self.wait_submitted(half)
            self.fault_at = time.time()
            self._kill(self.primary)
            self.say(f"SIGKILL {self.primary} (process group) after {n} of {self.files} files were submitted")
        else:
            n = self.wait_submitted(half)
            with self.http(self.primary, admin=True) as h:
                resp = h.post("/admin/faults", json={"kind": "storage_unreachable",
                                                      "duration": STORAGE_OUTAGE_SECONDS, "params": {}})
            if resp.status_code != 201:
                raise DrillError(f"injecting storage_unreachable into {self.primary}: {resp.text[:200]}")
            self.fault_at = time.time()
            self.fault_id = resp.json()["id"]
            self.say(f"storage of {self.primary} unreachable (fault {self.fault_id}) after {n} of {self.files} "
                     "files were submitted")

    def switch(self, target: str, what: str) -> dict:
        """Run the configured plan's workflow for target, in target (what `failover`/`failback` do)."""
        assert self.config is not None
        self.say(f"{what}: running plan for {target}")
        started = time.monotonic()
        with self.http(target, admin=True) as h:
            resp = h.post("/plans/run", json={"plan_path": str(Path(self.config.plan_path).resolve()),
                                              "activate": target, "practice": False,
                                              "started_by": f"drill-{self.scenario}"})
            if resp.status_code != 200:
                raise DrillError(f"{what} to {target} refused: HTTP {resp.status_code}: {resp.text[:300]}")
            record = resp.json()
            limit = time.monotonic() + self.remaining(600)
            while record["status"] not in ("SUCCEEDED", "FAILED"):
                if time.monotonic() > limit:
                    raise DrillError(f"{what} execution {record['execution_id']} still {record['status']}")
                time.sleep(0.1)
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    r = h.get(f"/plans/executions/{record['execution_id']}")
                    if r.status_code == 200:
                        record = r.json()
        record["command_seconds"] = round(time.monotonic() - started, 3)
        steps = ", ".join(f"{s['kind']} {s['status'].lower()}" for s in record.get("steps", []))
        self.say(f"{what} {record['status']} in {record['command_seconds']:.2f}s, RTO {record.get('rto_seconds')}s "
                 f"({steps})")
        if record["status"] != "SUCCEEDED":
            raise SwitchFailed(record, what)
        return record

    def measure_rpo_files(self, failover: dict) -> dict:
        """Which files submitted before the switch the standby could not process after it: unknown to it after
        reconcile (never replicated), or listed by reconcile as missing their objects."""
        switch_at = float(failover["started_at"])
        before = [u for u in self.submitted if u.submitted_at is not None and u.submitted_at <= switch_at]
        jobs = self.try_get(self.standby, "/jobs", limit=10000)
        known = {j["job_id"] for j in (jobs or {}).get("jobs", [])}
        missing = {m["job_id"] for m in failover.get("missing") or []}
        unknown = {u.job_id for u in before if u.job_id and u.job_id not in known}
        at_risk = sorted(unknown | (missing & {u.job_id for u in before}))
        return {"files": len(at_risk), "jobs": at_risk, "unknown_to_standby": len(unknown),
                "missing_objects": len(missing), "submitted_before_switch": len(before)}

    def _wait_step(self, failover: dict) -> dict:
        step = next((s for s in failover.get("steps", []) if s["kind"] == "wait_replication"), None)
        return ((step or {}).get("output") or {}).get(self.primary) or {}

    def measure_rpo_seconds(self, failover: dict) -> dict:
        """Age at the switch of the oldest change of the primary's feed the standby had not applied: asked of
        the primary once it is back (its feed, after the standby's checkpoints at the switch); failing that,
        estimated from the last replication status seen before the fault."""
        wait = self._wait_step(failover)
        applied = wait.get("applied_through") or {}
        switch_at = float(failover["started_at"])
        out: dict[str, Any] = {"confirmed": wait.get("confirmed"), "applied_through": applied,
                               "switch_point": wait.get("switch_point"),
                               "unconfirmed_backlog": wait.get("unconfirmed_backlog")}
        oldest: list[float] = []
        pending = 0
        try:
            for kind in ("objects", "state"):
                if kind not in applied:
                    raise DrillError("no checkpoint")
                stats = self.get(self.primary, "/internal/feed/stats", since=int(applied[kind]))[kind]
                if stats["oldest"] is not None and stats["oldest"] <= switch_at:
                    oldest.append(float(stats["oldest"]))
                    pending += int(stats["count"])
            out["seconds"] = round(max(0.0, switch_at - min(oldest)), 3) if oldest else 0.0
            out["method"] = "primary's feed after the standby's checkpoints at the switch"
            out["changes_after_checkpoint"] = pending
            return out
        except (DrillError, httpx.HTTPError, KeyError, ValueError, TypeError):
            pass
        fault_at = getattr(self, "fault_at", switch_at)
        last = [(t, d) for t, d in self.samples if t <= fault_at]
        if last:
            t, d = last[-1]
            behind = any(d["backlog"].values())
            out["seconds"] = round(max(d["lag_seconds"].values()) + (switch_at - t), 3) if behind else 0.0
        else:
            out["seconds"] = None
        out["method"] = "last replication status before the fault"
        return out

    def bring_back(self) -> None:
        from regionflow.region.stack import start_stack

        assert self.config is not None and self.config_path is not None
        if self.scenario == "storage-outage":
            with self.http(self.primary, admin=True) as h:
                resp = h.delete("/admin/faults")
            if resp.status_code != 200:
                raise DrillError(f"clearing the faults of {self.primary}: {resp.text[:200]}")
            self.say(f"storage of {self.primary} is back (fault cleared)")
            return
        start_stack(self.config_path, self.config, timeout=self.remaining(90))
        self.say(f"{self.primary} restarted (`up --detach` starts the missing process)")

    def resume_replication(self) -> None:
        if self.scenario != "replication-pause":
            return
        with self.http(self.standby, admin=True) as h:
            resp = h.post(f"/replication/{quote(self.primary)}/resume", params={"kind": "all"})
        if resp.status_code != 200:
            raise DrillError(f"resuming replication {self.primary} -> {self.standby}: {resp.text[:200]}")
        self.say(f"replication {self.primary} -> {self.standby} resumed")

    def finish_load(self) -> None:
        assert self.loader is not None
        self.loader.join(self.remaining(600))
        if self.loader.is_alive():
            raise DrillError("the load did not finish in time")
        if self.loader_error is not None:
            raise DrillError(f"the load failed: {self.loader_error!r}")
        failed = [u for u in self.uploads if not u.submitted]
        retried = sum(1 for u in self.uploads if u.attempts > 1)
        self.say(f"load finished: {len(self.uploads) - len(failed)} of {self.files} files submitted"
                 f"{f', {retried} after retries' if retried else ''}"
                 f"{f', {len(failed)} never accepted' if failed else ''}")

    def wait_done(self) -> None:
        ids = [u.job_id for u in self.uploads if u.job_id]
        finished = follow_jobs(self.config.access_point_url, self.secrets.api_token, ids,
                               deadline=time.monotonic() + self.remaining(60 + 2 * self.files),
                               stall=STALL_SECONDS)
        pending = sorted(set(ids) - finished.keys())
        failed = sorted(j for j, v in finished.items() if v["status"] == "FAILED")
        self.say(f"{len(finished)} of {len(ids)} jobs finished ({len(failed)} failed"
                 f"{', ' + str(len(pending)) + ' unfinished: ' + ', '.join(pending[:3]) if pending else ''})"
                 f"{f'; none finished in the last {STALL_SECONDS:g}s' if pending else ''}")

        def converged() -> bool:
            views = {}
            for name in (self.primary, self.standby):
                body = self.try_get(name, "/jobs", limit=10000)
                if body is None:
                    return False
                views[name] = {j["job_id"]: j for j in body["jobs"]}
            a, b = views[self.primary], views[self.standby]
            if set(a) != set(b):
                return False
            if any(a[j].get(f) != b[j].get(f) for j in a for f in CONVERGED_FIELDS):
                return False
            for target, source in ((self.primary, self.standby), (self.standby, self.primary)):
                d = self._direction(target, source)
                if not d or not d["reachable"] or any(d["backlog"].values()):
                    return False
            return True

        try:
            self.eventually(converged, 30 if pending else 60, "both regions to converge", interval=0.5)
            self.say("both regions agree on every job; replication drained both ways")
        except DrillError as exc:
            self.say(str(exc))

    def collect(self) -> dict[str, Any]:
        """Everything the invariants are checked on, read from both regions and the shared outbox."""
        assert self.config is not None
        regions: dict[str, dict] = {}
        for name in (self.primary, self.standby):
            jobs = self.get(name, "/jobs", limit=10000)["jobs"]
            entry: dict[str, Any] = {"jobs": jobs, "outputs": {}, "chunks": {}, "rejects": {}}
            with self.http(name, timeout=30) as h:
                for job in jobs:
                    job_id = job["job_id"]
                    resp = h.get(f"/jobs/{job_id}/chunks")
                    entry["chunks"][job_id] = resp.json()["chunks"] if resp.status_code == 200 else []
                    rows: list[int] = []
                    while True:
                        resp = h.get(f"/jobs/{job_id}/rejects", params={"limit": 100000, "offset": len(rows)})
                        page = resp.json()["rejects"] if resp.status_code == 200 else []
                        rows += [r["row_no"] for r in page]
                        if len(page) < 100000:
                            break
                    entry["rejects"][job_id] = rows
                keys = {j["output_key"] for j in jobs if j.get("output_key")}
                keys |= {output_key_for(u.key) for u in self.uploads if u.submitted}
                for key in sorted(keys):
                    resp = h.get(f"/objects/{quote(key, safe='/')}")
                    entry["outputs"][key] = _sha256(resp.content) if resp.status_code == 200 else None
            regions[name] = entry
        control = self.try_get(self.primary, "/control") or {}
        return {"expected": self.expected, "authoritative": control.get("active_region", self.primary),
                "submitted": [{"key": u.key, "job_id": u.job_id} for u in self.uploads if u.submitted],
                "regions": regions, "notifications": self.notifications()}

    def outbox_dir(self) -> Path:
        assert self.config is not None
        notifier = self.config.notifier
        if notifier and notifier.startswith("outbox://"):
            return Path(notifier[len("outbox://"):])
        return Path(self.config.data_dir) / "outbox"

    def notifications(self) -> list[dict]:
        out = []
        parser = BytesHeaderParser()
        for path in sorted(self.outbox_dir().glob("*.eml")):
            with path.open("rb") as fh:
                headers = parser.parse(fh)
            out.append({"file": path.name, "job_id": headers.get("X-Regionflow-Job") or path.stem})
        return out

    def logged_chunk_executions(self, chunks: dict[str, list[dict]]) -> int:
        """Chunk executions started (both regions' logs, which survive a kill) beyond one per chunk."""
        assert self.config is not None
        started: Counter[str] = Counter()
        for log in (Path(self.config.data_dir) / "logs").glob("*.log"):
            with log.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if '"chunk_started"' not in line:
                        continue
                    with contextlib.suppress(ValueError):
                        rec = json.loads(line)
                        if rec.get("msg") == "chunk_started" and rec.get("job_id"):
                            started[rec["job_id"]] += 1
        return sum(max(0, started[j] - len(c)) for j, c in chunks.items())

    def teardown(self) -> None:
        from regionflow.region.stack import stop_stack

        self.stop.set()
        for t in (self.loader, self.sampler):
            if t is not None:
                t.join(timeout=35)
        if self.config is not None and self.stack_started:
            with contextlib.suppress(Exception):
                stop_stack(self.config)

    # -- the whole drill -------------------------------------------------------------------------------
    def run(self) -> None:
        r = self.report
        self.setup()
        r.update({"primary": self.primary, "standby": self.standby})
        self.start_load()
        self.inject()
        try:
            failover = self.switch(self.standby, "failover")
        except SwitchFailed as exc:
            # Carry on without the switch: bring the region back, let the load finish, and check what became
            # of the files, so the report shows the consequences and not just the failed step.
            failover = exc.record
            self.failures.append(str(exc))
            self.say(f"{exc}; carrying on without the switch")
        r["failover"] = failover
        switched = failover.get("status") == "SUCCEEDED"
        if switched:
            r["rpo"] = self.measure_rpo_files(failover)
            self.say(f"at the switch {self.standby} lacked {r['rpo']['files']} of "
                     f"{r['rpo']['submitted_before_switch']} submitted files ({r['rpo']['unknown_to_standby']} "
                     f"unknown to it, {r['rpo']['missing_objects']} missing objects)")
            self.finish_load()
        self.bring_back()
        self.eventually(lambda: self.try_get(self.primary, "/health/deep") is not None, 60,
                        f"{self.primary} to be healthy")
        if switched:
            r["rpo"].update(self.measure_rpo_seconds(failover))
            self.say(f"RPO: {r['rpo']['files']} file(s), {r['rpo']['seconds']} s of replication not applied at "
                     "the switch")
        self.resume_replication()
        if not switched:
            self.finish_load()
        try:
            r["failback"] = self.switch(self.primary, "failback")
        except SwitchFailed as exc:
            r["failback"] = exc.record
            self.failures.append(str(exc))
            self.say(f"{exc}; carrying on")
        self.wait_done()
        data = self.collect()
        r["checked"] = check_invariants(data)
        r["chunk_executions_beyond_one"] = self.logged_chunk_executions(data["regions"][data["authoritative"]]
                                                                       ["chunks"])


def _summary(rec: dict | None) -> dict | None:
    if not rec:
        return None
    return {k: rec.get(k) for k in ("execution_id", "target", "status", "rto_seconds", "desired_rto_seconds",
                                    "command_seconds", "started_at", "ended_at", "missing", "switch_point",
                                    "error")} | {
        "steps": [{k: s.get(k) for k in ("name", "kind", "status", "started", "ended", "output", "error")}
                  for s in rec.get("steps", [])]}


def run_drill(files: int = 20, scenario: str = "kill", report_dir: Path | str | None = None, rows: int = 2000,
              progress: Narrate | None = None, *, concurrency: int = 4, interval: float = 0.1,
              timeout: float = 900.0, keep: bool = False) -> dict[str, Any]:
    """Run one DR drill (see the module docstring) and return its report; write it as JSON and Markdown into
    report_dir when given. The report's `passed` is False when any invariant failed or a step could not be
    carried out (`error` then says which)."""
    if scenario not in SCENARIOS:
        raise RegionflowError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    if files < 2:
        raise RegionflowError("a drill needs at least 2 files (the failure comes half-way through the load)")
    if rows < 1:
        raise RegionflowError("rows must be at least 1")
    started = time.time()
    root = Path(tempfile.mkdtemp(prefix=f"regionflow-drill-{scenario}-"))
    drill = _Drill(root, files, scenario, rows, concurrency, interval, time.monotonic() + timeout, progress)
    error: str | None = None
    try:
        drill.run()
    except SwitchFailed as exc:
        drill.report[exc.what] = exc.record
        error = str(exc)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        drill.teardown()
    if error:
        drill.say(f"drill stopped: {error}")
    elif drill.failures:
        error = "; ".join(drill.failures)
    r = drill.report
    checked = r.get("checked") or {}
    invariants = dict(checked.get("invariants") or {})
    invariants["every_file_submitted"] = bool(drill.uploads) and all(u.submitted for u in drill.uploads)
    invariants["failover_succeeded"] = (r.get("failover") or {}).get("status") == "SUCCEEDED"
    invariants["failback_succeeded"] = (r.get("failback") or {}).get("status") == "SUCCEEDED"
    passed = error is None and bool(checked) and all(invariants.values())
    rpo = r.get("rpo") or {}
    if rpo:
        rpo["detail"] = (f"At the switch {drill.report.get('standby')} did not have {rpo.get('files')} of the "
                         f"{rpo.get('submitted_before_switch')} files submitted before it "
                         f"({rpo.get('unknown_to_standby')} never replicated, {rpo.get('missing_objects')} "
                         f"listed as missing objects); the oldest change it had not applied was "
                         f"{_fmt(rpo.get('seconds'), ' s')} old (method: {rpo.get('method', '-')}). "
                         f"Replication confirmed at the switch: {rpo.get('confirmed')}.")
    report: dict[str, Any] = {
        "scenario": scenario,
        "files": files,
        "rows_per_file": rows,
        "primary": r.get("primary"),
        "standby": r.get("standby"),
        "started_at": started,
        "started_at_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 3),
        "submitted": sum(u.submitted for u in drill.uploads),
        "rto_seconds": {"failover": (r.get("failover") or {}).get("rto_seconds"),
                        "failback": (r.get("failback") or {}).get("rto_seconds")},
        "rpo": {"files": rpo.get("files"), "seconds": rpo.get("seconds"), **{
            k: v for k, v in rpo.items() if k not in ("files", "seconds")}},
        "lost": checked.get("lost"),
        "unfinished": checked.get("unfinished"),
        "duplicated_outputs": checked.get("duplicated_outputs"),
        "duplicated_notifications": checked.get("duplicated_notifications"),
        "missing_notifications": checked.get("missing_notifications"),
        "mismatched_outputs": checked.get("mismatched_outputs"),
        "reprocessed_chunks": checked.get("reprocessed_chunks"),
        "chunk_executions_beyond_one": r.get("chunk_executions_beyond_one"),
        "invariants": invariants,
        "passed": passed,
        "violations": checked.get("violations", []),
        "error": error,
        "expected": getattr(drill, "expected", None),
        "uploads": {"submitted": sum(u.submitted for u in drill.uploads),
                    "retries": sum(max(0, u.attempts - 1) for u in drill.uploads),
                    "found_after_error": sum(u.found_after_error for u in drill.uploads),
                    "failed": [{"key": u.key, "reason": u.failed} for u in drill.uploads if not u.submitted],
                    "errors": sorted({e for u in drill.uploads for e in u.errors})[:20]},
        "failover": _summary(r.get("failover")),
        "failback": _summary(r.get("failback")),
        "timeline": [{"t": e["t"], "event": e["event"]} for e in drill.timeline],
        "paths": {},
    }
    kept = keep or not passed
    paths: dict[str, str | None] = {"workdir": str(root) if kept else None,
                                    "logs": str(root / ".regionflow" / "logs") if kept else None,
                                    "report_json": None, "report_markdown": None}
    if report_dir is not None:
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started))
        paths["report_json"] = str(out / f"drill-{scenario}-{stamp}.json")
        paths["report_markdown"] = str(out / f"drill-{scenario}-{stamp}.md")
    report["paths"] = paths
    if paths["report_json"]:
        Path(paths["report_json"]).write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        Path(paths["report_markdown"] or "").write_text(render_markdown(report), encoding="utf-8")
    if not kept:
        shutil.rmtree(root, ignore_errors=True)
    elif progress is not None:
        progress(f"kept the drill's stack directory for inspection: {root}")
    return report
