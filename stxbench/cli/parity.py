"""``stxbench parity``: every native implementation of every neuron family against the family's
plain-torch reference (`stxbench.neurons.parity`)."""

from __future__ import annotations

import typer

from stxbench.neurons import parity
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
    neuron contract alone. Every neuron is also held to the drop-in rule: at its initial
    parameters it fires exactly the spikes of lif, the base neuron it replaces. Exit code 1 when
    any row fails or a neuron is not a drop-in."""
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
    for result in report.drop_ins:
        typer.echo(result.line())
    for row in report.failed:
        reasons = "; ".join(row.problems) or "outside tolerance"
        typer.echo(f"FAIL {row.backend} {row.neuron} {row.surrogate}: {reasons}")
    if report.failed:
        names = sorted({r.backend for r in report.failed})
        common.err_line(
            f"error: parity failed for {len(report.failed)} of {len(report.rows)} rows "
            f"(backends: {', '.join(names)})"
        )
    if report.not_drop_in:
        common.err_line(
            f"error: not a drop-in for {parity.DROP_IN_BASE}: "
            f"{', '.join(d.neuron for d in report.not_drop_in)} (at initialisation a neuron must fire "
            f"the spikes {parity.DROP_IN_BASE} fires; docs/neuron-families.md#the-drop-in-rule)"
        )
    if report.failed or report.not_drop_in:
        raise typer.Exit(1)
