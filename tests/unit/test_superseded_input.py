"""The trigger does not process an input version older than one already processed (a late replica)."""

from __future__ import annotations

from pathlib import Path

from regionflow.executor import LocalExecutor
from regionflow.notify import OutboxNotifier
from regionflow.state import open_state_store
from regionflow.storage.file import FileObjectStore
from regionflow.workloads.batch.events import FixedOwner
from regionflow.workloads.batch.orchestrator import Orchestrator
from regionflow.workloads.batch.pipeline import default_pipeline

REGION = "us-west-2"


def test_an_older_version_that_reappears_after_a_newer_one_was_processed_starts_no_job(tmp_path: Path):
    objects = FileObjectStore(tmp_path / "bucket")
    state = open_state_store(f"sqlite:///{tmp_path / 'state.db'}", REGION)
    executor = LocalExecutor(1)
    orch = Orchestrator(objects=objects, store_url=f"file://{tmp_path / 'bucket'}", state=state, executor=executor,
                        notifier=OutboxNotifier(tmp_path / "outbox"), pipeline=default_pipeline(), region=REGION,
                        events=FixedOwner(REGION), signing_key=b"k" * 32, link_base="http://127.0.0.1:1",
                        cache_dir=tmp_path / "cache")
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
