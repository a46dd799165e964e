"""The DR drill's report: one JSON-able dict (what `drill --json` prints and the JSON file holds) and its
Markdown rendering, both written into the report directory when one is given."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regionflow.drill.loadtest import Upload


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}{unit}"
    return f"{v}{unit}"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: verdict, RTO/RPO, counts, invariants, timeline, violations."""
    rto = report.get("rto_seconds") or {}
    rpo = report.get("rpo") or {}
    verdict = "PASSED" if report.get("passed") else "FAILED"
    lines = [
        f"# regionflow DR drill: {report['scenario']} - {verdict}",
        "",
        f"{report['files']} files of {report.get('rows_per_file')} rows through the access point; "
        f"{report.get('primary')} failed mid-way, failover to {report.get('standby')}, failback. "
        f"Started {report.get('started_at_iso', '-')}, took {_fmt(report.get('seconds'), ' s')}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| RTO failover | {_fmt(rto.get('failover'), ' s')} |",
        f"| RTO failback | {_fmt(rto.get('failback'), ' s')} |",
        f"| RPO files (not in {report.get('standby')} at the switch) | {_fmt(rpo.get('files'))} |",
        f"| RPO seconds (replication not applied at the switch) | {_fmt(rpo.get('seconds'), ' s')} |",
        f"| files submitted | {_fmt(report.get('submitted'))} of {report['files']} |",
        f"| lost (no output) | {_fmt(report.get('lost'))} |",
        f"| unfinished (no job completed) | {_fmt(report.get('unfinished'))} |",
        f"| duplicated outputs | {_fmt(report.get('duplicated_outputs'))} |",
        f"| duplicated notifications | {_fmt(report.get('duplicated_notifications'))} |",
        f"| missing notifications | {_fmt(report.get('missing_notifications'))} |",
        f"| reprocessed chunks (attempts beyond 1, final state) | {_fmt(report.get('reprocessed_chunks'))} |",
        f"| chunk executions beyond one per chunk (both regions' logs) | "
        f"{_fmt(report.get('chunk_executions_beyond_one'))} |",
        f"| upload retries | {_fmt((report.get('uploads') or {}).get('retries'))} |",
        "",
        "## Invariants",
        "",
        "| invariant | |",
        "|---|---|",
    ]
    for name, ok in (report.get("invariants") or {}).items():
        lines.append(f"| {name.replace('_', ' ')} | {'ok' if ok else '**FAILED**'} |")
    lines += ["", "Reprocessed chunks count the attempts recorded in the final state; a region's own attempts can be "
                  "replaced by the other region's record of the chunk when replication converges, so the logged "
                  "executions (both regions' logs survive a kill) are the upper figure."]
    if rpo.get("detail"):
        lines += ["", "## RPO", "", rpo["detail"]]
        if rpo.get("jobs"):
            lines.append("")
            lines.append("Jobs the standby did not have at the switch: " + ", ".join(rpo["jobs"][:20])
                         + (" ..." if len(rpo["jobs"]) > 20 else ""))
    for title, key in (("Failover", "failover"), ("Failback", "failback")):
        rec = report.get(key)
        if not rec:
            continue
        lines += ["", f"## {title}: {rec.get('execution_id')} {rec.get('status')} "
                      f"(RTO {_fmt(rec.get('rto_seconds'), ' s')})", "", "| step | kind | status | seconds |",
                  "|---|---|---|---|"]
        for step in rec.get("steps", []):
            secs = step["ended"] - step["started"] if step.get("ended") and step.get("started") else None
            lines.append(f"| {step['name']} | {step['kind']} | {step['status']} | {_fmt(secs)} |")
    if report.get("timeline"):
        lines += ["", "## Timeline", "", "| t (s) | event |", "|---|---|"]
        lines += [f"| {e['t']:.2f} | {e['event']} |" for e in report["timeline"]]
    if report.get("violations"):
        lines += ["", "## Violations", ""]
        lines += [f"- {v}" for v in report["violations"][:100]]
    if report.get("error"):
        lines += ["", "## Error", "", f"```\n{report['error']}\n```"]
    paths = report.get("paths") or {}
    if any(paths.values()):
        lines += ["", "## Files", ""]
        lines += [f"- {k}: `{v}`" for k, v in paths.items() if v]
    return "\n".join(lines) + "\n"


