"""The `loadtest` and `drill` commands; thin: parse, call, print. Wire them in with `register(app)`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from regionflow.cli.output import DEFAULT_CONFIG, call, emit, err, fail, load_config, out


class Workload(StrEnum):
    batch = "batch"
    ledger = "ledger"


class Scenario(StrEnum):
    kill = "kill"
    storage_outage = "storage-outage"
    replication_pause = "replication-pause"


def _secs(v: object) -> str:
    return "-" if v is None else f"{v:.3f} s" if isinstance(v, float) else f"{v} s"


def _print_loadtest(result: dict[str, Any]) -> None:
    lat = result["latency_seconds"]
    table = Table(title=f"load test: {result['files']} files x {result['rows_per_file']} rows "
                        f"({result['concurrency']} uploaders)", show_header=False)
    for label, value in (
        ("completed", f"{result['completed']} of {result['files']} ({result['failed']} failed)"),
        ("seconds", f"{result['seconds']:.2f}"),
        ("throughput", f"{result['files_per_second']:.2f} files/s, {result['rows_per_second']:,.0f} rows/s"),
        ("latency p50 / p95 / p99 / max", " / ".join(_secs(lat[k]) for k in ("p50", "p95", "p99", "max"))),
        ("upload retries", str(result["upload_retries"])),
    ):
        table.add_row(label, value)
    out.print(table)


def loadtest(
    files: Annotated[int, typer.Option("--files", min=1, help="Files to upload (copies of one sample file).")],
    rows: Annotated[int, typer.Option("--rows", min=1, help="Rows per file.")] = 1000,
    interval: Annotated[float, typer.Option("--interval", min=0.0, help="Seconds between upload starts.")] = 0.0,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Concurrent uploaders.")] = 4,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Give up after this many seconds.")] = 600.0,
    keep_reference: Annotated[bool, typer.Option(
        "--keep-reference", help="Do not load the sample's reference table (keys it lacks become rejects).")] = False,
    config: Annotated[Path, typer.Option("--config", "-c", envvar="REGIONFLOW_CONFIG",
                                         help="Topology file of a running stack.")] = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Upload N files through the access point; report throughput and end-to-end latency p50/p95/p99."""
    from regionflow.drill import loadtest as lt

    cfg = load_config(config)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=not err.is_terminal, transient=True) as bar:
        tasks = {"uploaded": bar.add_task("uploaded", total=files),
                 "completed": bar.add_task("completed", total=files)}

        def progress(event: str, done: int, total: int) -> None:
            bar.update(tasks[event], completed=done, total=total)

        result = call(lambda: lt.run_loadtest(cfg, files, rows, interval, concurrency, progress, timeout=timeout,
                                              reference=not keep_reference))
    emit(result, as_json, _print_loadtest)
    if result["failed"]:
        raise typer.Exit(1)


