"""``stxbench parity``: every native implementation of every neuron family against the family's
plain-torch reference (`stxbench.parity`)."""

from __future__ import annotations

import typer

from stxbench import parity
from stxbench.cli import common
from stxbench.cli.root import app


@app.command("parity")
def parity_command(
    neuron: list[str] = typer.Option(
        [], "--neuron", "-n", metavar="NAME", help="Check only this neuron (repeatable; default: all)."
    ),
    backend: list[str] = typer.Option(
        [], "--backend", "-b", metavar="NAME",
        help="Check only this backend (repeatable; default: every installed one, -p plugins included).",
    ),
) -> None:
    """Compare every neuron on every installed backend that implements its family natively with
    the family's plain-torch reference: membrane potential, spikes and surrogate gradients on
    fixed random and quantised inputs. A family no backend implements is checked against the
    neuron contract alone. Exit code 1 when any row fails."""
    host = common.host()
    for name in neuron:
        host.neuron(name)  # unknown names fail here, before any work
    for name in backend:
        host.backend(name)
    report = parity.run(host, neuron, backend)
    import torch

    for family, where in report.references.items():
        typer.echo(f"reference of family {family}: {where}")
    typer.echo(f"references run on torch {torch.__version__}")
    typer.echo(f"tolerances: {parity.TOLERANCES}")
    typer.echo(parity.table(report) if report.rows else "no backend to compare")
    for note in report.notes:
        typer.echo(f"note: {note}")
    for row in report.failed:
        reasons = "; ".join(row.problems) or "outside tolerance"
        typer.echo(f"FAIL {row.backend} {row.neuron} {row.surrogate}: {reasons}")
    if report.failed:
        names = sorted({r.backend for r in report.failed})
        common.err_line(
            f"error: parity failed for {len(report.failed)} of {len(report.rows)} rows "
            f"(backends: {', '.join(names)})"
        )
        raise typer.Exit(1)
