"""``stxbench energy RESULT.json``: energy from a record's stored op counts, under any built-in
cost table, without re-running anything."""

from __future__ import annotations

from pathlib import Path

import typer
from tabulate import tabulate

from stxbench.cli.root import app
from stxbench.energy import SHORT_NAMES, cost_model, layer_mj
from stxbench.errors import UsageError
from stxbench.record import Record, load_record


def layer_table(record: Record, model_name: str) -> str:
    """Per-layer table sorted by cost (highest first), then the per-sample totals."""
    counts, model = record.counts, cost_model(model_name)
    total = model.mj(counts.mac, counts.ac, counts.ac_int)
    rows = []
    for layer in sorted(counts.layers, key=lambda lc: layer_mj(lc, model), reverse=True):
        mj = layer_mj(layer, model)
        rows.append([
            layer.module, layer.op, layer.kind,
            "-" if layer.input_rate is None else f"{layer.input_rate:.4f}",
            f"{layer.dense_ops:,.1f}", f"{layer.effective_ops:,.1f}",
            f"{mj:.4e}", f"{100 * mj / total:.1f}" if total else "-",
        ])
    table = tabulate(
        rows,
        headers=["module", "op", "kind", "input rate", "dense ops", "effective ops", "mJ", "%"],
        disable_numparse=True, colalign=("left", "left", "left", "right", "right", "right", "right", "right"),
    )
    c, p = record.config, record.protocol
    totals = tabulate(
        [
            ["MACs", f"{counts.mac:,.1f}", f"x {model.e_mac_pj} pJ"],
            ["ACs", f"{counts.ac:,.1f}", f"x {model.e_ac_pj} pJ"],
            ["integer ACs", f"{counts.ac_int:,.1f}", f"x {model.e_ac_pj} pJ"],
            ["neuron updates", f"{counts.neuron_updates:,.1f}", "not in the energy sum"],
            ["energy", f"{total:.6e} mJ", model.id],
        ],
        disable_numparse=True, tablefmt="simple_outline",
    )
    head = (
        f"{p.name} | neuron {c.neuron} | pruner {c.pruner} {c.pruner_params or ''} | backend "
        f"{c.backend} | seed {c.seed} | per sample over {counts.samples} samples ({counts.subset}), "
        f"rule {counts.rule}"
    )
    stored = ""
    if record.energy is not None and record.energy.model_id != model.id:
        stored = f"\nstored: {record.energy.mj_per_sample:.6e} mJ/sample ({record.energy.model_id})"
    return f"{head}\n{table}\n{totals}{stored}"


@app.command("energy")
def energy_command(
    result: Path = typer.Argument(..., help="A result.json written by 'stxbench run'."),
    model: str | None = typer.Option(
        None, "--model", "-m",
        help=f"Cost table: {', '.join(SHORT_NAMES)} or a full id [default: the record's own].",
    ),
) -> None:
    """Recompute energy per sample from a record's stored op counts; print the per-layer table
    sorted by cost."""
    record = load_record(result)
    if record.counts is None:
        raise UsageError(
            f"{result}: the run was made with --no-counts, so the record holds no op counts; "
            "re-run it without --no-counts"
        )
    name = model or (record.energy.model_id if record.energy else "fp32")
    typer.echo(layer_table(record, name))
