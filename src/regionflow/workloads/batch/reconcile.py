"""Reconcile, in the activating region: claim every unfinished job under the new epoch and resume it,
start inputs that have no job, and report jobs whose objects are missing (DESIGN §5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from regionflow.errors import FencedOut
from regionflow.ids import job_id_for
from regionflow.state.base import ChunkStatus, JobRecord, JobStatus
from regionflow.workloads.batch.orchestrator import INPUT_PREFIX

if TYPE_CHECKING:
    from regionflow.region.runtime import Region


def _missing_objects(region: Region, job: JobRecord) -> list[str]:
    """Objects the job still needs that are not in this region."""
    input_info = region.objects.head(job.input_key)
    has_input = input_info is not None and input_info.version_id == job.version_id
    if job.status == JobStatus.INITIALIZED:
        return [] if has_input else [job.input_key]
    if job.status in (JobStatus.SPLIT, JobStatus.PROCESSING):
        pending = [c for c in region.state.list_chunks(job.job_id) if c.status != ChunkStatus.DONE]
        lost = [c.object_key for c in pending if region.objects.head(c.object_key) is None]
        done_lost = [c.out_key for c in region.state.list_chunks(job.job_id)
                     if c.status == ChunkStatus.DONE and c.out_key and region.objects.head(c.out_key) is None]
        if (lost or done_lost) and not has_input:
            return [job.input_key, *lost, *done_lost]
    return []


def reconcile(region: Region, epoch: int, practice: bool = False) -> dict:
    """Claim and queue unfinished jobs; returns a report (claimed, resumed, started, missing)."""
    claimed, resumed, missing, started = [], [], [], []
    for job in region.state.list_jobs_unfinished():
        if job.owner_epoch > epoch:
            continue  # owned under a newer epoch than ours: not ours to take
        lost = _missing_objects(region, job)
        if lost:
            missing.append({"job_id": job.job_id, "input_key": job.input_key, "status": job.status,
                            "missing": lost})
        if practice:
            claimed.append(job.job_id)
            continue
        if job.owner_epoch < epoch or job.owner_region != region.name:
            try:
                region.state.claim_job(job.job_id, region=region.name, epoch=epoch)
            except FencedOut:
                continue
            claimed.append(job.job_id)
        if not lost:
            region.enqueue(job.job_id)
            resumed.append(job.job_id)
        # a job with missing objects stays claimed; the sweep starts it when they arrive
    for info in region.objects.list(INPUT_PREFIX):
        job_id = job_id_for(info.key, info.version_id)
        if region.state.get_job(job_id) is None:
            if not practice:
                region.object_created(info.key)
            started.append(job_id)
    if not practice:
        region.metrics.files_reconciled.inc(len(resumed) + len(started))
    return {"epoch": epoch, "claimed": claimed, "resumed": resumed, "started": started, "missing": missing,
            "practice": practice}
