"""The chunk task as an executor worker runs it: a missing enrichment index is an outage the job waits out
with a clear reason (a Dask worker on a machine without the region's cache), not a crash or a failed job."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from regionflow.storage.file import FileObjectStore
from regionflow.workloads.batch.chunk import ChunkPlan
from regionflow.workloads.batch.orchestrator import _infrastructure
from regionflow.workloads.batch.pipeline import default_pipeline
from regionflow.workloads.batch.reference import index_reference_file
from regionflow.workloads.batch.split import read_header
from regionflow.workloads.batch.worker import ChunkTask, ReferenceUnavailable, run_chunk_task

HEADER = b"uuid,Country,Item Type,Sales Channel,Order Priority,Order Date,Region,Ship Date\n"
ROW = b"535113847,Azerbaijan,Snacks,Online,C,10/8/14,Middle East and North Africa,10/23/14\n"


def _task(tmp_path: Path, reference_path: str) -> tuple[ChunkTask, FileObjectStore]:
    store = FileObjectStore(tmp_path / "bucket")
    info = store.put("input/a.csv", HEADER + ROW)
    pipeline = default_pipeline()
    header, columns = read_header(io.BytesIO(HEADER + ROW), pipeline)
    task = ChunkTask(job_id="job-1", idx=0, store_url=f"file://{tmp_path / 'bucket'}", source_key="input/a.csv",
                     source_etag=info.etag, byte_offset=len(HEADER), byte_length=len(ROW), out_key="work/out/0.csv",
                     first_row=1, plan=ChunkPlan(pipeline.to_dict(), columns, len(header)),
                     reference_path=reference_path)
    return task, store


def test_a_chunk_whose_index_is_not_on_this_machine_waits_with_the_reason(tmp_path: Path) -> None:
    task, store = _task(tmp_path, str(tmp_path / "elsewhere" / "ref-financial_data-r1-uuid"))
    with pytest.raises(ReferenceUnavailable) as info:
        run_chunk_task(task)
    assert "is not on this worker's machine" in str(info.value) and "same path" in str(info.value)
    assert _infrastructure(info.value)  # the orchestrator pauses the job for it, never fails it
    assert store.head("work/out/0.csv") is None


def test_the_same_chunk_runs_once_the_index_is_there(tmp_path: Path) -> None:
    ref = tmp_path / "fin.csv"
    ref.write_text("uuid,unitsSold,unitPrice,unitCost,totalRevenue,totalCost,totalProfit\n"
                   "535113847,934,152.58,97.44,142509.72,91008.96,51500.76\n")
    base = tmp_path / "cache" / "ref-financial_data-r1-uuid"
    pipeline = default_pipeline()
    assert pipeline.enrichment is not None
    index_reference_file(ref, "uuid", pipeline.enrichment.fields, base)
    task, store = _task(tmp_path, str(base))
    result = run_chunk_task(task)
    assert (result.rows_in, result.rows_ok, result.rejects) == (1, 1, [])
    assert store.get("work/out/0.csv").endswith(b",934,152.58,97.44,142509.72,91008.96,51500.76\n")
