"""scripts/check_architecture.py finds cycles (type-only imports included), long modules and layer breaks."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_architecture.py"
spec = importlib.util.spec_from_file_location("check_architecture", SCRIPT)
assert spec is not None and spec.loader is not None
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "regionflow" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_type_only_import_cycle_is_found(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from regionflow.b import thing\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from regionflow import a\nthing = 1\n",
        "c.py": "import regionflow.a\n",
    })
    problems, count = check.problems_in(root)
    assert count == 4
    assert problems == ["import cycle: regionflow.a <-> regionflow.b"]


def test_relative_imports_long_modules_and_forbidden_layers_are_reported(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "switch/__init__.py": "",
        "switch/steps.py": "def f():\n    from ..region import runtime\n",
        "region/__init__.py": "",
        "region/runtime.py": "x = 1\n" * (check.MAX_LINES + 1),
    })
    problems, _ = check.problems_in(root)
    assert any(p.startswith("regionflow.switch.steps imports regionflow.region.runtime") for p in problems)
    assert any("runtime.py: 501 lines" in p for p in problems)


def test_the_real_tree_passes():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
