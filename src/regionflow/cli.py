"""The regionflow command line: parse, call one function, print."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from regionflow.errors import RegionflowError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  help="regionflow: multi-region batch-file processing that loses no file and runs none twice.")
pipeline_app = typer.Typer(no_args_is_help=True, help="Inspect and check pipeline specs.")
app.add_typer(pipeline_app, name="pipeline")

out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _load_pipeline(path: Path | None):  # noqa: ANN202
    from regionflow.workloads.batch.pipeline import default_pipeline, load_pipeline

    return load_pipeline(path) if path else default_pipeline()


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def sample(
    rows: Annotated[int, typer.Option("--rows", min=0, help="Data rows to generate.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for orders.csv and financial_data.csv.")],
    invalid_ratio: Annotated[float, typer.Option("--invalid-ratio", min=0.0, max=1.0,
                                                 help="Share of rows that must be rejected.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Write sample orders and financial data in the reference format."""
    from regionflow.workloads.batch.sample import generate

    result = generate(rows, out_dir, invalid_ratio=invalid_ratio, seed=seed)
    info = {"orders": str(result.orders), "financial_data": str(result.financial), "rows": result.rows,
            "invalid_rows": result.invalid}
    if as_json:
        _print_json(info)
    else:
        out.print(f"wrote {result.rows} rows ({result.invalid} invalid) to {result.orders} "
                  f"and reference data to {result.financial}")


