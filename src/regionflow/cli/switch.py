"""Region switch: `failover`, `failback`, `plan run|validate|approve|executions|show|triggers`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from regionflow.cli.output import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    RegionOpt,
    TimeoutOpt,
    call,
    check_region,
    emit,
    err,
    fail,
    fleet_config,
    load_config,
    out,
    with_secrets,
)

plan_app = typer.Typer(no_args_is_help=True, help="Region-switch plans: validate, run, approve, inspect.")

YesOpt = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
PlanOpt = Annotated[str | None, typer.Option(
    "--plan", help="Plan file, or the name of a plan in plans_dir or built in (e.g. ledger); default: the "
                   "configured plan.")]
PracticeOpt = Annotated[bool, typer.Option("--practice", help="Run every check, change nothing.")]


def print_execution(record: dict[str, Any]) -> None:
    """An execution for people: a title with status and RTO, one row per step, then what is missing."""
    rto = record.get("rto_seconds")
    title = (f"{record['execution_id']}: {record['status']}  plan {record['plan']} -> {record['target']}"
             f"{'  (practice)' if record.get('practice') else ''}  RTO "
             f"{'-' if rto is None else f'{rto:.2f}s'} (desired {record['desired_rto_seconds']:g}s)")
    table = Table(title=title)
    for col in ("step", "kind", "status", "seconds", "output"):
        table.add_column(col)
    for step in record.get("steps", []):
        secs = (step["ended"] - step["started"]) if step.get("ended") and step.get("started") else None
        detail = step.get("error") or json.dumps(step.get("output"), default=str)
        table.add_row(step["name"], step["kind"], step["status"], "-" if secs is None else f"{secs:.2f}",
                      detail[:90])
    out.print(table)
    trigger = record.get("trigger")
    if trigger:
        out.print(f"started by trigger {trigger['name']}: {trigger['condition']} held {trigger['held_seconds']:g}s "
                  f"(for {trigger['for_seconds']:g}s) in {trigger['evaluated_in']}; {trigger['detail']}",
                  highlight=False, soft_wrap=True)
    waiting = record.get("waiting_for")
    if waiting and record.get("status") == "WAITING_APPROVAL":
        left = max(0.0, waiting["until"] - time.time())
        out.print(f"waiting for approval at {waiting['step']!r} ({left:.0f}s left, then {waiting['on_timeout']}): "
                  f"regionflow plan approve {record['execution_id']}", highlight=False, soft_wrap=True)
    for m in record.get("missing") or []:
        err.print(f"missing objects for {m['job_id']} ({m['input_key']}): {', '.join(m['missing'][:3])}; it starts "
                  "by itself when they arrive", highlight=False)
    if record.get("error"):
        err.print(f"error: {record['error']}", highlight=False)


def _run_plan(config: Path, plan_file: str, target: str, practice: bool, as_json: bool, timeout: float) -> None:
    from regionflow.api import fleet

    cfg = load_config(config)
    call(lambda: cfg.region(target))
    with_secrets(cfg)

    def waiting(exec_id: str) -> None:
        err.print(f"waiting for approval: regionflow plan approve {exec_id}", highlight=False)

    record = call(lambda: fleet.run_plan_and_wait(cfg, plan_file, target, practice=practice, timeout=timeout,
                                                  on_waiting=None if as_json else waiting,
                                                  started_by=fleet.operator()))
    emit(record, as_json, print_execution)
    if record["status"] != "SUCCEEDED":
        raise typer.Exit(1)


def _confirm_switch(target: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"refusing to switch regions without confirmation: pass --yes (target {target})")
    typed = typer.prompt(f"Type the target region's name ({target}) to make it active")
    if typed.strip() != target:
        fail("confirmation did not match; nothing changed", code=1)


def failover(
    to: Annotated[str, typer.Option("--to", help="Region to activate.")],
    yes: YesOpt = False, plan_file: PlanOpt = None, practice: PracticeOpt = False,
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, timeout: TimeoutOpt = 600.0,
) -> None:
    """Fail over to a region: run the plan's workflow for it, in it."""
    cfg = load_config(config)
    if not practice:
        _confirm_switch(to, yes)
    _run_plan(config, plan_file or cfg.plan_path, to, practice, as_json, timeout)


def failback(
    yes: YesOpt = False, plan_file: PlanOpt = None, practice: PracticeOpt = False,
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, timeout: TimeoutOpt = 600.0,
) -> None:
    """Fail back to the configured primary region."""
    cfg = load_config(config)
    if not practice:
        _confirm_switch(cfg.primary, yes)
    _run_plan(config, plan_file or cfg.plan_path, cfg.primary, practice, as_json, timeout)


