"""The trigger does not process an input version older than one already processed (a late replica)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from regionflow.executor import LocalExecutor
from regionflow.notify import OutboxNotifier
from regionflow.state import open_state_store
from regionflow.storage.file import FileObjectStore
from regionflow.workloads.batch.events import FixedOwner
from regionflow.workloads.batch.orchestrator import Orchestrator
from regionflow.workloads.batch.pipeline import default_pipeline

REGION = "us-west-2"


def _orchestrator(tmp_path: Path, objects: FileObjectStore, state, executor: LocalExecutor) -> Orchestrator:
    return Orchestrator(objects=objects, store_url=f"file://{tmp_path / 'bucket'}", state=state, executor=executor,
                        notifier=OutboxNotifier(tmp_path / "outbox"), pipeline=default_pipeline(), region=REGION,
                        events=FixedOwner(REGION), signing_key=b"k" * 32, link_base="http://127.0.0.1:1",
                        cache_dir=tmp_path / "cache")


def test_an_older_version_that_reappears_after_a_newer_one_was_processed_starts_no_job(tmp_path: Path):
    objects = FileObjectStore(tmp_path / "bucket")
    state = open_state_store(f"sqlite:///{tmp_path / 'state.db'}", REGION)
    executor = LocalExecutor(1)
    orch = _orchestrator(tmp_path, objects, state, executor)
    try:
        older = objects.put("input/a.csv", b"a,b\n")
        newer = objects.put("input/a.csv", b"a,b\n")  # the client's resend, processed first
        assert orch.trigger("input/a.csv") is not None
        objects.put("input/a.csv", b"a,b\n", version_id=older.version_id)  # the older one, replicated late
        assert orch.trigger("input/a.csv") is None
        assert [j.version_id for j in state.list_jobs(input_key="input/a.csv")] == [newer.version_id]
    finally:
        executor.close()
        state.close()


def test_a_job_taken_over_before_its_split_runs_from_the_archive_copy_when_the_input_is_gone(tmp_path: Path):
    """State and objects replicate apart: the region taking over can hold the job still INITIALIZED while the
    old owner's archive copy and the input's delete have arrived. The split reads the archive copy."""
    from batchkit import independent_join
    from regionflow.state.base import JobStatus
    from regionflow.workloads.batch.reference import load_reference_table
    from regionflow.workloads.batch.sample import generate

    data = tmp_path / "data"
    generate(300, data, invalid_ratio=0.0, seed=5)
    objects = FileObjectStore(tmp_path / "bucket")
    state = open_state_store(f"sqlite:///{tmp_path / 'state.db'}", REGION)
    enrichment = default_pipeline().enrichment
    assert enrichment is not None
    load_reference_table(state, enrichment.table, data / "financial_data.csv", enrichment.reference_key)
    executor = LocalExecutor(1)
    orch = _orchestrator(tmp_path, objects, state, executor)
    try:
        body = (data / "orders.csv").read_bytes()
        info = objects.put("input/orders.csv", body)
        job_id = orch.trigger("input/orders.csv")
        assert job_id is not None
        # What the old owner did before it died: archived the input and deleted it.
        objects.put(f"archive/{info.version_id}/orders.csv", body)
        objects.delete("input/orders.csv")
        job = orch.run_job(job_id)
        assert job.status == JobStatus.COMPLETED
        assert job.rows_in == job.rows_ok + job.rows_rejected == 300
        out = objects.get(job.output_key).decode()
        expected = independent_join(body.decode(), (data / "financial_data.csv").read_text())
        assert list(csv.reader(io.StringIO(out)))[1:] == expected
    finally:
        executor.close()
        state.close()
