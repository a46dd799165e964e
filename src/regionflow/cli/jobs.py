"""Files and jobs through the access point (or one region with --region): `reference load`, `submit`, `wait`,
`jobs`, `job`, `rejects`, `download`, `outbox`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from regionflow.cli.output import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    RegionOpt,
    call,
    client,
    emit,
    err,
    fail,
    fleet_config,
    out,
)

reference_app = typer.Typer(no_args_is_help=True, help="Reference (enrichment) tables.")

JOB_FIELDS = ("status", "reason", "input_key", "owner_region", "owner_epoch", "completing_region", "rows_in",
              "rows_ok", "rows_rejected", "chunks_done", "chunks_total", "output_key", "link", "region")


@reference_app.command("load")
def reference_load(
    path: Annotated[Path, typer.Argument(help="Reference CSV (e.g. financial_data.csv).")],
    table: Annotated[str, typer.Option(help="Table name the pipeline enriches from.")] = "financial_data",
    key: Annotated[str, typer.Option(help="Key column.")] = "uuid",
    config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None, as_json: JsonOpt = False,
) -> None:
    """Load a reference table (replicated to the other regions)."""
    if not path.is_file():
        fail(f"{path}: no such file")
    with client(config, region) as api:
        result = call(lambda: api.load_reference(table, path, key))
    emit(result, as_json, lambda r: out.print(
        f"loaded {r['rows']} rows into {table} (revision {r['revision']}) in {r['region']}"))


def submit(
    path: Annotated[Path, typer.Argument(help="CSV file to process.")],
    key: Annotated[str | None, typer.Option("--key", help="Object name under input/ (default: file name).")] = None,
    config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None, as_json: JsonOpt = False,
) -> None:
    """Upload a file under input/; prints the job id."""
    if not path.is_file():
        fail(f"{path}: no such file")
    name = key or path.name
    with client(config, region) as api:
        result = call(lambda: api.upload(f"input/{name}", path))
    emit(result, as_json, lambda r: sys.stdout.write(f"{r['job_id']}\n"))


def _print_jobs(jobs: list[dict[str, Any]]) -> None:
    table = Table()
    for col in ("job", "input", "status", "owner", "epoch", "rows in/ok/rejected", "completed by"):
        table.add_column(col)
    for j in jobs:
        table.add_row(j["job_id"], j["input_key"], j["status"], j["owner_region"], str(j["owner_epoch"]),
                      f"{j['rows_in']}/{j['rows_ok']}/{j['rows_rejected']}", j.get("completing_region") or "")
    out.print(table)


def wait(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Job ids.")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every job known to the active region.")] = False,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 300.0,
    config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None, as_json: JsonOpt = False,
) -> None:
    """Wait until jobs are COMPLETED or FAILED (exit 1 on timeout or if any failed)."""
    with client(config, region) as api:
        ids = list(job_ids or [])
        if all_jobs:
            ids += [j["job_id"] for j in call(api.jobs) if j["job_id"] not in ids]
        if not ids:
            fail("name job ids or pass --all")
        views = call(lambda: api.wait_jobs(ids, timeout))
    emit(views, as_json, _print_jobs)
    if any(v["status"] == "FAILED" for v in views):
        raise typer.Exit(1)


def jobs(config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None, as_json: JsonOpt = False) -> None:
    """List jobs."""
    with client(config, region) as api:
        rows = call(api.jobs)
    emit(rows, as_json, _print_jobs)


def job(job_id: Annotated[str, typer.Argument()], config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None,
        as_json: JsonOpt = False) -> None:
    """A job's status, owner, counts, chunks and a presigned download link."""
    with client(config, region) as api:
        view = call(lambda: api.job(job_id))

    def render(v: dict[str, Any]) -> None:
        table = Table(show_header=False, title=job_id)
        for k in JOB_FIELDS:
            table.add_row(k, str(v.get(k)))
        out.print(table)

    emit(view, as_json, render)


def rejects(job_id: Annotated[str, typer.Argument()], config: ConfigOpt = DEFAULT_CONFIG,
            region: RegionOpt = None, limit: int = 1000, as_json: JsonOpt = False) -> None:
    """A job's rejected rows: row number, reason, raw text."""
    with client(config, region) as api:
        result = call(lambda: api.rejects(job_id, limit=limit))

    def render(r: dict[str, Any]) -> None:
        table = Table(title=f"{r['total']} rejects")
        for col in ("row", "reason", "raw"):
            table.add_column(col)
        for row in r["rejects"]:
            table.add_row(str(row["row_no"]), row["reason"], row["raw"][:80])
        out.print(table)

    emit(result, as_json, render)


def download(job_id: Annotated[str, typer.Argument()],
             output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the output.")],
             config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None) -> None:
    """Download a completed job's output."""
    with client(config, region) as api:
        view = call(lambda: api.job(job_id))
        if not view.get("output_key"):
            fail(f"job {job_id} has no output yet (status {view['status']})", code=1)
        data = call(lambda: api.download(view["output_key"]))
    output.write_bytes(data)
    out.print(f"wrote {len(data)} bytes to {output}")


def _differences(message: dict[str, Any]) -> str:
    """"status: us-east-1=sent, us-west-2=sending; ..." for the fields the regions' records disagree on."""
    return "; ".join(f"{field}: " + ", ".join(f"{region}={value}" for region, value in values.items())
                     for field, values in message["differences"].items())


def outbox(
    records: Annotated[bool, typer.Option(
        "--records", help="Every region's own record instead of one line per message.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False,
) -> None:
    """Notifications: one per job, with the regions that recorded it (records are replicated); a duplicate
    send or a lagging replica shows as the records disagreeing."""
    from regionflow.api import fleet

    rows, unreachable = fleet.all_notifications(fleet_config(config))
    if records:
        def render_records(_: object) -> None:
            table = Table(title="notification records")
            table.add_column("stored in")
            table.add_column("job", no_wrap=True)
            for col in ("sent by", "status", "ok", "rejected"):
                table.add_column(col)
            for n in rows:
                table.add_row(n["stored_in"], n["job_id"], n["region"], n["status"], str(n["rows_ok"]),
                              str(n["rows_rejected"]))
            out.print(table)
            if unreachable:
                err.print(f"unreachable: {', '.join(unreachable)}")

        emit({"notifications": rows, "unreachable": unreachable}, as_json, render_records)
        return
    messages = fleet.merge_notifications(rows)

    def render(_: object) -> None:
        table = Table(title="notifications")
        table.add_column("job", no_wrap=True)  # ids are copied from here: never split across lines
        for col in ("sent by", "status", "ok/rejected", "recorded in"):
            table.add_column(col)
        for m in messages:
            table.add_row(m["job_id"], m["region"], m["status"], f"{m['rows_ok']}/{m['rows_rejected']}",
                          "\n".join(m["regions"]))
        out.print(table)
        # below the table rather than in a column: rarely there, and too wide for one
        for m in messages:
            if m["differences"]:
                out.print(f"{m['job_id']}: the regions' records disagree on {_differences(m)}", soft_wrap=True)
        if unreachable:
            err.print(f"unreachable: {', '.join(unreachable)}")

    emit({"messages": messages, "unreachable": unreachable}, as_json, render)


def register(app: typer.Typer) -> None:
    """Add the job commands and the reference group to app."""
    for command in (submit, wait, jobs, job, rejects, download, outbox):
        app.command()(command)
    app.add_typer(reference_app, name="reference")
