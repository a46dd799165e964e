"""The DR drill's invariants: pure functions over the data gathered from both regions and the shared outbox
(no I/O), so any state, good or broken, can be fabricated and checked.

The gathered data (see drill/observe.py, `collect`)::

    expected:      {"output_sha256", "rows_in", "rows_ok", "rows_rejected"} of the single-region run
    submitted:     [{"key", "job_id"}] uploads that succeeded (one per file)
    authoritative: the region active at the end (its records are the final word)
    regions:       {name: {"jobs": [job records], "outputs": {output key: sha256 or None (absent)},
                           "chunks": {job_id: [{"idx", "attempts", ...}]}, "rejects": {job_id: [row_no, ...]}}}
    notifications: [{"file", "job_id"}] the .eml files of the shared outbox
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regionflow.state.base import JobStatus
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX, OUTPUT_PREFIX

# Job fields both regions must agree on once replication has drained.
CONVERGED_FIELDS = ("status", "owner_region", "owner_epoch", "rows_in", "rows_ok", "rows_rejected", "output_key",
                    "output_etag", "completing_region")

Job = dict[str, Any]


def output_key_for(input_key: str) -> str:
    """Where the merge step writes the output of input_key (output/completed/<name>)."""
    return OUTPUT_PREFIX + (input_key[len(INPUT_PREFIX):] if input_key.startswith(INPUT_PREFIX)
                            else input_key.rsplit("/", 1)[-1])


def records_agree(views: Mapping[str, Mapping[str, Job]]) -> bool:
    """Whether every region knows the same jobs and agrees on their CONVERGED_FIELDS."""
    regions = list(views.values())
    if not regions:
        return True
    first = regions[0]
    for other in regions[1:]:
        if set(other) != set(first):
            return False
        if any(other[j].get(f) != first[j].get(f) for j in first for f in CONVERGED_FIELDS):
            return False
    return True


@dataclass
class JobIndex:
    """The jobs of every region, by region and merged (the authoritative region's record wins)."""

    authoritative: str
    by_region: dict[str, dict[str, Job]]
    union: dict[str, Job]
    by_key: dict[str, list[Job]]

    @classmethod
    def build(cls, regions: Mapping[str, Mapping[str, Any]], authoritative: str) -> JobIndex:
        by_region = {name: {j["job_id"]: j for j in r.get("jobs", [])} for name, r in regions.items()}
        union: dict[str, Job] = {}
        for name, jobs in by_region.items():
            for job_id, job in jobs.items():
                if job_id not in union or name == authoritative:
                    union[job_id] = job
        by_key: dict[str, list[Job]] = defaultdict(list)
        for job in union.values():
            by_key[job["input_key"]].append(job)
        return cls(authoritative, by_region, union, dict(by_key))

    def completed_in_authoritative(self, job_id: str) -> bool:
        job = self.by_region.get(self.authoritative, {}).get(job_id)
        return job is not None and job.get("status") == JobStatus.COMPLETED


@dataclass
class FileTally:
    """What the per-file checks found: counts for the report and the violations behind them."""

    lost: int = 0
    unfinished: int = 0
    duplicated_outputs: int = 0
    duplicated_notifications: int = 0
    missing_notifications: int = 0
    mismatched: int = 0
    violations: list[str] = field(default_factory=list)


def _states(jobs: list[Job]) -> str:
    return "; ".join(
        f"{j['job_id']} {j['status']} (owner {j.get('owner_region')} epoch {j.get('owner_epoch')}"
        f"{', ' + str(j['reason']) if j.get('reason') else ''})" for j in jobs) or "no job"


def check_files(data: Mapping[str, Any], index: JobIndex) -> FileTally:
    """Each submitted file: an output in the authoritative region, a job completed there, exactly one
    completed job, outputs identical to the single-region run everywhere, exactly one notification. Then
    completed jobs for files nobody submitted and notifications for jobs no region knows."""
    expected = data["expected"]
    regions: Mapping[str, Mapping[str, Any]] = data["regions"]
    auth_name = index.authoritative
    auth_outputs = regions[auth_name]["outputs"]
    emls = Counter(n["job_id"] for n in data.get("notifications", []))
    t = FileTally()
    for s in data["submitted"]:
        key, job_id = s["key"], s["job_id"]
        jobs = index.by_key.get(key, [])
        if job_id not in index.union:
            t.violations.append(f"{key}: its upload's job {job_id} is in no region")
        states = _states(jobs)
        out_keys = sorted({j["output_key"] for j in jobs if j.get("output_key")} | {output_key_for(key)})
        if not any(auth_outputs.get(k) for k in out_keys):
            t.lost += 1
            t.violations.append(f"{key}: lost: no output in {auth_name} ({states})")
        completed = [j for j in jobs if j["status"] == JobStatus.COMPLETED]
        if not any(index.completed_in_authoritative(j["job_id"]) for j in completed):
            t.unfinished += 1
            t.violations.append(f"{key}: no job completed in {auth_name}: {states}")
        if len(completed) > 1:
            t.duplicated_outputs += len(completed) - 1
            t.violations.append(f"{key}: {len(completed)} completed jobs: "
                                f"{', '.join(j['job_id'] for j in completed)}")
        for k in out_keys:
            for name, r in regions.items():
                sha = r["outputs"].get(k)
                if sha is not None and sha != expected["output_sha256"]:
                    t.mismatched += 1
                    t.violations.append(f"{key}: output {k} in {name} differs from the single-region run "
                                        f"(sha256 {sha[:12]} != {expected['output_sha256'][:12]})")
        # a retried upload can make a second job for the same file: its notification counts for the file
        notes = sum(emls.get(j["job_id"], 0) for j in jobs) if jobs else emls.get(job_id, 0)
        if notes == 0:
            t.missing_notifications += 1
            t.violations.append(f"{key}: no notification")
        elif notes > 1:
            t.duplicated_notifications += notes - 1
            t.violations.append(f"{key}: {notes} notifications")
    submitted_keys = {s["key"] for s in data["submitted"]}
    for key, jobs in index.by_key.items():
        if key not in submitted_keys:
            stray = [j for j in jobs if j["status"] == JobStatus.COMPLETED]
            if stray:
                t.duplicated_outputs += len(stray)
                t.violations.append(f"{key}: {len(stray)} completed job(s) for a file nobody submitted")
    for job_id, count in emls.items():
        if job_id not in index.union:
            t.duplicated_notifications += count
            t.violations.append(f"notification for unknown job {job_id} ({count})")
    return t


@dataclass
class RowChecks:
    """rows_in = rows_ok + rows_rejected, counts as in the single-region run, each reject recorded once."""

    balanced: bool = True
    counts_match: bool = True
    rejects_once: bool = True
    violations: list[str] = field(default_factory=list)


def check_rows(regions: Mapping[str, Mapping[str, Any]], index: JobIndex, expected: Mapping[str, Any]) -> RowChecks:
    """The row counts of every completed job in every region, against each other and the single-region run."""
    c = RowChecks()
    want = (expected["rows_in"], expected["rows_ok"], expected["rows_rejected"])
    for name, jobs in index.by_region.items():
        for job in jobs.values():
            if job["status"] != JobStatus.COMPLETED:
                continue
            rows_in, ok, rej = job.get("rows_in"), job.get("rows_ok"), job.get("rows_rejected")
            if rows_in is None or ok is None or rej is None or rows_in != ok + rej:
                c.balanced = False
                c.violations.append(f"{job['job_id']} in {name}: rows_in {rows_in} != ok {ok} + rejected {rej}")
            if (rows_in, ok, rej) != want:
                c.counts_match = False
                c.violations.append(f"{job['job_id']} in {name}: counts {rows_in}/{ok}/{rej} differ from the "
                                    f"single-region run {want[0]}/{want[1]}/{want[2]}")
            rows = regions[name].get("rejects", {}).get(job["job_id"], [])
            dup = [r for r, n in Counter(rows).items() if n > 1]
            if dup:
                c.rejects_once = False
                c.violations.append(f"{job['job_id']} in {name}: rejects recorded twice for rows {sorted(dup)[:10]}")
            if len(rows) != rej:
                c.rejects_once = False
                c.violations.append(f"{job['job_id']} in {name}: {len(rows)} rejects recorded, rows_rejected {rej}")
    return c


def check_one_job_per_upload(index: JobIndex) -> tuple[bool, list[str]]:
    """No two jobs for one input key and version (the job id is derived from both: two means a bug)."""
    versions: dict[tuple[str, str], set[str]] = defaultdict(set)
    for job in index.union.values():
        versions[(job["input_key"], job.get("version_id", ""))].add(job["job_id"])
    violations = [f"{key} version {version}: {len(ids)} jobs ({', '.join(sorted(ids))})"
                  for (key, version), ids in versions.items() if len(ids) > 1]
    return not violations, violations


def check_converged(regions: Mapping[str, Mapping[str, Any]], index: JobIndex) -> tuple[bool, list[str]]:
    """Every job in every region, with the same CONVERGED_FIELDS, and a completed job's output in each."""
    violations: list[str] = []
    for job_id in index.union:
        records = {name: jobs.get(job_id) for name, jobs in index.by_region.items()}
        present = {name: r for name, r in records.items() if r is not None}
        if len(present) < len(records):
            violations.append(f"{job_id}: not in {', '.join(n for n, r in records.items() if r is None)}")
            continue
        first = next(iter(present.values()))
        diff = [f for f in CONVERGED_FIELDS if any(r.get(f) != first.get(f) for r in present.values())]
        if diff:
            violations.append(f"{job_id}: regions disagree on {', '.join(diff)}")
        key = first.get("output_key")
        if first.get("status") == JobStatus.COMPLETED and key:
            absent = [n for n, r in regions.items() if r["outputs"].get(key) is None]
            if absent:
                violations.append(f"{job_id}: output {key} absent in {', '.join(absent)}")
    return not violations, violations


def reprocessed_chunks(chunks: Mapping[str, list[Mapping[str, Any]]], index: JobIndex) -> int:
    """Chunk attempts beyond the first, in the final state of the given region's known jobs."""
    return sum(max(0, int(c.get("attempts") or 0) - 1)
               for job_id, job_chunks in chunks.items() if job_id in index.union for c in job_chunks)


def extra_chunk_executions(started: Mapping[str, int], chunks: Mapping[str, list[Any]]) -> int:
    """Chunk executions started (counted per job from the logs) beyond one per chunk of each job."""
    return sum(max(0, started.get(job_id, 0) - len(c)) for job_id, c in chunks.items())


def check_invariants(data: Mapping[str, Any]) -> dict[str, Any]:
    """Check the drill's invariants over gathered data (the module docstring has its shape); pure.

    A file is lost when no output of it exists in the authoritative region, unfinished when none of its jobs
    reached COMPLETED there (stuck or FAILED, whether or not an output was written).

    Returns lost, unfinished, duplicated_outputs, duplicated_notifications, missing_notifications,
    mismatched_outputs, reprocessed_chunks, invariants {name: bool}, violations [text] and passed.
    """
    regions: Mapping[str, Mapping[str, Any]] = data["regions"]
    index = JobIndex.build(regions, data["authoritative"])
    files = check_files(data, index)
    rows = check_rows(regions, index, data["expected"])
    one_job, one_job_violations = check_one_job_per_upload(index)
    converged, converged_violations = check_converged(regions, index)
    invariants = {
        "every_file_has_an_output": files.lost == 0,
        "every_job_completed": files.unfinished == 0,
        "one_output_per_file": files.duplicated_outputs == 0,
        "outputs_identical_to_single_region_run": files.mismatched == 0,
        "one_notification_per_file": files.duplicated_notifications == 0 and files.missing_notifications == 0,
        "rows_in_equals_ok_plus_rejected": rows.balanced,
        "counts_match_single_region_run": rows.counts_match,
        "no_reject_recorded_twice": rows.rejects_once,
        "one_job_per_upload": one_job,
        "regions_converged": converged,
    }
    return {"lost": files.lost, "unfinished": files.unfinished, "duplicated_outputs": files.duplicated_outputs,
            "duplicated_notifications": files.duplicated_notifications,
            "missing_notifications": files.missing_notifications, "mismatched_outputs": files.mismatched,
            "reprocessed_chunks": reprocessed_chunks(regions[index.authoritative].get("chunks", {}), index),
            "invariants": invariants,
            "violations": files.violations + rows.violations + one_job_violations + converged_violations,
            "passed": all(invariants.values())}