@app.command()
def process(
    input_file: Annotated[Path, typer.Argument(metavar="INPUT", help="CSV file to process.")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the output CSV.")],
    reference: Annotated[Path | None, typer.Option("--reference", help="Enrichment CSV (financial data).")] = None,
    rejects: Annotated[Path | None, typer.Option("--rejects", help="Write rejected rows here (row,reason,raw).")]
    = None,
    chunk_rows: Annotated[int | None, typer.Option("--chunk-rows", min=1, help="Rows per chunk.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 2,
    pipeline_file: Annotated[Path | None, typer.Option("--pipeline", help="Pipeline spec (TOML/YAML).")] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir",
                                                   help="Keep the embedded store here; rerun to resume.")] = None,
    notifier: Annotated[str | None, typer.Option("--notifier",
                                                 help="outbox:///dir or smtp://host:port")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run the whole engine in-process on one file (one region, no servers)."""
    from regionflow.state.base import JobStatus
    from regionflow.workloads.batch.local import process_file

    try:
        pipeline = _load_pipeline(pipeline_file)
    except RegionflowError as exc:
        _fail(str(exc))
    show = not as_json and err.is_terminal
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=not show, transient=True) as bar:
        split_task = bar.add_task("split (rows)", total=None)
        chunk_task = bar.add_task("chunks", total=None, visible=False)

        def progress(event: str, done: int, total: int) -> None:
            if event == "split":
                bar.update(split_task, completed=done)
            else:
                bar.update(split_task, visible=False)
                bar.update(chunk_task, completed=done, total=total, visible=True)

        try:
            result = process_file(input_file, reference, out_file, pipeline=pipeline, rejects_path=rejects,
                                  chunk_rows=chunk_rows, workers=workers, state_dir=state_dir,
                                  notifier_url=notifier, progress=progress)
        except RegionflowError as exc:
            _fail(str(exc))
    summary = result.summary()
    failed = result.job.status != JobStatus.COMPLETED
    if as_json:
        _print_json(summary)
    elif failed:
        pass
    else:
        table = Table(title=f"{input_file.name}: {result.job.status}", show_header=False)
        for key in ("rows_in", "rows_ok", "rows_rejected", "chunks", "seconds", "rows_per_second", "output",
                    "rejects", "job_id"):
            if summary.get(key) is not None:
                table.add_row(key, str(summary[key]))
        out.print(table)
    if failed:
        _fail(f"{input_file}: {result.job.reason or result.job.status}", code=1)


@pipeline_app.command("show")
def pipeline_show() -> None:
    """Print the built-in default pipeline (the reference system's)."""
    from regionflow.workloads.batch.pipeline import default_pipeline_text

    sys.stdout.write(default_pipeline_text())


@pipeline_app.command("validate")
def pipeline_validate(
    path: Annotated[Path, typer.Argument(help="Pipeline spec (TOML/YAML).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check a pipeline spec and report the first problem with its key."""
    try:
        p = _load_pipeline(path)
    except RegionflowError as exc:
        if as_json:
            _print_json({"valid": False, "error": str(exc)})
            raise typer.Exit(1) from None
        _fail(str(exc), code=1)
    if as_json:
        _print_json({"valid": True, "name": p.name, "fields": list(p.fields), "output": p.output_header})
    else:
        out.print(f"{path}: pipeline {p.name!r} is valid ({len(p.fields)} fields, {len(p.output)} output columns)")


# ---------------------------------------------------------------------------------------------------
# Two regions on one machine
# ---------------------------------------------------------------------------------------------------
control_app = typer.Typer(no_args_is_help=True, help="The routing control: active region and epoch.")
replication_app = typer.Typer(no_args_is_help=True, help="Replication between regions.")
reference_app = typer.Typer(no_args_is_help=True, help="Reference (enrichment) tables.")
app.add_typer(control_app, name="control")
app.add_typer(replication_app, name="replication")
app.add_typer(reference_app, name="reference")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", envvar="REGIONFLOW_CONFIG",
                                         help="Topology file written by `regionflow init`.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="Ask this region directly, not the access point.")]
DEFAULT_CONFIG = Path("regionflow.toml")


def _config(path: Path):  # noqa: ANN202
    from regionflow.config import load_config

    try:
        return load_config(path)
    except RegionflowError as exc:
        _fail(str(exc))


def _client(path: Path, region: str | None = None, admin: bool = False):  # noqa: ANN202
    from regionflow.client import Client

    cfg = _config(path)
    if region is not None:
        try:
            cfg.region(region)
        except RegionflowError as exc:
            _fail(str(exc))
    try:
        return Client(cfg, region, admin=admin)
    except RegionflowError as exc:
        _fail(str(exc))


def _call(fn):  # noqa: ANN001, ANN202
    """Run fn, turning regionflow errors into a one-line message and exit status 1."""
    try:
        return fn()
    except RegionflowError as exc:
        _fail(str(exc), code=1)


@app.command()
def init(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write regionflow.toml.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing regionflow.toml.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write regionflow.toml for two regions on the embedded backends, with fresh secrets (0600)."""
    from regionflow.config import init_project, load_config

    path = _call(lambda: init_project(directory, force=force))
    cfg = load_config(path)
    info = {"config": str(path), "regions": [r.name for r in cfg.regions], "primary": cfg.primary,
            "access_point": cfg.access_point_url, "secrets": cfg.secrets_file}
    if as_json:
        _print_json(info)
    else:
        out.print(f"wrote {path}: regions {', '.join(info['regions'])} (primary {cfg.primary}), access point "
                  f"{cfg.access_point_url}, secrets in {cfg.secrets_file} (0600). Next: regionflow up")


def _status_table(status: dict) -> Table:
    table = Table(title="regionflow")
    for col in ("region", "health", "active", "epoch", "jobs"):
        table.add_column(col)
    control = status.get("control") or {}
    for name, r in status["regions"].items():
        health = "[green]ok[/]" if r["healthy"] and r.get("deep") == "ok" else (
            "[yellow]degraded[/]" if r["healthy"] else "[red]down[/]")
        jobs = ", ".join(f"{k.lower()} {v}" for k, v in sorted((r.get("jobs") or {}).items())) or "-"
        if r.get("faults"):
            health += f" [magenta](faults: {', '.join(r['faults'])})[/]"
        table.add_row(name, health, "yes" if r.get("active") else "", str(control.get("epoch", "?")), jobs)
    for name, r in status["regions"].items():
        ev = r.get("plan_evaluation") or {}
        if ev.get("status") in ("ok", "failing"):
            table.add_row(f"plan check ({name})", "[green]ok[/]" if ev["status"] == "ok" else "[red]failing[/]",
                          "", "", "failover plan could run now" if ev["status"] == "ok" else "see `plan validate`")
    for d in status.get("replication", []):
        table.add_row(f"{d['source']} -> {d['target']}", "paused" if d["paused"] else (
            "ok" if d["reachable"] else "[red]source unreachable[/]"), "", "",
            f"backlog {d['backlog']['objects']} obj / {d['backlog']['state']} state, "
            f"lag {max(d['lag_seconds'].values()):.1f}s")
    return table


@app.command()
def up(
    config: ConfigOpt = DEFAULT_CONFIG,
    detach: Annotated[bool, typer.Option("--detach", help="Return once every region is healthy.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for health.")] = 60.0,
) -> None:
    """Start one process per region plus the access point."""
    import time as _time

    from rich.live import Live

    from regionflow.region.stack import stack_status, start_stack, stop_stack

    cfg = _config(config)
    if detach:
        procs = _call(lambda: start_stack(config.resolve(), cfg, timeout))
        for p in procs:
            err.print(f"started {p.name} (pid {p.pid}) at {p.url}, log {p.log}", highlight=False)
        out.print(f"stack is up; access point {cfg.access_point_url}. Stop it with `regionflow down`.")
        return

    def _interrupt(*_args: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)  # `kill` of the foreground `up` stops the stack too
    # Ctrl-C at any moment, even while the regions are still starting, stops everything that started.
    try:
        procs = _call(lambda: start_stack(config.resolve(), cfg, timeout))
        for p in procs:
            err.print(f"started {p.name} (pid {p.pid}) at {p.url}, log {p.log}", highlight=False)
        if out.is_terminal:
            with Live(_status_table(stack_status(cfg)), console=out, refresh_per_second=2) as live:
                while True:
                    _time.sleep(1.0)
                    live.update(_status_table(stack_status(cfg)))
        else:  # no live redraw into a pipe or file: one line, then wait for Ctrl-C / SIGINT
            out.print(f"stack is up; access point {cfg.access_point_url}. Ctrl-C stops it.")
            while True:
                _time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        stopped = stop_stack(cfg)
        err.print(f"stopped {', '.join(stopped)}")


@app.command()
def down(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Stop a stack started with `up --detach`."""
    from regionflow.region.stack import stop_stack

    stopped = stop_stack(_config(config))
    out.print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Each region's health, the active region and epoch, replication backlog and lag."""
    from regionflow.region.stack import stack_status

    st = _call(lambda: stack_status(_config(config)))
    if as_json:
        _print_json(st)
    else:
        out.print(_status_table(st))


@control_app.command("show")
def control_show(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Show the active region and epoch."""
    from dataclasses import asdict

    from regionflow.control import open_control

    state = asdict(_call(lambda: open_control(_config(config).control).get()))
    if as_json:
        _print_json(state)
    else:
        out.print(f"active {state['active_region']}, epoch {state['epoch']}")


@control_app.command("set-active")
def control_set_active(
    region: Annotated[str, typer.Argument(help="Region to make active.")],
    epoch: Annotated[int, typer.Option("--epoch", help="The current epoch (compare-and-set).")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Make REGION active if --epoch is still current (the epoch then grows by one)."""
    from dataclasses import asdict

    from regionflow.control import open_control

    cfg = _config(config)
    _call(lambda: cfg.region(region))
    state = asdict(_call(lambda: open_control(cfg.control).set_active(region, epoch, by="cli")))
    if as_json:
        _print_json(state)
    else:
        out.print(f"active {state['active_region']}, epoch {state['epoch']}")


@replication_app.command("status")
def replication_status(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Backlog and lag per direction and kind (objects, state)."""
    from regionflow.region.stack import stack_status

    st = _call(lambda: stack_status(_config(config)))
    if as_json:
        _print_json(st["replication"])
        return
    table = Table(title="replication")
    for col in ("direction", "state", "backlog objects", "backlog state", "lag objects s", "lag state s"):
        table.add_column(col)
    for d in st["replication"]:
        table.add_row(f"{d['source']} -> {d['target']}",
                      "paused" if d["paused"] else ("ok" if d["reachable"] else "source unreachable"),
                      str(d["backlog"]["objects"]), str(d["backlog"]["state"]),
                      f"{d['lag_seconds']['objects']:.2f}", f"{d['lag_seconds']['state']:.2f}")
    out.print(table)


def _replication_action(action: str, source: str, target: str, config: Path, as_json: bool, kind: str) -> None:
    from urllib.parse import quote

    with _client(config, region=target, admin=True) as client:
        result = _call(lambda: client.json("POST", f"/replication/{quote(source)}/{action}", params={"kind": kind}))
    if as_json:
        _print_json(result)
    else:
        state = f"paused ({', '.join(result['paused_kinds'])})" if result["paused"] else "running"
    out.print(f"replication {source} -> {target}: {state}, backlog "
                  f"{result['backlog']['objects']} objects / {result['backlog']['state']} state changes")


FromOpt = Annotated[str, typer.Option("--from", help="Source region.")]
KindOpt = Annotated[str, typer.Option("--kind", help="all, objects or state.")]
ToOpt = Annotated[str, typer.Option("--to", help="Target region.")]


@replication_app.command("pause")
def replication_pause(source: FromOpt, target: ToOpt, kind: KindOpt = "all", config: ConfigOpt = DEFAULT_CONFIG,
                      as_json: JsonOpt = False) -> None:
    """Stop applying SOURCE's changes in TARGET (they queue up as backlog)."""
    _replication_action("pause", source, target, config, as_json, kind)


@replication_app.command("resume")
def replication_resume(source: FromOpt, target: ToOpt, kind: KindOpt = "all", config: ConfigOpt = DEFAULT_CONFIG,
                        as_json: JsonOpt = False) -> None:
    """Resume applying SOURCE's changes in TARGET."""
    _replication_action("resume", source, target, config, as_json, kind)


@reference_app.command("load")
def reference_load(
    path: Annotated[Path, typer.Argument(help="Reference CSV (e.g. financial_data.csv).")],
    table: Annotated[str, typer.Option(help="Table name the pipeline enriches from.")] = "financial_data",
    key: Annotated[str, typer.Option(help="Key column.")] = "uuid",
    config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None, as_json: JsonOpt = False,
) -> None:
    """Load a reference table (replicated to the other regions)."""
    if not path.is_file():
        _fail(f"{path}: no such file")
    with _client(config, region) as client:
        result = _call(lambda: client.load_reference(path, table, key))
    if as_json:
        _print_json(result)
    else:
        out.print(f"loaded {result['rows']} rows into {table} (revision {result['revision']}) in {result['region']}")


@app.command()
def submit(
    path: Annotated[Path, typer.Argument(help="CSV file to process.")],
    key: Annotated[str | None, typer.Option("--key", help="Object name under input/ (default: file name).")] = None,
    config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None, as_json: JsonOpt = False,
) -> None:
    """Upload a file under input/; prints the job id."""
    if not path.is_file():
        _fail(f"{path}: no such file")
    name = key or path.name
    with _client(config, region) as client:
        result = _call(lambda: client.upload(path, f"input/{name}"))
    if as_json:
        _print_json(result)
    else:
        sys.stdout.write(f"{result['job_id']}\n")


def _job_rows(jobs: list[dict]) -> Table:
    table = Table()
    for col in ("job", "input", "status", "owner", "epoch", "rows in/ok/rejected", "completed by"):
        table.add_column(col)
    for j in jobs:
        table.add_row(j["job_id"], j["input_key"], j["status"], j["owner_region"], str(j["owner_epoch"]),
                      f"{j['rows_in']}/{j['rows_ok']}/{j['rows_rejected']}", j.get("completing_region") or "")
    return table


@app.command()
def wait(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Job ids.")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every job known to the active region.")] = False,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 300.0,
    config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None, as_json: JsonOpt = False,
) -> None:
    """Wait until jobs are COMPLETED or FAILED (exit 1 on timeout or if any failed)."""
    with _client(config, region) as client:
        ids = list(job_ids or [])
        if all_jobs:
            ids += [j["job_id"] for j in _call(client.jobs) if j["job_id"] not in ids]
        if not ids:
            _fail("name job ids or pass --all")
        views = _call(lambda: client.wait(ids, timeout))
    if as_json:
        _print_json(views)
    else:
        out.print(_job_rows(views))
    if any(v["status"] == "FAILED" for v in views):
        raise typer.Exit(1)


@app.command()
def jobs(config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None, as_json: JsonOpt = False) -> None:
    """List jobs."""
    with _client(config, region) as client:
        rows = _call(client.jobs)
    if as_json:
        _print_json(rows)
    else:
        out.print(_job_rows(rows))


@app.command()
def job(job_id: Annotated[str, typer.Argument()], config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None,
        as_json: JsonOpt = False) -> None:
    """A job's status, owner, counts, chunks and a presigned download link."""
    with _client(config, region) as client:
        view = _call(lambda: client.job(job_id))
    if as_json:
        _print_json(view)
        return
    table = Table(show_header=False, title=job_id)
    for k in ("status", "reason", "input_key", "owner_region", "owner_epoch", "completing_region", "rows_in",
              "rows_ok", "rows_rejected", "chunks_done", "chunks_total", "output_key", "link", "region"):
        table.add_row(k, str(view.get(k)))
    out.print(table)


@app.command()
def rejects(job_id: Annotated[str, typer.Argument()], config: ConfigOpt = DEFAULT_CONFIG,
            region: RegionOpt = None, limit: int = 1000, as_json: JsonOpt = False) -> None:
    """A job's rejected rows: row number, reason, raw text."""
    from urllib.parse import quote

    with _client(config, region) as client:
        result = _call(lambda: client.json("GET", f"/jobs/{quote(job_id)}/rejects", params={"limit": limit}))
    if as_json:
        _print_json(result)
        return
    table = Table(title=f"{result['total']} rejects")
    for col in ("row", "reason", "raw"):
        table.add_column(col)
    for r in result["rejects"]:
        table.add_row(str(r["row_no"]), r["reason"], r["raw"][:80])
    out.print(table)


@app.command()
def download(job_id: Annotated[str, typer.Argument()],
             output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the output.")],
             config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None) -> None:
    """Download a completed job's output."""
    with _client(config, region) as client:
        view = _call(lambda: client.job(job_id))
        if not view.get("output_key"):
            _fail(f"job {job_id} has no output yet (status {view['status']})", code=1)
        data = _call(lambda: client.download(view["output_key"]))
    output.write_bytes(data)
    out.print(f"wrote {len(data)} bytes to {output}")


@app.command()
def outbox(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Every notification of every region (so a duplicate would show)."""
    cfg = _config(config)
    rows, unreachable = [], []
    for r in cfg.regions:
        try:
            with _client(config, r.name) as client:
                rows += [{**n, "stored_in": r.name} for n in client.json("GET", "/outbox")["notifications"]]
        except RegionflowError:
            unreachable.append(r.name)
    if as_json:
        _print_json({"notifications": rows, "unreachable": unreachable})
        return
    table = Table(title="notifications")
    for col in ("stored in", "job", "sent by", "status", "ok", "rejected"):
        table.add_column(col)
    for n in rows:
        table.add_row(n["stored_in"], n["job_id"], n["region"], n["status"], str(n["rows_ok"]),
                      str(n["rows_rejected"]))
    out.print(table)
    if unreachable:
        err.print(f"unreachable: {', '.join(unreachable)}")


# ---------------------------------------------------------------------------------------------------
# Region switch
# ---------------------------------------------------------------------------------------------------
plan_app = typer.Typer(no_args_is_help=True, help="Region-switch plans: validate, run, approve, inspect.")
app.add_typer(plan_app, name="plan")

TERMINAL_EXEC = ("SUCCEEDED", "FAILED")


def _print_execution(record: dict) -> None:
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
    for m in record.get("missing") or []:
        err.print(f"missing objects for {m['job_id']} ({m['input_key']}): {', '.join(m['missing'][:3])}; it starts "
                  "by itself when they arrive", highlight=False)
    if record.get("error"):
        err.print(f"error: {record['error']}", highlight=False)


def _run_plan(config: Path, plan_file: str, target: str, practice: bool, as_json: bool, timeout: float) -> None:
    import time as _time

    from regionflow.switch.plan import load_plan, plan_regions_known

    cfg = _config(config)
    _call(lambda: cfg.region(target))
    plan = _call(lambda: load_plan(plan_file))
    _call(lambda: plan_regions_known(plan, cfg.region_names))
    _call(lambda: plan.workflow(target))
    started = _time.monotonic()
    import getpass

    # The plan runs in the region it activates, so it needs nothing from the failed one.
    with _client(config, region=target, admin=True) as client:
        record = _call(lambda: client.json("POST", "/plans/run", json={
            "plan_path": str(Path(plan.path).resolve()), "activate": target, "practice": practice,
            "started_by": f"{getpass.getuser()}@cli"}))
        exec_id = record["execution_id"]
        told = False
        while record["status"] not in TERMINAL_EXEC:
            if record["status"] == "WAITING_APPROVAL" and not told and not as_json:
                err.print(f"waiting for approval: regionflow plan approve {exec_id}", highlight=False)
                told = True
            if _time.monotonic() - started > timeout:
                _fail(f"execution {exec_id} still {record['status']} after {timeout:g}s; "
                      f"see `regionflow plan show {exec_id}`", code=1)
            _time.sleep(0.1)
            record = _call(lambda: client.json("GET", f"/plans/executions/{exec_id}"))
    record["command_seconds"] = round(_time.monotonic() - started, 3)
    if as_json:
        _print_json(record)
    else:
        _print_execution(record)
    if record["status"] != "SUCCEEDED":
        raise typer.Exit(1)


def _confirm_switch(target: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        _fail(f"refusing to switch regions without confirmation: pass --yes (target {target})")
    typed = typer.prompt(f"Type the target region's name ({target}) to make it active")
    if typed.strip() != target:
        _fail("confirmation did not match; nothing changed", code=1)


TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Give up waiting after this many seconds.")]


@app.command()
def failover(
    to: Annotated[str, typer.Option("--to", help="Region to activate.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    plan_file: Annotated[str | None, typer.Option("--plan", help="Plan file (default: the configured plan).")] = None,
    practice: Annotated[bool, typer.Option("--practice", help="Run every check, change nothing.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, timeout: TimeoutOpt = 600.0,
) -> None:
    """Fail over to a region: run the plan's workflow for it, in it."""
    cfg = _config(config)
    if not practice:
        _confirm_switch(to, yes)
    _run_plan(config, plan_file or cfg.plan_path, to, practice, as_json, timeout)


@app.command()
def failback(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    plan_file: Annotated[str | None, typer.Option("--plan", help="Plan file (default: the configured plan).")] = None,
    practice: Annotated[bool, typer.Option("--practice", help="Run every check, change nothing.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False, timeout: TimeoutOpt = 600.0,
) -> None:
    """Fail back to the configured primary region."""
    cfg = _config(config)
    if not practice:
        _confirm_switch(cfg.primary, yes)
    _run_plan(config, plan_file or cfg.plan_path, cfg.primary, practice, as_json, timeout)


@plan_app.command("run")
def plan_run(
    plan_file: Annotated[str, typer.Argument(metavar="FILE", help="Plan (YAML).")],
    activate: Annotated[str, typer.Option("--activate", help="Region the plan activates.")],
    practice: Annotated[bool, typer.Option("--practice", help="Run every check, change nothing.")] = False,
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
    from regionflow.switch.evaluate import evaluate_plan
    from regionflow.switch.plan import load_plan

    if offline:
        plan = _call(lambda: load_plan(plan_file))
        result = {"status": "ok", "plan": plan_file, "checks": [{"check": "plan is valid", "ok": True,
                                                                   "detail": plan.name}]}
    else:
        cfg = _config(config)
        result = evaluate_plan(cfg, _call(lambda: load_secrets(cfg)), plan_file)
    if as_json:
        _print_json(result)
    else:
        for c in result["checks"]:
            mark = "[green]ok[/]  " if c["ok"] else "[red]FAIL[/]"
            out.print(f"{mark} {c['check']}: {c['detail']}", highlight=False, soft_wrap=True)
    if result["status"] != "ok":
        first = next(c for c in result["checks"] if not c["ok"])
        if not as_json:
            err.print(f"error: {first['detail']}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@plan_app.command("approve")
def plan_approve(execution_id: Annotated[str, typer.Argument()], config: ConfigOpt = DEFAULT_CONFIG,
                 region: RegionOpt = None, as_json: JsonOpt = False) -> None:
    """Approve a manual_approval step of a running execution."""
    import getpass

    cfg = _config(config)
    regions = [region] if region else cfg.region_names
    for name in regions:
        try:
            with _client(config, region=name, admin=True) as client:
                result = client.json("POST", f"/plans/executions/{execution_id}/approve",
                                     json={"by": f"{getpass.getuser()}@cli"})
        except RegionflowError:
            continue
        if as_json:
            _print_json(result)
        else:
            out.print(f"approved {execution_id}")
        return
    _fail(f"no region is running execution {execution_id} waiting for approval", code=1)


def _executions(config: Path) -> list[dict]:
    cfg = _config(config)
    seen: dict[str, dict] = {}
    for name in cfg.region_names:
        try:
            with _client(config, region=name) as client:
                for rec in client.json("GET", "/plans/executions")["executions"]:
                    # the activating region's copy is authoritative; replicas may lag behind it
                    if rec["execution_id"] not in seen or rec.get("region") == name:
                        seen[rec["execution_id"]] = rec
        except RegionflowError:
            continue
    return sorted(seen.values(), key=lambda r: r["started_at"], reverse=True)


@plan_app.command("executions")
def plan_executions(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Every recorded region-switch execution, newest first."""
    rows = _executions(config)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="plan executions")
    for col in ("execution", "plan", "target", "status", "practice", "RTO s", "desired s", "by"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["execution_id"], r["plan"], r["target"], r["status"], "yes" if r["practice"] else "",
                      "-" if r["rto_seconds"] is None else f"{r['rto_seconds']:.2f}", f"{r['desired_rto_seconds']:g}",
                      r["started_by"])
    out.print(table)


@plan_app.command("show")
def plan_show(execution_id: Annotated[str, typer.Argument()], config: ConfigOpt = DEFAULT_CONFIG,
              as_json: JsonOpt = False) -> None:
    """One execution: steps with start, end, status and output; RTO; missing-objects report."""
    match = [r for r in _executions(config) if r["execution_id"] == execution_id]
    if not match:
        _fail(f"no execution {execution_id}", code=1)
    if as_json:
        _print_json(match[0])
    else:
        _print_execution(match[0])


# ---------------------------------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------------------------------
fault_app = typer.Typer(no_args_is_help=True, help="Inject faults into a region (reverted automatically).")
app.add_typer(fault_app, name="fault")


@fault_app.command("inject")
def fault_inject(
    region: Annotated[str, typer.Argument(help="Region to inject into.")],
    kind: Annotated[str, typer.Argument(help="storage_unreachable, storage_slow, state_unreachable, state_slow, "
                                             "control_unreachable, replication_paused, crash, crash_at")],
    duration: Annotated[float, typer.Option("--duration", help="Seconds until it is reverted.")] = 60.0,
    param: Annotated[list[str] | None, typer.Option("--param", help="key=value (delay, source, point).")] = None,
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False,
) -> None:
    """Inject a fault into REGION for --duration seconds."""
    params: dict[str, object] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--param {item!r}: expected key=value")
        try:
            params[key] = float(value) if key == "delay" else value
        except ValueError:
            _fail(f"--param {item!r}: delay must be a number of seconds")
    with _client(config, region=region, admin=True) as client:
        fault = _call(lambda: client.json("POST", "/admin/faults",
                                          json={"kind": kind, "duration": duration, "params": params}))
    if as_json:
        _print_json(fault)
    else:
        out.print(f"{fault['id']}: {kind} in {region} for {duration:g}s")


@fault_app.command("list")
def fault_list(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Active faults of every reachable region."""
    cfg = _config(config)
    rows = []
    for name in cfg.region_names:
        try:
            with _client(config, region=name, admin=True) as client:
                rows += [{**f, "region": name} for f in client.json("GET", "/admin/faults")["faults"]]
        except RegionflowError:
            continue
    if as_json:
        _print_json(rows)
        return
    import time as _time

    for f in rows:
        out.print(f"{f['region']}: {f['id']} {f['kind']} {f['params'] or ''} ({f['until'] - _time.time():.0f}s left)")
    if not rows:
        out.print("no active faults")


@fault_app.command("clear")
def fault_clear(region: Annotated[str, typer.Argument()], fault_id: Annotated[str | None, typer.Option("--id")] = None,
                config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Revert a region's faults now (all, or one --id)."""
    with _client(config, region=region, admin=True) as client:
        params = {"fault_id": fault_id} if fault_id else {}
        result = _call(lambda: client.json("DELETE", "/admin/faults", params=params))
    if as_json:
        _print_json(result)
    else:
        out.print(f"cleared {len(result['cleared'])} fault(s) in {region}")


def _register_extensions() -> None:
    from regionflow.chaos.cli import chaos_app
    from regionflow.drill.cli import register as register_drill

    app.add_typer(chaos_app, name="chaos")
    register_drill(app)


_register_extensions()


def main() -> None:  # pragma: no cover - console entry for python -m
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
