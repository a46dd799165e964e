"""Fault injection through a region's admin API: `fault inject|list|clear`."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from regionflow.cli.output import DEFAULT_CONFIG, ConfigOpt, JsonOpt, call, client, emit, fail, fleet_config, out

fault_app = typer.Typer(no_args_is_help=True, help="Inject faults into a region (reverted automatically).")


def _params(items: list[str]) -> dict[str, object]:
    """--param key=value pairs; delay is a number of seconds."""
    params: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--param {item!r}: expected key=value")
        try:
            params[key] = float(value) if key == "delay" else value
        except ValueError:
            fail(f"--param {item!r}: delay must be a number of seconds")
    return params


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
    params = _params(param or [])
    with client(config, region=region, admin=True) as api:
        fault = call(lambda: api.inject_fault(kind, duration, params))
    emit(fault, as_json, lambda f: out.print(f"{f['id']}: {kind} in {region} for {duration:g}s"))


def _print_faults(rows: list[dict[str, Any]]) -> None:
    for f in rows:
        out.print(f"{f['region']}: {f['id']} {f['kind']} {f['params'] or ''} ({f['until'] - time.time():.0f}s left)")
    if not rows:
        out.print("no active faults")


@fault_app.command("list")
def fault_list(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Active faults of every reachable region."""
    from regionflow.api import fleet

    emit(fleet.all_faults(fleet_config(config)), as_json, _print_faults)


@fault_app.command("clear")
def fault_clear(region: Annotated[str, typer.Argument()], fault_id: Annotated[str | None, typer.Option("--id")] = None,
                config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Revert a region's faults now (all, or one --id)."""
    with client(config, region=region, admin=True) as api:
        cleared = call(lambda: api.clear_faults(fault_id))
    emit({"region": region, "cleared": cleared}, as_json,
         lambda r: out.print(f"cleared {len(r['cleared'])} fault(s) in {region}"))


def register(app: typer.Typer) -> None:
    """Add the fault group to app."""
    app.add_typer(fault_app, name="fault")
