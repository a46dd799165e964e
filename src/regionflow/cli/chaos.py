"""`regionflow chaos run FILE`: run a Chaos Toolkit experiment against the stack and print its summary."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from regionflow.cli.output import DEFAULT_CONFIG, ConfigOpt, call, emit, err, out

chaos_app = typer.Typer(no_args_is_help=True, help="Chaos experiments (Chaos Toolkit) against the stack.")


def _mark(ok: bool | None) -> str:
    return "[green]ok[/]" if ok else "[red]no[/]" if ok is not None else "-"


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"{summary['title']}: {summary['status']}"
                        f"{' (deviated)' if summary['deviated'] else ''}  {summary['duration']:.1f}s")
    for col in ("phase", "activity", "result", "seconds"):
        table.add_column(col)
    for phase, key in (("before", "steady_state_before"), ("after", "steady_state_after"),
                       ("after rollbacks", "steady_state_after_rollbacks")):
        for p in summary.get(key) or []:
            table.add_row(f"hypothesis {phase}", p["name"], _mark(p["tolerance_met"]), "")
    for phase in ("method", "rollbacks"):
        for a in summary[phase]:
            result = "[green]succeeded[/]" if a["status"] == "succeeded" else f"[red]{a['status']}[/]"
            if a.get("error"):
                result += f" {a['error'][:80]}"
            table.add_row(phase, a["name"], result, f"{a['duration']:.2f}")
    return table


def _print_summary(summary: dict[str, Any]) -> None:
    out.print(_table(summary))
    err.print(f"journal: {summary['journal']}", highlight=False, soft_wrap=True)


@chaos_app.callback()
def _chaos() -> None:
    """Chaos experiments (Chaos Toolkit) against the stack: see examples/chaos/."""


@chaos_app.command("run")
def run(
    experiment: Annotated[Path, typer.Argument(metavar="FILE", help="Chaos Toolkit experiment (JSON).")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    journal: Annotated[Path | None, typer.Option("--journal", help="Where to write the journal "
                                                 "(default: <data_dir>/chaos/journals/).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Give up after this many seconds.")] = 600.0,
) -> None:
    """Run an experiment (hypothesis, method, rollbacks, hypothesis again); exit 1 if it deviated or failed."""
    from regionflow.chaos.runner import load_experiment, run_experiment
    from regionflow.config import load_config

    def go() -> dict[str, Any]:
        load_experiment(experiment)
        cfg = load_config(config)
        path = journal or (Path(cfg.data_dir) / "chaos" / "journals"
                           / f"{experiment.stem}-{time.strftime('%Y%m%d-%H%M%S')}.json")
        return run_experiment(experiment, config, path, timeout=timeout)

    summary = call(go, code=2)
    emit(summary, as_json, _print_summary)
    if summary["status"] != "completed" or summary["deviated"] or not summary["recovered"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the chaos group to app."""
    app.add_typer(chaos_app, name="chaos")
