"""The engine on its own, one region and no servers: `sample`, `process`, `pipeline show|validate`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from regionflow.cli.output import call, emit, err, fail, out, print_json
from regionflow.errors import RegionflowError

if TYPE_CHECKING:
    from regionflow.workloads.batch.pipeline import Pipeline

pipeline_app = typer.Typer(no_args_is_help=True, help="Inspect and check pipeline specs.")


SUMMARY_KEYS = ("rows_in", "rows_ok", "rows_rejected", "chunks", "seconds", "rows_per_second", "output", "rejects",
                "job_id")


def _load_pipeline(path: Path | None) -> Pipeline:
    from regionflow.workloads.batch.pipeline import default_pipeline, load_pipeline

    return load_pipeline(path) if path else default_pipeline()


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
    emit(info, as_json, lambda _: out.print(f"wrote {result.rows} rows ({result.invalid} invalid) to {result.orders} "
                                            f"and reference data to {result.financial}"))


def process(
    input_file: Annotated[Path, typer.Argument(metavar="INPUT", help="CSV file to process.")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the output CSV.")],
    reference: Annotated[Path | None, typer.Option("--reference", help="Enrichment CSV (financial data).")] = None,
    rejects: Annotated[Path | None, typer.Option("--rejects", help="Write rejected rows here (row,reason,raw).")]
    = None,
    chunk_rows: Annotated[int | None, typer.Option("--chunk-rows", min=1, help="Rows per chunk.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Chunks processed at once.")] = 2,
    executor: Annotated[str, typer.Option(
        "--executor", metavar="threads|processes|tcp://HOST:PORT|dask://local?workers=N",
        help="threads: no interpreters to start; processes: each chunk in a worker process; tcp://HOST:PORT: "
             "a running Dask scheduler; dask://local?workers=N: a Dask cluster started for the run.")]
    = "threads",
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

    pipeline = call(lambda: _load_pipeline(pipeline_file), code=2)
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

        result = call(lambda: process_file(input_file, reference, out_file, pipeline=pipeline, rejects_path=rejects,
                                           chunk_rows=chunk_rows, workers=workers, executor=executor,
                                           state_dir=state_dir,
                                           notifier_url=notifier, progress=progress), code=2)
    failed = result.job.status != JobStatus.COMPLETED

    def render(summary: dict[str, Any]) -> None:
        if failed:  # the one-line reason below says it all
            return
        table = Table(title=f"{input_file.name}: {result.job.status}", show_header=False)
        for key in SUMMARY_KEYS:
            if summary.get(key) is not None:
                table.add_row(key, str(summary[key]))
        out.print(table)

    emit(result.summary(), as_json, render)
    if failed:
        fail(f"{input_file}: {result.job.reason or result.job.status}", code=1)


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
            print_json({"valid": False, "error": str(exc)})
            raise typer.Exit(1) from None
        fail(str(exc), code=1)
    emit({"valid": True, "name": p.name, "fields": list(p.fields), "output": p.output_header}, as_json,
         lambda _: out.print(f"{path}: pipeline {p.name!r} is valid ({len(p.fields)} fields, "
                             f"{len(p.output)} output columns)"))


def register(app: typer.Typer) -> None:
    """Add sample, process and the pipeline group to app."""
    app.command()(sample)
    app.command()(process)
    app.add_typer(pipeline_app, name="pipeline")