@plan_app.command("run")
def plan_run(
    plan_file: Annotated[str, typer.Argument(metavar="FILE", help="Plan (YAML).")],
    activate: Annotated[str, typer.Option("--activate", help="Region the plan activates.")],
    practice: PracticeOpt = False,
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, timeout: TimeoutOpt = 600.0,
) -> None:
    """Run a plan's workflow for REGION, in that region."""
    _run_plan(config, plan_file, activate, practice, as_json, timeout)


@plan_app.command("validate")
def plan_validate(
    plan_file: Annotated[str, typer.Argument(metavar="FILE", help="Plan (YAML).")],
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False,
    offline: Annotated[bool, typer.Option("--offline", help="Check the file only, not the live stack.")] = False,
) -> None:
    """Check a plan (errors with their line) and whether it could run now."""
    from regionflow.config import load_secrets
    from regionflow.region.plan_check import evaluate_plan
    from regionflow.switch.plan import load_plan
    from regionflow.workloads.registry import step_registry

    result: dict[str, Any]
    if offline:
        plan = call(lambda: load_plan(plan_file, step_registry()))
        result = {"status": "ok", "plan": plan_file, "checks": [{"check": "plan is valid", "ok": True,
                                                                   "detail": plan.name}]}
    else:
        cfg = load_config(config)
        result = evaluate_plan(cfg, call(lambda: load_secrets(cfg)), plan_file)

    def render(r: dict[str, Any]) -> None:
        for c in r["checks"]:
            mark = "[green]ok[/]  " if c["ok"] else "[red]FAIL[/]"
            out.print(f"{mark} {c['check']}: {c['detail']}", highlight=False, soft_wrap=True)

    emit(result, as_json, render)
    if result["status"] != "ok":
        first = next(c for c in result["checks"] if not c["ok"])
        if not as_json:
            err.print(f"error: {first['detail']}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@plan_app.command("approve")
def plan_approve(execution_id: Annotated[str, typer.Argument()], config: ConfigOpt = DEFAULT_CONFIG,
                 region: RegionOpt = None, as_json: JsonOpt = False) -> None:
    """Approve a manual_approval step of a running execution."""
    from regionflow.api import fleet

    cfg = load_config(config)
    check_region(cfg, region)
    with_secrets(cfg)
    result = call(lambda: fleet.approve_anywhere(cfg, execution_id, fleet.operator(), region=region))
    emit(result, as_json, lambda _: out.print(f"approved {execution_id}"))


@plan_app.command("executions")
def plan_executions(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Every recorded region-switch execution, newest first."""
    from regionflow.api import fleet

    def render(rows: list[dict[str, Any]]) -> None:
        table = Table(title="plan executions")
        for col in ("execution", "plan", "target", "status", "practice", "RTO s", "desired s", "by"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["execution_id"], r["plan"], r["target"], r["status"], "yes" if r["practice"] else "",
                          "-" if r["rto_seconds"] is None else f"{r['rto_seconds']:.2f}",
                          f"{r['desired_rto_seconds']:g}", r["started_by"])
        out.print(table)

    emit(fleet.all_executions(fleet_config(config)), as_json, render)


@plan_app.command("show")
def plan_show(execution_id: Annotated[str, typer.Argument()], config: ConfigOpt = DEFAULT_CONFIG,
              as_json: JsonOpt = False) -> None:
    """One execution: steps with start, end, status and output; RTO; missing-objects report."""
    from regionflow.api import fleet

    match = [r for r in fleet.all_executions(fleet_config(config)) if r["execution_id"] == execution_id]
    if not match:
        fail(f"no execution {execution_id}", code=1)
    emit(match[0], as_json, print_execution)


@plan_app.command("triggers")
def plan_triggers(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Each region's plan triggers: condition, whether it holds and since when, last evaluated, last fired."""
    from regionflow.api import fleet

    def render(states: dict[str, dict[str, Any]]) -> None:
        table = Table(title="plan triggers (each evaluated by the region it activates)")
        for col in ("region", "trigger", "condition", "for", "holds", "observed", "evaluated", "state"):
            table.add_column(col)
        for region, st in states.items():
            if "error" in st:
                table.add_row(region, "-", "-", "-", "-", "-", "-", f"[red]{st['error']}[/]")
                continue
            if st.get("problem"):
                table.add_row(region, "-", "-", "-", "-", "-", "-", f"[yellow]{st['problem']}[/]")
            for t in st["triggers"]:
                held = f"yes, {t['held_seconds']:.1f}s" if t["holds"] else "no"
                seen = "-" if t["last_evaluated"] is None else f"{max(0.0, st['now'] - t['last_evaluated']):.1f}s ago"
                table.add_row(region, t["name"], t["condition"], f"{t['for_seconds']:g}s", held, t["detail"], seen,
                              t["note"])
        out.print(table)

    emit(fleet.all_triggers(fleet_config(config)), as_json, render)


def register(app: typer.Typer) -> None:
    """Add failover, failback and the plan group to app."""
    app.command()(failover)
    app.command()(failback)
    app.add_typer(plan_app, name="plan")
