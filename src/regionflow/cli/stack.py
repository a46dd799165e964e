"""Two regions on one machine: `init`, `up`, `down`, `status`."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from regionflow.cli.output import DEFAULT_CONFIG, ConfigOpt, JsonOpt, call, emit, err, load_config, out


def status_table(status: dict[str, Any]) -> Table:
    """The `status` table: regions, plan checks, replication directions."""
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
    for name, r in status["regions"].items():
        uploads = r.get("uploads") or {}
        if uploads.get("mode") == "sync":
            lagging = uploads.get("lagging") or []
            table.add_row(f"uploads ({name})", "[yellow]lagging[/]" if lagging else "[green]sync[/]", "", "",
                          f"acknowledged without waiting for {', '.join(lagging)}" if lagging
                          else "acknowledged once every region stored them")
    for name, r in status["regions"].items():
        ex = r.get("executor")
        if ex:
            table.add_row(f"executor ({name})", "[green]ok[/]" if ex["available"] else "[red]unavailable[/]", "", "",
                          executor_line(ex))
    for srv in status.get("servers", []):
        if "error" in srv:
            table.add_row("servers", "[red]unknown[/]", "", "", srv["error"])
            continue
        health = "[green]ok[/]" if srv["healthy"] else "[red]down[/]"
        if srv.get("fenced"):
            health = "[yellow]fenced[/]" if srv["healthy"] else "[red]down, fenced[/]"
        table.add_row(f"{srv['name']}", health, "", "", f"{srv['kind']} {srv['address']}"
                      + ("" if srv["healthy"] else f" ({srv['detail']})") + _node_detail(srv))
    for d in status.get("replication", []):
        table.add_row(f"{d['source']} -> {d['target']}", "paused" if d["paused"] else (
            "ok" if d["reachable"] else "[red]source unreachable[/]"), "", "",
            f"backlog {d['backlog']['objects']} obj / {d['backlog']['state']} state, "
            f"lag {max(d['lag_seconds'].values()):.1f}s")
    return table


def executor_line(ex: dict[str, Any]) -> str:
    """One region's executor as `status` shows it: kind, address, workers, chunks in flight."""
    where = "" if ex["address"] == "local" else f" {ex['address']}"
    line = f"{ex['kind']}{where}, {ex['workers']} worker(s), {ex['in_flight']} in flight"
    return line if ex["available"] else f"{line} ({ex.get('error') or 'not connected'})"


def _node_detail(srv: dict[str, Any]) -> str:
    """A database node's role, position and lag, as `status` shows them ("" for other servers)."""
    role = srv.get("role")
    if role == "primary":
        return f"; primary (timeline {srv['timeline']}), LSN {srv['current_lsn']}"
    if role == "standby":
        paused = ", replay paused" if srv.get("replay_paused") else ""
        return (f"; standby, replayed {srv['replay_lsn']} of {srv['receive_lsn']}, lag {srv['replay_lag_bytes']} B / "
                f"{srv['replay_lag_seconds']:.1f}s{paused}")
    return ""


