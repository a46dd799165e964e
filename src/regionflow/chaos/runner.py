"""Run a Chaos Toolkit experiment against a regionflow stack and summarise its journal.

``chaos --no-version-check run`` runs in a subprocess (the ``chaos`` script beside this interpreter) with
REGIONFLOW_CONFIG set, so experiments find the stack through their ``regionflow_config`` configuration key.
Rollbacks are always played (``--rollback-strategy always``), so a stack is put back even when the method
or the hypothesis went wrong.

Chaos Toolkit checks the steady-state hypothesis after the method, before the rollbacks. The runner then
checks it once more, after the rollbacks: a second ``chaos run`` of an experiment holding only the same
hypothesis (and one probe as its method). Its result is ``steady_state_after_rollbacks`` in the summary,
and ``recovered`` says whether it was met.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from regionflow.errors import RegionflowError

DEFAULT_TIMEOUT = 600.0
CHECK_TIMEOUT = 180.0


class ExperimentError(RegionflowError):
    """The experiment could not be run (missing file, bad JSON, chaos not installed, timeout)."""


def chaos_command() -> str:
    """The `chaos` script of this environment (beside sys.executable), else the one on PATH."""
    beside = Path(sys.executable).parent / "chaos"
    if beside.exists():
        return str(beside)
    found = shutil.which("chaos")
    if not found:
        raise ExperimentError("the `chaos` command (package chaostoolkit) is not installed")
    return found


def load_experiment(path: str | Path) -> dict[str, Any]:
    """The experiment at path as a dict; ExperimentError with a one-line reason if it is not one."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExperimentError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExperimentError(f"{p}: cannot read: {getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ExperimentError(f"{p}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data.get("title") or not isinstance(data.get("method"), list):
        raise ExperimentError(f"{p}: not a Chaos Toolkit experiment (needs a title and a method)")
    return data


def _chaos_run(experiment: Path, config_path: Path, journal: Path, timeout: float, *extra: str) -> None:
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.unlink(missing_ok=True)
    env = {**os.environ, "REGIONFLOW_CONFIG": str(config_path)}
    cmd = [chaos_command(), "--no-version-check", "--settings", str(journal.with_suffix(".settings.yaml")),
           "--log-file", str(journal.with_suffix(".log")), "run", "--journal-path", str(journal),
           "--rollback-strategy", "always", *extra, str(experiment)]
    try:
        subprocess.run(cmd, cwd=config_path.parent, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ExperimentError(f"{experiment.name}: chaos run did not finish within {timeout:g}s "
                              f"(log: {journal.with_suffix('.log')})") from None
    if not journal.exists():
        raise ExperimentError(f"{experiment.name}: chaos run wrote no journal (log: {journal.with_suffix('.log')})")


def _probes(state: dict | None) -> list[dict[str, Any]] | None:
    if state is None:
        return None
    return [{"name": p["activity"].get("name"), "tolerance_met": bool(p.get("tolerance_met")),
             "status": p.get("status"), "output": p.get("output")} for p in state.get("probes", [])]


def _activities(runs: list[dict] | None) -> list[dict[str, Any]]:
    out = []
    for r in runs or []:
        item = {"name": r["activity"].get("name"), "type": r["activity"].get("type"), "status": r.get("status"),
                "duration": round(float(r.get("duration") or 0.0), 3)}
        if r.get("exception"):
            item["error"] = "".join(r["exception"]).strip().splitlines()[-1]
        out.append(item)
    return out


def _met(state: dict | None) -> bool:
    return bool(state and state.get("steady_state_met") and all(p.get("tolerance_met") for p in state["probes"]))


def _check_after_rollbacks(experiment: dict, config_path: Path, journal: Path, timeout: float) -> dict | None:
    """Run the experiment's hypothesis alone, after its rollbacks; that run's steady state."""
    hypothesis = experiment.get("steady-state-hypothesis")
    if not hypothesis:
        return None
    probe = {"type": "probe", "name": "active-region",
             "provider": {"type": "python", "module": "regionflow.chaos.probes", "func": "active_region",
                          "arguments": {"config_path": "${regionflow_config}"}}}
    check = {key: experiment[key] for key in ("configuration", "secrets", "extensions") if key in experiment}
    check.update({"title": f"{experiment['title']} (hypothesis after the rollbacks)",
                  "description": "The steady-state hypothesis, checked again once the rollbacks have run.",
                  "steady-state-hypothesis": hypothesis, "method": [probe]})
    check.setdefault("configuration", {})["regionflow_config"] = {"type": "env", "key": "REGIONFLOW_CONFIG"}
    check_file = journal.with_name(journal.stem + ".after-rollbacks.experiment.json")
    check_file.write_text(json.dumps(check, indent=2))
    check_journal = journal.with_name(journal.stem + ".after-rollbacks.json")
    _chaos_run(check_file, config_path, check_journal, timeout, "--hypothesis-strategy", "before-method-only")
    return json.loads(check_journal.read_text())["steady_states"]["before"]


def summarize(journal: dict, after_rollbacks: dict | None, journal_path: Path) -> dict[str, Any]:
    """The summary of a journal (see run_experiment)."""
    steady = journal.get("steady_states") or {}
    return {
        "title": journal.get("experiment", {}).get("title"),
        "status": journal.get("status"),
        "deviated": bool(journal.get("deviated")),
        "steady_state_before": _probes(steady.get("before")),
        "steady_state_after": _probes(steady.get("after")),
        "method": _activities(journal.get("run")),
        "rollbacks": _activities(journal.get("rollbacks")),
        "steady_state_after_rollbacks": _probes(after_rollbacks),
        "recovered": _met(after_rollbacks),
        "duration": round(float(journal.get("duration") or 0.0), 3),
        "journal": str(journal_path),
    }


def run_experiment(path: str | Path, config_path: str | Path, journal_path: str | Path,
                   timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Run the experiment at path against the stack of config_path; write its journal to journal_path.

    Returns {title, status, deviated, steady_state_before, steady_state_after (each probe's name and
    whether it met its tolerance), method (each activity: name, status, duration), rollbacks (same),
    steady_state_after_rollbacks, recovered, duration, journal}. Raises ExperimentError when it could not
    run at all. The whole run, including the check after the rollbacks, is bounded by timeout.
    """
    experiment_path = Path(path).absolute()
    experiment = load_experiment(experiment_path)
    config = Path(config_path).expanduser().absolute()
    if config.is_dir():
        config = config / "regionflow.toml"
    if not config.is_file():
        raise ExperimentError(f"{config}: no such file (run `regionflow init`)")
    journal = Path(journal_path).absolute()
    started = time.monotonic()
    _chaos_run(experiment_path, config, journal, timeout)
    try:
        record = json.loads(journal.read_text())
    except ValueError as exc:
        raise ExperimentError(f"{journal}: journal is not valid JSON: {exc}") from None
    left = timeout - (time.monotonic() - started)
    after = None
    if left > 0:
        after = _check_after_rollbacks(experiment, config, journal, min(left, CHECK_TIMEOUT))
    return summarize(record, after, journal)