def execution_summary(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    """The fields of a failover/failback execution record the report keeps (steps without their noise)."""
    if not rec:
        return None
    return {k: rec.get(k) for k in ("execution_id", "target", "status", "rto_seconds", "desired_rto_seconds",
                                    "command_seconds", "started_at", "ended_at", "missing", "switch_point",
                                    "error")} | {
        "steps": [{k: s.get(k) for k in ("name", "kind", "status", "started", "ended", "output", "error")}
                  for s in rec.get("steps", [])]}


@dataclass
class Outcome:
    """What a drill run produced, handed from the scenario to the report.

    steps holds primary, standby, failover and failback (execution records), rpo, checked (the result of
    check_invariants) and chunk_executions_beyond_one, each present once its step ran."""

    scenario: str
    files: int
    rows: int
    started: float  # wall clock
    uploads: list[Upload] = field(default_factory=list)
    steps: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    expected: dict[str, Any] | None = None
    error: str | None = None
    backends: dict[str, Any] = field(default_factory=dict)  # what the stack's stores and control run on


def _rpo_detail(rpo: dict[str, Any], standby: str | None) -> str:
    return (f"At the switch {standby} did not have {rpo.get('files')} of the "
            f"{rpo.get('submitted_before_switch')} files submitted before it "
            f"({rpo.get('unknown_to_standby')} never replicated, {rpo.get('missing_objects')} "
            f"listed as missing objects); the oldest change it had not applied was "
            f"{_fmt(rpo.get('seconds'), ' s')} old (method: {rpo.get('method', '-')}). "
            f"Replication confirmed at the switch: {rpo.get('confirmed')}. "
            f"Uploads were acknowledged in {rpo.get('upload_mode') or '-'} mode; "
            f"{rpo.get('unconfirmed_uploads', '-')} of them without {standby}'s confirmation.")


def build_report(o: Outcome) -> dict[str, Any]:
    """The report of a drill run. `passed` is False when any invariant failed or a step could not be carried
    out (`error` then says which); `paths` is left empty for write_report."""
    r = o.steps
    checked = r.get("checked") or {}
    invariants = dict(checked.get("invariants") or {})
    # three invariants of the run itself, beside those of the gathered data
    invariants["every_file_submitted"] = bool(o.uploads) and all(u.submitted for u in o.uploads)
    invariants["failover_succeeded"] = (r.get("failover") or {}).get("status") == "SUCCEEDED"
    invariants["failback_succeeded"] = (r.get("failback") or {}).get("status") == "SUCCEEDED"
    passed = o.error is None and bool(checked) and all(invariants.values())
    rpo = dict(r.get("rpo") or {})
    if rpo:
        rpo["detail"] = _rpo_detail(rpo, r.get("standby"))
    submitted = sum(u.submitted for u in o.uploads)
    return {
        "scenario": o.scenario,
        "files": o.files,
        "rows_per_file": o.rows,
        "backends": o.backends,
        "primary": r.get("primary"),
        "standby": r.get("standby"),
        "started_at": o.started,
        "started_at_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(o.started)),
        "seconds": round(time.time() - o.started, 3),
        "submitted": submitted,
        "rto_seconds": {"failover": (r.get("failover") or {}).get("rto_seconds"),
                        "failback": (r.get("failback") or {}).get("rto_seconds")},
        "rpo": {"files": rpo.get("files"), "seconds": rpo.get("seconds"), **{
            k: v for k, v in rpo.items() if k not in ("files", "seconds")}},
        "lost": checked.get("lost"),
        "unfinished": checked.get("unfinished"),
        "duplicated_outputs": checked.get("duplicated_outputs"),
        "duplicated_notifications": checked.get("duplicated_notifications"),
        "missing_notifications": checked.get("missing_notifications"),
        "mismatched_outputs": checked.get("mismatched_outputs"),
        "reprocessed_chunks": checked.get("reprocessed_chunks"),
        "chunk_executions_beyond_one": r.get("chunk_executions_beyond_one"),
        "invariants": invariants,
        "passed": passed,
        "violations": checked.get("violations", []),
        "error": o.error,
        "expected": o.expected,
        "uploads": {"submitted": submitted,
                    "retries": sum(max(0, u.attempts - 1) for u in o.uploads),
                    "found_after_error": sum(u.found_after_error for u in o.uploads),
                    "failed": [{"key": u.key, "reason": u.failed} for u in o.uploads if not u.submitted],
                    "errors": sorted({e for u in o.uploads for e in u.errors})[:20]},
        "failover": execution_summary(r.get("failover")),
        "failback": execution_summary(r.get("failback")),
        "timeline": [{"t": e["t"], "event": e["event"]} for e in o.timeline],
        "paths": {},
    }


def write_report(report: dict[str, Any], report_dir: Path | str | None, workdir: Path | None) -> dict[str, Any]:
    """Fill report["paths"] (the kept stack directory and its logs, when workdir is given; the report files)
    and write the report as JSON and Markdown into report_dir when given; returns the report."""
    paths: dict[str, str | None] = {"workdir": str(workdir) if workdir else None,
                                    "logs": str(workdir / ".regionflow" / "logs") if workdir else None,
                                    "report_json": None, "report_markdown": None}
    if report_dir is not None:
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(report["started_at"]))
        paths["report_json"] = str(out / f"drill-{report['scenario']}-{stamp}.json")
        paths["report_markdown"] = str(out / f"drill-{report['scenario']}-{stamp}.md")
    report["paths"] = paths
    if paths["report_json"] and paths["report_markdown"]:
        Path(paths["report_json"]).write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        Path(paths["report_markdown"]).write_text(render_markdown(report), encoding="utf-8")
    return report