def init(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write regionflow.toml.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing regionflow.toml.")] = False,
    auto_failover: Annotated[bool, typer.Option(
        "--auto-failover", help="Also write plans/auto-failover.yaml (us-west-2 takes over once us-east-1 has "
                                "been down for 10 s, after an approval that proceeds by itself after 120 s) and "
                                "configure it as the plan.")] = False,
    servers: Annotated[bool, typer.Option(
        "--servers", help="Run each region on its own SeaweedFS (S3) and PostgreSQL, and the routing control "
                          "on a 3-member etcd cluster, all started by `regionflow up` on free loopback ports."
    )] = False,
    ledger: Annotated[bool, typer.Option(
        "--ledger", help="Also run the money-transfer ledger: a PostgreSQL primary in us-east-1 and a streaming "
                         "standby in us-west-2, started by `regionflow up` (implied by --servers).")] = False,
    upgrade_secrets: Annotated[bool, typer.Option(
        "--upgrade-secrets", help="Only add the secrets an older secrets file lacks (e.g. replication_token), "
                                  "keeping the others; regionflow.toml is not touched.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write regionflow.toml for two regions (embedded backends, or with --servers their own servers), with
    fresh secrets (0600)."""
    from regionflow.config import backends_in_use, init_project

    if upgrade_secrets:
        _upgrade_secrets(directory, as_json, servers, ledger)
        return
    path = call(lambda: init_project(directory, force=force, auto_failover=auto_failover, servers=servers,
                                     ledger=ledger))
    cfg = load_config(path)
    info: dict[str, Any] = {"config": str(path), "regions": [r.name for r in cfg.regions], "primary": cfg.primary,
            "access_point": cfg.access_point_url, "secrets": cfg.secrets_file, "plan": cfg.plan,
            "backends": backends_in_use(cfg)}
    plan_note = f", plan {cfg.plan} (automatic failover after approval)" if cfg.plan else ""
    if servers:
        plan_note += ("; each region on its own SeaweedFS and PostgreSQL, the routing control on 3 etcd members "
                      "(`regionflow up` starts them)")
    if cfg.ledger:
        from regionflow.workloads.ledger.users import UserStore, users_path

        store = UserStore(users_path(cfg.data_dir))
        if "admin" not in call(store.names):
            password = call(lambda: store.add("admin", admin=True))
            info["ledger_user"] = {"user": "admin", "password": password}
            plan_note += (f"; the ledger's PostgreSQL primary and standby (`regionflow up` starts them); ledger UI "
                          f"{cfg.access_point_url}/ledger/ user admin, password (shown once) {password}")
        else:
            plan_note += "; the ledger's PostgreSQL primary and standby (`regionflow up` starts them)"
    emit(info, as_json, lambda i: out.print(
        f"wrote {path}: regions {', '.join(i['regions'])} (primary {cfg.primary}), access point "
        f"{cfg.access_point_url}, secrets in {cfg.secrets_file} (0600){plan_note}. Next: regionflow up",
        highlight=False, soft_wrap=True))


def _upgrade_secrets(directory: Path, as_json: bool, servers: bool, ledger: bool) -> None:
    from regionflow.config import upgrade_secrets

    cfg = load_config(directory)
    ledger = ledger or cfg.ledger is not None
    added = call(lambda: upgrade_secrets(cfg.secrets_file, servers=servers, ledger=ledger), code=2)
    info = {"secrets": cfg.secrets_file, "added": added}
    emit(info, as_json, lambda i: out.print(
        f"added {', '.join(added)} to {cfg.secrets_file}; restart the regions (`regionflow down`, `regionflow up`)"
        if added else f"{cfg.secrets_file} already has every secret; nothing changed", highlight=False))


def up(
    config: ConfigOpt = DEFAULT_CONFIG,
    detach: Annotated[bool, typer.Option("--detach", help="Return once every region is healthy.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for health.")] = 60.0,
) -> None:
    """Start one process per region plus the access point."""
    from rich.live import Live

    from regionflow.region.stack import stack_status, start_stack, stop_stack

    cfg = load_config(config)

    def start() -> None:
        procs = call(lambda: start_stack(config.resolve(), cfg, timeout))
        for p in procs:
            err.print(f"started {p.name} (pid {p.pid}) at {p.url}, log {p.log}", highlight=False)

    if detach:
        start()
        out.print(f"stack is up; access point {cfg.access_point_url}. Stop it with `regionflow down`.")
        return

    def _interrupt(*_args: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)  # `kill` of the foreground `up` stops the stack too
    # Ctrl-C at any moment, even while the regions are still starting, stops everything that started.
    try:
        start()
        if out.is_terminal:
            with Live(status_table(stack_status(cfg)), console=out, refresh_per_second=2) as live:
                while True:
                    time.sleep(1.0)
                    live.update(status_table(stack_status(cfg)))
        else:  # no live redraw into a pipe or file: one line, then wait for Ctrl-C / SIGINT
            out.print(f"stack is up; access point {cfg.access_point_url}. Ctrl-C stops it.")
            while True:
                time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        stopped = stop_stack(cfg)
        err.print(f"stopped {', '.join(stopped)}")


def down(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Stop a stack started with `up --detach`."""
    from regionflow.region.stack import stop_stack

    stopped = stop_stack(load_config(config))
    out.print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


def status(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """Each region's health, the active region and epoch, replication backlog and lag."""
    from regionflow.region.stack import stack_status

    cfg = load_config(config)
    emit(call(lambda: stack_status(cfg)), as_json, lambda st: out.print(status_table(st)))


def _print_credentials(access: dict[str, Any]) -> None:
    for name in ("endpoint_url", "bucket", "aws_access_key_id", "aws_secret_access_key", "region"):
        out.print(f"{name:<22} {access[name]}", highlight=False)
    if not access["s3_passthrough"]:
        err.print(f"[yellow]note:[/] {access['why_not']}", highlight=False, soft_wrap=True)
        return
    ca = f" --ca-bundle {access['ca_bundle']}" if access["ca_bundle"] else ""
    out.print("\n# the AWS CLI (or any SDK) with these, through the access point:", highlight=False)
    out.print(f"export AWS_ACCESS_KEY_ID={access['aws_access_key_id']} "
              f"AWS_SECRET_ACCESS_KEY={access['aws_secret_access_key']} AWS_DEFAULT_REGION={access['region']}",
              highlight=False, soft_wrap=True)
    out.print(f"aws --endpoint-url {access['endpoint_url']}{ca} s3 cp orders.csv s3://{access['bucket']}/input/orders.csv",
              highlight=False, soft_wrap=True)
    out.print(f"aws --endpoint-url {access['endpoint_url']}{ca} s3 ls s3://{access['bucket']}/output/",
              highlight=False, soft_wrap=True)


def credentials(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """The S3 endpoint, bucket and keys for S3 clients (AWS CLI, boto3) of the access point."""
    from regionflow.config import s3_access

    cfg = load_config(config)
    emit(call(lambda: s3_access(cfg), code=2), as_json, _print_credentials)


def register(app: typer.Typer) -> None:
    """Add init, up, down, status and credentials to app."""
    for command in (init, up, down, status, credentials):
        app.command()(command)
