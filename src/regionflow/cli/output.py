"""The one output helper of the CLI: consoles, errors, JSON, and loading what a command needs.

Every command ends in emit(data, as_json, render): JSON on stdout for scripts, or render(data) for people.
Errors are one line on stderr: fail() for a usage problem (exit 2 unless told otherwise), call(fn) for
whatever a regionflow function refuses (RegionflowError -> its message, exit 1).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console

from regionflow.errors import RegionflowError

if TYPE_CHECKING:
    from regionflow.api.client import ApiClient
    from regionflow.config import Config

T = TypeVar("T")

out = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", envvar="REGIONFLOW_CONFIG",
                                         help="Topology file written by `regionflow init`.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="Ask this region directly, not the access point.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Give up waiting after this many seconds.")]
DEFAULT_CONFIG = Path("regionflow.toml")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` on stderr and exit with code (2: usage or configuration problem)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(data: object) -> None:
    """Indented JSON on stdout (anything not JSON-native as its str)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def emit(data: T, as_json: bool, render: Callable[[T], object]) -> None:
    """print_json(data) when as_json, else render(data) for people."""
    if as_json:
        print_json(data)
    else:
        render(data)


def call(fn: Callable[[], T], code: int = 1) -> T:
    """Run fn, turning regionflow errors into a one-line message and exit status code (1)."""
    try:
        return fn()
    except RegionflowError as exc:
        fail(str(exc), code=code)


def load_config(path: Path) -> Config:
    """The topology at path; exit 2 with the reason when it is missing or invalid."""
    from regionflow.config import load_config as _load

    return call(lambda: _load(path), code=2)


def check_region(cfg: Config, region: str | None) -> None:
    """Exit 2 when region is given and not in the topology."""
    if region is not None:
        call(lambda: cfg.region(region), code=2)


def with_secrets(cfg: Config) -> Config:
    """cfg, once its secrets file is readable (exit 2 if not): the fleet helpers then can build clients."""
    from regionflow.config import load_secrets

    call(lambda: load_secrets(cfg), code=2)
    return cfg


def fleet_config(path: Path) -> Config:
    """load_config(path) for a command that asks every region: secrets checked too (exit 2)."""
    return with_secrets(load_config(path))


def connect(cfg: Config, region: str | None = None, admin: bool = False) -> ApiClient:
    """A client for region (the access point when None), with the api or admin token; exit 2 when the
    region is unknown or the secrets cannot be read."""
    from regionflow.api.client import ApiClient

    check_region(cfg, region)
    return call(lambda: ApiClient.for_config(cfg, region, admin=admin), code=2)


def client(path: Path, region: str | None = None, admin: bool = False) -> ApiClient:
    """connect() with the topology at path."""
    return connect(load_config(path), region, admin=admin)
