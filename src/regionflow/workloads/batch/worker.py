"""The chunk task that runs in an executor worker: read the chunk's byte range of the input, process it,
write the chunk output. Stores, compiled plans and the reference index stay warm in the worker process
across chunks and jobs."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from regionflow.crashpoints import crash_point
from regionflow.errors import RegionflowError
from regionflow.storage import ObjectInfo, ObjectStore, open_object_store
from regionflow.workloads.batch.chunk import ChunkPlan, CompiledPlan, process_chunk
from regionflow.workloads.batch.enrich import Lookup
from regionflow.workloads.batch.reference import index_exists, open_index


class InputChanged(RegionflowError):
    """The object a chunk reads from was replaced: the job's input is not (or no longer) there."""


class ReferenceUnavailable(RegionflowError):
    """The enrichment index is not where the task says, on the machine the task runs on."""


@dataclass
class ChunkTask:
    job_id: str
    idx: int
    store_url: str
    source_key: str  # the input (or its archive copy) holding the chunk's bytes
    source_etag: str  # sha256 of the input: the bytes must come from that content
    byte_offset: int
    byte_length: int
    out_key: str
    first_row: int
    plan: ChunkPlan
    reference_path: str | None  # base path of the saved reference index (either kind: reference.open_index)
    fault_file: str | None = None  # the region's injected faults (storage faults apply here too)
    store_options: dict[str, str | None] = field(default_factory=dict)  # open_object_store's other arguments
    # The job's only chunk: out_key is the job's output, written whole (head, then the rows) with the
    # merged output's metadata, so the merge has nothing to copy.
    final_head: bytes | None = None


@dataclass
class ChunkResult:
    idx: int
    out_info: ObjectInfo
    rows_in: int
    rows_ok: int
    rejects: list[tuple[int, str, str]] = field(default_factory=list)


# Per-process caches: a worker handles many chunks of the same job. Threads of one process share them
# (ThreadExecutor): a miss seen by two threads at once builds twice, and each keeps what it built.
_stores: dict[str, ObjectStore] = {}
_plans: dict[str, tuple[ChunkPlan, CompiledPlan]] = {}
_references: dict[str, Lookup] = {}


def _cached_plan(task: ChunkTask) -> CompiledPlan:
    hit = _plans.get(task.job_id)
    if hit is None or hit[0] != task.plan:
        hit = (task.plan, task.plan.build())
        _plans.clear()
        _plans[task.job_id] = hit
    return hit[1]


def _cached_reference(path: str | None) -> Lookup | None:
    if path is None:
        return None
    index = _references.get(path)
    if index is None:
        if not index_exists(Path(path)):
            # A worker of a cluster on another machine: the job waits (an outage, not the chunk's fault)
            # with this reason in the region's log until the path is there.
            raise ReferenceUnavailable(
                f"the enrichment index {path} is not on this worker's machine ({socket.gethostname()}): "
                "workers on other machines need the region's cache directory at the same path")
        index = open_index(path)
        _references.clear()
        _references[path] = index
    return index


def merged_metadata(job_id: str, rows_ok: int, composed_of: int | None = None) -> dict[str, str]:
    """The user metadata of a job's output: the job and its rows, and the number of chunk outputs it was
    composed of (none for the output a job's only chunk wrote itself)."""
    meta = {"job": job_id, "rows": str(rows_ok)}
    if composed_of is not None:
        meta["chunks"] = str(composed_of)
    return meta


def run_chunk_task(task: ChunkTask) -> ChunkResult:
    """Process one chunk and store its output object; returns what the orchestrator records."""
    store = _stores.get(task.store_url)
    if store is None:
        store = open_object_store(task.store_url, **task.store_options)
        if task.fault_file:
            from regionflow.chaos.faults import FaultRegistry
            from regionflow.chaos.guards import guard_objects

            store = guard_objects(store, FaultRegistry(task.fault_file))
        _stores[task.store_url] = store
    plan = _cached_plan(task)
    info, data = store.read_range(task.source_key, task.byte_offset, task.byte_length)
    if info.etag != task.source_etag:
        raise InputChanged(f"{task.source_key} is no longer the job's input (sha256 {info.etag[:12]}, "
                           f"expected {task.source_etag[:12]})")
    crash_point(f"chunk:{task.idx}")
    outcome = process_chunk(data, plan, _cached_reference(task.reference_path), task.first_row)
    if task.final_head is None:
        info = store.put(task.out_key, outcome.output, content_type="text/csv",
                         metadata={"job": task.job_id, "chunk": str(task.idx)})
    else:
        info = store.put(task.out_key, task.final_head + outcome.output, content_type="text/csv",
                         metadata=merged_metadata(task.job_id, outcome.rows_ok))
    return ChunkResult(task.idx, info, outcome.rows_in, outcome.rows_ok, outcome.rejects)
