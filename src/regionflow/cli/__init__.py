"""The regionflow command line: parse, call one function, print.

One module per command group (engine, stack, jobs, control, switch, faults, chaos, drill), each with a
register(app); `output` is the one output helper they share. `main` (running `app`) is the console
entry point.
"""

from __future__ import annotations

import gc

import typer

from regionflow.cli import chaos, control, drill, engine, faults, jobs, ledger, stack, switch

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  help="regionflow: multi-region batch-file processing that loses no file and runs none twice.")

# The order of registration is the order `regionflow --help` lists the commands (and, apart, the groups).
for _group in (engine, stack, control, jobs, switch, faults, chaos, drill, ledger):
    _group.register(app)


def main() -> None:
    """The console entry point (and python -m regionflow.cli)."""
    try:
        app()
    finally:
        # What the command made is all garbage now. Frozen, it is not walked again by the collections
        # the interpreter makes as it shuts down: after a `process` run those took 0.3 s (polars',
        # SQLAlchemy's and the engine's objects), for nothing. Refcounting still frees what it can.
        gc.freeze()


__all__ = ["app", "main"]
