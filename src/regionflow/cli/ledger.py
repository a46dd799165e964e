"""The `ledger` command group: seed, load, transfer, audit, missing (the report and its re-apply)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from regionflow.cli.output import DEFAULT_CONFIG, ConfigOpt, JsonOpt, RegionOpt, call, connect, emit, err, fail, out
from regionflow.cli.output import fleet_config as _fleet_config

ledger_app = typer.Typer(no_args_is_help=True, help="The money-transfer ledger: accounts, transfers, the "
                                                    "missing-transaction report.")


def _cfg(config: Path) -> Any:
    cfg = _fleet_config(config)
    if cfg.ledger is None:
        fail(f"{cfg.source}: this topology has no ledger; `regionflow init --ledger` (or --servers) sets one up")
    return cfg


def _api(cfg: Any, path: str, method: str = "GET", *, region: str | None = None, admin: bool = False,
         **kwargs: Any) -> Any:
    with connect(cfg, region, admin=admin) as api:
        return call(lambda: api.json(method, path, **kwargs))


@ledger_app.command("seed")
def seed(
    accounts: Annotated[int, typer.Option("--accounts", min=2, max=100000, help="How many accounts to open.")] = 100,
    balance: Annotated[str, typer.Option("--balance", help="Opening balance of each (a decimal).")] = "1000.00",
    prefix: Annotated[str, typer.Option("--prefix", help="Account ids are PREFIX0001, PREFIX0002, ...")] = "acct-",
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False,
) -> None:
    """Open N accounts with balance B each (accounts that exist keep their balance)."""
    from regionflow.api import routes
    from regionflow.workloads.ledger.load import account_ids

    cfg = _cfg(config)
    body = {"accounts": dict.fromkeys(account_ids(accounts, prefix), balance)}
    result = _api(cfg, routes.LEDGER_ACCOUNTS, "POST", admin=True, json=body)
    emit(result, as_json, lambda r: out.print(
        f"{r['created']} of {r['requested']} accounts opened in {r['region']} "
        f"({r['requested'] - r['created']} existed already)", highlight=False))


@ledger_app.command("load")
def load(
    transfers: Annotated[int, typer.Option("--transfers", min=1, help="How many transfers to make.")] = 1000,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256, help="Transfers in flight.")] = 8,
    acks_out: Annotated[Path | None, typer.Option("--out", help="Append every acknowledged transfer (JSON lines).")]
    = None,
    accounts: Annotated[int, typer.Option("--accounts", min=2, help="Transfer between the first N seeded "
                                                                     "accounts.")] = 100,
    prefix: Annotated[str, typer.Option("--prefix")] = "acct-",
    retry_for: Annotated[float, typer.Option("--retry-for", help="Seconds one transfer is retried (same "
                                                                  "idempotency key) while the ledger is unavailable.")]
    = 120.0,
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False,
) -> None:
    """Make random transfers through the access point, retrying each with its idempotency key."""
    import httpx

    from regionflow.api.wire import auth_header
    from regionflow.config import load_secrets
    from regionflow.workloads.ledger.load import account_ids, run_load

    cfg = _cfg(config)
    token = call(lambda: load_secrets(cfg)).api_token
    from regionflow.api import routes

    _api(cfg, routes.LEDGER_STATUS)  # a stack that is not up is one line now, not a retry per transfer

    def client() -> httpx.Client:
        return httpx.Client(base_url=cfg.access_point_url, headers=auth_header(token), timeout=10.0,
                            verify=cfg.tls_verify())

    with contextlib.ExitStack() as stack:
        acks = stack.enter_context(acks_out.open("a", encoding="utf-8")) if acks_out else None
        progress = stack.enter_context(Progress(TextColumn("transfers"), BarColumn(), MofNCompleteColumn(),
                                                TimeElapsedColumn(), console=err, disable=as_json,
                                                transient=True))
        task = progress.add_task("transfers", total=transfers)
        result = run_load(client, account_ids(accounts, prefix), transfers, concurrency, acks=acks,
                          retry_for=retry_for, progress=lambda n: progress.advance(task, n))
    data = result.as_dict()
    emit(data, as_json, _print_load)
    if result.gave_up:
        raise typer.Exit(1)


def _print_load(r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    table = Table(title="ledger load", show_header=False)
    for label, value in (
        ("acknowledged", f"{r['acknowledged']} of {r['requested']} ({r['repeated']} found by a retry)"),
        ("refused", ", ".join(f"HTTP {k}: {v}" for k, v in r["refused"].items()) or "none"),
        ("gave up", str(r["gave_up"])),
        ("throughput", f"{r['transfers_per_second']} transfers/s over {r['seconds']} s"),
        ("latency p50 / p95 / p99 / max", " / ".join(f"{lat[k]} ms" for k in ("p50", "p95", "p99", "max"))),
        ("retries", f"{r['retries']} (longest wait {r['longest_wait_seconds']} s)"),
    ):
        table.add_row(label, value)
    out.print(table)


@ledger_app.command("transfer")
def transfer(
    source: Annotated[str, typer.Argument(metavar="FROM")], target: Annotated[str, typer.Argument(metavar="TO")],
    amount: Annotated[str, typer.Argument(metavar="AMOUNT", help="A decimal, e.g. 12.50.")],
    key: Annotated[str | None, typer.Option("--key", help="Idempotency key (default: a new one).")] = None,
    config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None, as_json: JsonOpt = False,
) -> None:
    """Move AMOUNT from one account to another (one transaction)."""
    import uuid

    from regionflow.api import routes

    cfg = _cfg(config)
    body = {"from": source, "to": target, "amount": amount, "idempotency_key": key or str(uuid.uuid4())}
    made = _api(cfg, routes.LEDGER_TRANSFERS, "POST", region=region, json=body)
    emit(made, as_json, lambda m: out.print(
        f"transfer {m['transfer_id']}: {m['amount']} from {m['from']} to {m['to']}, committed in {m['region']} "
        f"at {m['committed_at']}", highlight=False))


@ledger_app.command("audit")
def audit(config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None, as_json: JsonOpt = False) -> None:
    """Accounts, transfer count and total balance, read in one snapshot."""
    from regionflow.api import routes

    result = _api(_cfg(config), routes.LEDGER_AUDIT, region=region)
    emit(result, as_json, lambda r: out.print(
        f"{r['region']}: {len(r['accounts'])} accounts, {r['transfer_count']} transfers, total balance "
        f"{r['total_balance']}", highlight=False))


@ledger_app.command("missing")
def missing(
    reapply: Annotated[bool, typer.Option("--reapply", help="Commit each missing transfer on the primary once "
                                                            "(skipping those present, refusing overdrafts).")]
    = False,
    config: ConfigOpt = DEFAULT_CONFIG, region: RegionOpt = None, as_json: JsonOpt = False,
) -> None:
    """The missing-transaction report: what an old primary committed that never reached the new one."""
    from regionflow.api import routes

    cfg = _cfg(config)
    result: dict[str, Any] = {}
    if reapply:
        result["reapply"] = _api(cfg, routes.LEDGER_MISSING_REAPPLY, "POST", region=region, admin=True)
    result.update(_api(cfg, routes.LEDGER_MISSING, region=region))
    emit(result, as_json, _print_missing)


def _print_missing(r: dict[str, Any]) -> None:
    if "reapply" in r:
        a = r["reapply"]
        out.print(f"re-applied {a['reapplied']} of {a['considered']} ({a['already_present']} already present, "
                  f"{a['refused_overdraw']} refused: would overdraw, {a['refused_account']} refused: no account)",
                  highlight=False)
    if not r["count"]:
        out.print("no missing transfers recorded", highlight=False)
        return
    table = Table(title=f"missing transfers: {r['count']}, {r['amount']} in all")
    for col in ("transfer", "from", "to", "amount", "committed at", "old primary", "re-applied"):
        table.add_column(col)
    for t in r["transfers"]:
        table.add_row(t["transfer_id"], t["from"], t["to"], t["amount"], t["committed_at"] or "-", t["old_primary"],
                      t["reapply_result"] or "")
    out.print(table)


user_app = typer.Typer(no_args_is_help=True, help="Users of the ledger's web UI (/ledger/).")
ledger_app.add_typer(user_app, name="user")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    admin: Annotated[bool, typer.Option("--admin", help="May fail over and back from the UI.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Give an existing user a new password.")] = False,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin "
                                                                          "(default: generate one).")] = False,
    config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False,
) -> None:
    """Add a UI user; prints the generated password once (only its scrypt hash is kept)."""
    import sys

    from regionflow.workloads.ledger.users import UserStore, users_path

    cfg = _cfg(config)
    given = sys.stdin.readline().rstrip("\n") if password_stdin else None
    password = call(lambda: UserStore(users_path(cfg.data_dir)).add(name, admin=admin, password=given,
                                                                     replace=replace), code=2)
    info = {"user": name, "admin": admin, "password": None if given else password}
    emit(info, as_json, lambda i: out.print(
        f"added {'admin ' if admin else ''}user {name}" + (f"; password (shown once): {password}" if not given else ""),
        highlight=False))


@user_app.command("list")
def user_list(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """The UI's users and whether each is an admin."""
    from regionflow.workloads.ledger.users import UserStore, users_path

    cfg = _cfg(config)
    names = call(lambda: UserStore(users_path(cfg.data_dir)).names())
    emit(names, as_json, lambda n: out.print("\n".join(f"{k}{' (admin)' if v else ''}" for k, v in n.items())
                                             or "no users", highlight=False))


def register(app: typer.Typer) -> None:
    """Add the ledger group to app."""
    app.add_typer(ledger_app, name="ledger")
