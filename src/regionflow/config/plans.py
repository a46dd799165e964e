"""Which plan files the regions may run: plans can run shell commands (``custom`` steps), so a region runs
only files inside the configured plans directory, the configured plan (wherever it is) and the built-in
plans, never an arbitrary path on the server."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from regionflow.config.model import Config
from regionflow.errors import ConfigError

__all__ = ["PlanNotAllowed", "allowed_plan", "builtin_plans_dir", "plan_by_name"]


class PlanNotAllowed(ConfigError):
    """A plan file outside the plans directory (nor the configured plan, nor a built-in plan)."""


def builtin_plans_dir() -> Path:
    """The directory of the plans that ship with regionflow (the default batch plan)."""
    return Path(str(resources.files("regionflow.switch").joinpath("plans"))).resolve()


def allowed_plan(config: Config, path: str | Path) -> Path:
    """The plan file path, resolved (symlinks and ``..``), if a region may run it; else PlanNotAllowed.

    Relative paths resolve against the working directory, as the plan loader does. The resolved path is
    what to load, so the file checked is the file run."""
    resolved = Path(path).expanduser().resolve()
    plans_dir = Path(config.plans_dir).expanduser().resolve()
    if (resolved == Path(config.plan_path).expanduser().resolve() or resolved.is_relative_to(plans_dir)
            or resolved.is_relative_to(builtin_plans_dir())):
        return resolved
    shown = str(path) if str(path) == str(resolved) else f"{path} (resolves to {resolved})"
    raise PlanNotAllowed(f"{shown}: plans run only from the plans directory {plans_dir} (or the configured "
                         "plan, or a built-in plan); put the plan there, or set plans_dir in regionflow.toml")


def plan_by_name(config: Config, plan: str | Path) -> Path:
    """A plan given by name (``ledger``: plans_dir/ledger.yaml, else the built-in ledger plan) or by path
    (returned as it is). A name is a bare word: no directory, no .yaml/.yml suffix, no such file here."""
    text = str(plan)
    if "/" in text or text.endswith((".yaml", ".yml")) or Path(text).exists():
        return Path(plan)
    for directory in (Path(config.plans_dir), builtin_plans_dir()):
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{text}{suffix}"
            if candidate.is_file():
                return candidate
    known = sorted({p.stem for d in (Path(config.plans_dir), builtin_plans_dir()) if d.is_dir()
                    for p in d.glob("*.y*ml")})
    raise ConfigError(f"no plan named {text!r} (in {config.plans_dir} or the built-in plans: {', '.join(known)}); "
                      "give a plan file's path, or one of those names")