def drill(
    files: Annotated[int, typer.Option("--files", min=2, help="Files in the load.")] = 20,
    scenario: Annotated[Scenario, typer.Option("--scenario", help="What happens to us-east-1 mid-way.")]
    = Scenario.kill,
    rows: Annotated[int, typer.Option("--rows", min=1, help="Rows per file.")] = 2000,
    report: Annotated[Path, typer.Option("--report", help="Directory for the JSON and Markdown report.")]
    = Path("drill-reports"),
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Concurrent uploaders.")] = 4,
    interval: Annotated[float, typer.Option("--interval", min=0.0, help="Seconds between upload starts.")] = 0.1,
    timeout: Annotated[float, typer.Option("--timeout", min=30.0, help="Stop the drill after this many seconds.")]
    = 900.0,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the drill's stack directory even when it passed.")]
    = False,
    servers: Annotated[bool, typer.Option(
        "--servers", help="Run the drill's stack on real servers (`init --servers`: SeaweedFS and PostgreSQL per "
                          "region, etcd for the control); killing a region kills its servers too.")] = False,
    workload: Annotated[Workload, typer.Option("--workload", help="batch: files through the pipeline; ledger: "
                                                                  "money transfers on PostgreSQL replication.")]
    = Workload.batch,
    transfers: Annotated[int, typer.Option("--transfers", min=30, help="Ledger: transfers in the load.")] = 3000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """DR drill in a fresh two-region stack: load, failure mid-way, failover, failback, invariants.

    Exits 1 when an invariant failed (a file lost or processed twice, a duplicate notification; a transfer
    neither on the primary nor reported missing, money created or destroyed) or a step failed.
    """
    from regionflow.drill import scenario as dr

    def narrate(line: str) -> None:
        err.print(line, highlight=False, soft_wrap=True)

    if workload is Workload.ledger:
        from regionflow.drill.ledger import LEDGER_SCENARIOS, run_ledger_drill

        if scenario.value not in LEDGER_SCENARIOS:
            fail(f"the ledger drill has the scenarios {', '.join(LEDGER_SCENARIOS)}, not {scenario.value}")
        err.print(f"[bold]regionflow drill[/]: ledger, scenario {scenario.value}, {transfers} transfers",
                  highlight=False)
        ledger_result = call(lambda: run_ledger_drill(transfers, concurrency=max(concurrency, 8), timeout=timeout,
                                                      keep=keep, report_dir=report, progress=narrate), code=2)
        emit(ledger_result, as_json, _print_ledger_drill)
        if not ledger_result["passed"]:
            raise typer.Exit(1)
        return

    err.print(f"[bold]regionflow drill[/]: scenario {scenario.value}, {files} files of {rows} rows", highlight=False)
    result = call(lambda: dr.run_drill(files, scenario.value, report_dir=report, rows=rows, progress=narrate,
                                       concurrency=concurrency, interval=interval, timeout=timeout, keep=keep,
                                       servers=servers),
                  code=2)
    emit(result, as_json, _print_drill)
    if not result["passed"]:
        raise typer.Exit(1)


def _print_verdict(table: Table, r: dict[str, Any]) -> None:
    """A drill's invariants into its table, the table printed, then its violations and error."""
    for name, ok in r["invariants"].items():
        table.add_row(name.replace("_", " "), "[green]ok[/]" if ok else "[red]FAILED[/]")
    out.print(table)
    for v in r["violations"][:20]:
        err.print(f"violation: {v}", highlight=False, soft_wrap=True)
    if r.get("error"):
        err.print(f"[red]error:[/] {r['error']}", highlight=False, soft_wrap=True)


def _print_ledger_drill(r: dict[str, Any]) -> None:
    verdict = "[green]PASSED[/]" if r["passed"] else "[red]FAILED[/]"
    table = Table(title=f"ledger drill {r['scenario']}: {verdict} ({r['seconds']:.1f} s)", show_header=False)
    if "load" in r:
        rto, rpo, load = r["rto_seconds"], r["rpo"], r["load"]
        for label, value in (
            ("transfers acknowledged", f"{load['acknowledged']} of {load['requested']} ({load['transfers_per_second']}"
                                       f" /s, p95 {load['latency_ms']['p95']} ms)"),
            ("RTO failover plan / failback plan", f"{_secs(rto['failover_plan'])} / {_secs(rto['failback_plan'])}"),
            ("writes unavailable after the kill", _secs(rto["writes_unavailable"])),
            ("RPO", f"{rpo['transfers']} transfer(s), {rpo['amount']}, {_secs(rpo['seconds'])}"),
            ("missing-transaction report",
             f"{r['missing_report']['count']} transfer(s), {r['missing_report']['amount']}"),
            ("final primary", f"{r['final']['primary']}: {r['final']['transfers']} transfers, total "
                              f"{r['final']['total_balance']} (seeded {r['final']['seeded_total']})"),
        ):
            table.add_row(label, value)
    _print_verdict(table, r)
    if r.get("stack_dir"):
        out.print(f"stack kept: {r['stack_dir']}", highlight=False, soft_wrap=True)


def _print_drill(r: dict[str, Any]) -> None:
    verdict = "[green]PASSED[/]" if r["passed"] else "[red]FAILED[/]"
    table = Table(title=f"drill {r['scenario']}: {verdict} ({r['seconds']:.1f} s)", show_header=False)
    rto, rpo = r["rto_seconds"], r["rpo"]
    for label, value in (
        ("backends", describe_backends(r.get("backends") or {})),
        ("files submitted", f"{r['submitted']} of {r['files']}"),
        ("RTO failover / failback", f"{_secs(rto['failover'])} / {_secs(rto['failback'])}"),
        ("RPO", f"{rpo.get('files', '-')} file(s), {_secs(rpo.get('seconds'))} of replication not applied"),
        ("lost (no output)", str(r["lost"])),
        ("unfinished (no job completed)", str(r.get("unfinished"))),
        ("duplicated outputs", str(r["duplicated_outputs"])),
        ("duplicated notifications", str(r["duplicated_notifications"])),
        ("reprocessed chunks", f"{r['reprocessed_chunks']} (logged executions beyond one: "
                               f"{r['chunk_executions_beyond_one']})"),
    ):
        table.add_row(label, value)
    _print_verdict(table, r)
    for k, v in r["paths"].items():
        if v:
            out.print(f"{k}: {v}", highlight=False, soft_wrap=True)


def describe_backends(backends: dict[str, Any]) -> str:
    """One line: "objects s3, state postgresql, control etcd" (per region when they differ)."""
    regions = backends.get("regions") or {}
    kinds = {(b["objects"], b["state"]) for b in regions.values()}
    if len(kinds) == 1:
        objects, state = kinds.pop()
        return f"objects {objects}, state {state}, control {backends.get('control', '-')}"
    per = "; ".join(f"{n}: objects {b['objects']}, state {b['state']}" for n, b in regions.items())
    return f"{per}; control {backends.get('control', '-')}" if per else "-"


def register(app: typer.Typer) -> None:
    """Add the `loadtest` and `drill` commands to app."""
    app.command("loadtest")(loadtest)
    app.command("drill")(drill)
