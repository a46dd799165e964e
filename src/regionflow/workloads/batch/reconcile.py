"""Reconcile, the batch workload's step of a region switch, in the activating region: claim every
unfinished job under the new epoch and resume it, start inputs that have no job, and report jobs whose
objects are missing (DESIGN §5)."""

from __future__ import annotations

from typing import Any

from regionflow.errors import FencedOut
from regionflow.ids import job_id_for
from regionflow.state.base import ChunkStatus, JobRecord, JobStatus
from regionflow.switch.context import StepFailed, StepRun
from regionflow.switch.model import Step
from regionflow.switch.registry import StepKind, StepRegistry
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX
from regionflow.workloads.batch.service import BatchService


def _missing_objects(batch: BatchService, job: JobRecord) -> list[str]:
    """Objects the job still needs that are not in this region."""
    input_info = batch.objects.head(job.input_key)
    has_input = input_info is not None and input_info.version_id == job.version_id
    if job.status == JobStatus.INITIALIZED:
        return [] if has_input else [job.input_key]
    if job.status in (JobStatus.SPLIT, JobStatus.PROCESSING):
        pending = [c for c in batch.state.list_chunks(job.job_id) if c.status != ChunkStatus.DONE]
        lost = [c.object_key for c in pending if batch.objects.head(c.object_key) is None]
        done_lost = [c.out_key for c in batch.state.list_chunks(job.job_id)
                     if c.status == ChunkStatus.DONE and c.out_key and batch.objects.head(c.out_key) is None]
        if (lost or done_lost) and not has_input:
            return [job.input_key, *lost, *done_lost]
    return []


def reconcile(batch: BatchService, epoch: int, practice: bool = False) -> dict[str, Any]:
    """Claim and queue unfinished jobs; returns a report (claimed, resumed, started, missing)."""
    claimed, resumed, missing, started = [], [], [], []
    for job in batch.state.list_jobs_unfinished():
        if job.owner_epoch > epoch:
            continue  # owned under a newer epoch than ours: not ours to take
        lost = _missing_objects(batch, job)
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
    return {"epoch": epoch, "claimed": claimed, "resumed": resumed, "started": started, "missing": missing,
            "practice": practice}


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
