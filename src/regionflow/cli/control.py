"""The routing control and replication: `control show|set-active`, `replication status|pause|resume`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from regionflow.cli.output import DEFAULT_CONFIG, ConfigOpt, JsonOpt, call, connect, emit, load_config, out

control_app = typer.Typer(no_args_is_help=True, help="The routing control: active region and epoch.")
replication_app = typer.Typer(no_args_is_help=True, help="Replication between regions.")

FromOpt = Annotated[str, typer.Option("--from", help="Source region.")]
KindOpt = Annotated[str, typer.Option("--kind", help="all, objects or state.")]
ToOpt = Annotated[str, typer.Option("--to", help="Target region.")]


def _print_control(state: dict[str, Any]) -> None:
    out.print(f"active {state['active_region']}, epoch {state['epoch']}")


@control_app.command("show")
def control_show(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Show the active region and epoch."""
    from regionflow.control import open_control

    cfg = load_config(config)
    emit(asdict(call(lambda: open_control(cfg.control).get())), as_json, _print_control)


@control_app.command("set-active")
def control_set_active(
    region: Annotated[str, typer.Argument(help="Region to make active.")],
    epoch: Annotated[int, typer.Option("--epoch", help="The current epoch (compare-and-set).")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """Make REGION active if --epoch is still current (the epoch then grows by one)."""
    from regionflow.control import open_control

    cfg = load_config(config)
    call(lambda: cfg.region(region))
    emit(asdict(call(lambda: open_control(cfg.control).set_active(region, epoch, by="cli"))), as_json,
         _print_control)


def _print_replication(directions: list[dict[str, Any]]) -> None:
    table = Table(title="replication")
    for col in ("direction", "state", "backlog objects", "backlog state", "lag objects s", "lag state s"):
        table.add_column(col)
    for d in directions:
        table.add_row(f"{d['source']} -> {d['target']}",
                      "paused" if d["paused"] else ("ok" if d["reachable"] else "source unreachable"),
                      str(d["backlog"]["objects"]), str(d["backlog"]["state"]),
                      f"{d['lag_seconds']['objects']:.2f}", f"{d['lag_seconds']['state']:.2f}")
    out.print(table)


@replication_app.command("status")
def replication_status(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Backlog and lag per direction and kind (objects, state)."""
    from regionflow.region.stack import stack_status

    cfg = load_config(config)
    emit(call(lambda: stack_status(cfg))["replication"], as_json, _print_replication)


def _replication_action(action: str, source: str, target: str, config: Path, as_json: bool, kind: str) -> None:
    with connect(load_config(config), region=target, admin=True) as client:
        result = call(lambda: client.replication_action(source, action, kind))

    def render(r: dict[str, Any]) -> None:
        state = f"paused ({', '.join(r['paused_kinds'])})" if r["paused"] else "running"
        out.print(f"replication {source} -> {target}: {state}, backlog "
                  f"{r['backlog']['objects']} objects / {r['backlog']['state']} state changes")

    emit(result, as_json, render)


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


def register(app: typer.Typer) -> None:
    """Add the control and replication groups to app."""
    app.add_typer(control_app, name="control")
    app.add_typer(replication_app, name="replication")
