"""Reconcile, the batch workload's step of a region switch, in the activating region: claim every
unfinished job under the new epoch and resume it, start inputs that have no job, and report jobs whose
objects are missing (DESIGN §5)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from regionflow.errors import FencedOut
from regionflow.ids import job_id_for
from regionflow.state.base import ChunkStatus, JobRecord, JobStatus
from regionflow.switch.context import StepFailed, StepRun
from regionflow.switch.model import Step
from regionflow.switch.registry import StepKind, StepRegistry
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX, input_source
from regionflow.workloads.batch.service import BatchService

# A job past merge names its output; if that never reached this region (state and objects replicate
# apart), the job is taken back to PROCESSING and merged again here (deterministic: the same bytes).
_MERGED_OR_LATER = (JobStatus.MERGED, JobStatus.NOTIFIED, JobStatus.COMPLETED)
_CHECKS_IN_PARALLEL = 8
T = TypeVar("T")


def _missing_objects(batch: BatchService, job: JobRecord) -> list[str]:
    """Objects the job still needs that are not in this region."""
    has_input = input_source(batch.objects, job) is not None
    if job.status == JobStatus.INITIALIZED:
        return [] if has_input else [job.input_key]
    if job.status in (JobStatus.SPLIT, JobStatus.PROCESSING):
        # Pending chunks are ranges of the input; a done chunk whose output is lost is redone from it too.
        chunks = batch.state.list_chunks(job.job_id)
        pending = any(c.status != ChunkStatus.DONE for c in chunks)
        done_lost = [c.out_key for c in chunks
                     if c.status == ChunkStatus.DONE and c.out_key and batch.objects.head(c.out_key) is None]
        if (pending or done_lost) and not has_input:
            return [job.input_key, *done_lost]
    return []


def _output_lost(batch: BatchService, job: JobRecord) -> bool:
    if job.status not in _MERGED_OR_LATER or not job.output_key:
        return False
    info = batch.objects.head(job.output_key)
    return info is None or info.etag != job.output_etag


def _reopen(batch: BatchService, job: JobRecord, epoch: int) -> JobRecord | None:
    """Claim a job whose output this region lacks and take it back to PROCESSING (None: fenced)."""
    try:
        batch.state.claim_job(job.job_id, region=batch.region, epoch=epoch)
        return batch.state.transition_job(job.job_id, epoch=epoch, from_status=_MERGED_OR_LATER,
                                          to_status=JobStatus.PROCESSING)
    except FencedOut:
        return None


def _checked(jobs: list[JobRecord], check: Callable[[JobRecord], T]) -> list[T]:
    """check for each job, several at a time: against a store on a network (S3) the checks are one round
    trip each, and they are what the switch's RTO waits for here."""
    if len(jobs) < 2:
        return [check(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=_CHECKS_IN_PARALLEL) as pool:
        return list(pool.map(check, jobs))


def reconcile(batch: BatchService, epoch: int, practice: bool = False) -> dict[str, Any]:
    """Claim and queue unfinished jobs, reopen jobs whose output never arrived; returns a report (claimed,
    resumed, reopened, started, missing)."""
    claimed, resumed, missing, started, reopened = [], [], [], [], []
    completed_elsewhere = [j for j in batch.state.list_jobs(status=JobStatus.COMPLETED) if j.owner_epoch < epoch]
    candidates = [j for j in [*batch.state.list_jobs_unfinished(), *completed_elsewhere] if j.owner_epoch <= epoch]
    # (a job owned under a newer epoch than ours is not ours to take)
    to_resume: list[JobRecord] = []
    for job, output_lost in zip(candidates, _checked(candidates, lambda j: _output_lost(batch, j)), strict=True):
        if output_lost:
            if practice:
                reopened.append(job.job_id)
                continue
            again = _reopen(batch, job, epoch)
            if again is None:
                continue
            job = again
            reopened.append(job.job_id)
        elif job.status == JobStatus.COMPLETED:
            continue  # completed elsewhere and its output is here: nothing to do
        to_resume.append(job)
    for job, lost in zip(to_resume, _checked(to_resume, lambda j: _missing_objects(batch, j)), strict=True):
        if lost:
            missing.append({"job_id": job.job_id, "input_key": job.input_key, "status": job.status,
                            "missing": lost})
        if practice:
            claimed.append(job.job_id)
            continue
        if job.owner_epoch < epoch or job.owner_region != batch.region:
            try:
                batch.state.claim_job(job.job_id, region=batch.region, epoch=epoch)
            except FencedOut:
                continue
            claimed.append(job.job_id)
        if not lost:
            batch.enqueue(job.job_id)
            resumed.append(job.job_id)
        # a job with missing objects stays claimed; the sweep starts it when they arrive
    for info in batch.objects.list(INPUT_PREFIX):
        job_id = job_id_for(info.key, info.version_id)
        if batch.state.get_job(job_id) is None:
            if not practice:
                batch.object_created(info.key)
            started.append(job_id)
    if not practice:
        batch.metrics.files_reconciled.inc(len(resumed) + len(started))
    return {"epoch": epoch, "claimed": claimed, "resumed": resumed, "reopened": reopened, "started": started,
            "missing": missing, "practice": practice}


def reconcile_step(run: StepRun, step: Step, deadline: float) -> dict[str, Any]:
    """The plan step: reconcile in the activating region, under the epoch the switch set."""
    control = run.ctx.control
    epoch = run.epoch if run.epoch is not None else control.get(fresh=True).epoch
    active = control.get(fresh=True).active_region
    if not run.practice and active != run.ctx.name:
        raise StepFailed(f"{run.ctx.name} is not the active region ({active} is); reconcile only runs there")
    report = reconcile(run.ctx.service(BatchService), epoch, practice=run.practice)
    run.missing = report["missing"]
    return report


def register_steps(steps: StepRegistry) -> None:
    """The batch workload's step kinds."""
    # Reconcile ends the RTO: the region then accepts uploads and has resumed every job.
    steps.register(StepKind("reconcile", reconcile_step, ends_rto=True))
