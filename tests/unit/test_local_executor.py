"""The process pool executor's warm-up: a region serves once its workers have imported what tasks need."""

from __future__ import annotations

import os

from executorkit import square_unless_three
from regionflow.executor.local import LocalExecutor


def test_warm_up_returns_once_every_worker_has_imported_its_preload(tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("REGIONFLOW_TEST_MARKERS", str(markers))
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    ex = LocalExecutor(2, preload=("executor_preload_marker",))
    try:
        ex.warm_up()
        # both workers imported the (slow) preload before warm_up returned: nothing is left for the first tasks
        assert len(list(markers.iterdir())) == 2
        assert dict(ex.map_unordered(square_unless_three, [1, 2])) == {1: 1, 2: 4}
        assert len(list(markers.iterdir())) == 2  # the same two workers ran them
    finally:
        ex.close()
