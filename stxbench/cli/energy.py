"""``stxbench energy RESULT.json``: energy from a record's stored op counts, under any counting
convention and cost model, without re-running anything."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from stxbench.cli.layout import fit_table, pruner_text, wrap
from stxbench.cli.root import app
from stxbench.measure.conventions import CONVENTIONS, DEFAULT_CONVENTION, convention
from stxbench.measure.energy import SHORT_NAMES, Estimate, checked_estimate, cost_model
from stxbench.run.errors import UsageError
from stxbench.record.schema import Record, load_record


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def layer_table(record: Record, estimate: Estimate) -> str:
    """Per-layer table sorted by energy (highest first), then the per-sample totals."""
    total = estimate.mj_per_sample
    model = estimate.cost_model
    memory = model.prices_memory
    rows = [
        [layer.module, f"{layer.op} {layer.kind}", _rate(layer.input_rate), f"{layer.dense:,.0f}",
         f"{layer.ops:,.1f}", *([f"{layer.memory_mj:.3e}"] if memory else []), f"{layer.mj:.3e}",
         f"{100 * layer.mj / total:.1f}" if total else "-"]
        for layer in sorted(estimate.layers, key=lambda lc: lc.mj, reverse=True)
    ]
    # compute mJ is mJ less memory mJ: shown only where memory is priced. The module column
    # wraps if the table is still too wide for the terminal.
    headers = ["module", "op kind", "rate", "dense ops", "ops", *(["memory mJ"] if memory else []), "mJ", "%"]
    table = fit_table(rows, headers=headers, colalign=("left", "left", *["right"] * (len(headers) - 2)),
                      wrappable=(0, 1))
    counts = record.counts
    lines = [
        ["MACs", f"{estimate.mac:,.1f}", f"x {model.e_mac_pj} pJ"],
        ["ACs", f"{estimate.ac:,.1f}", f"x {model.e_ac_pj} pJ"],
        ["integer ACs", f"{estimate.ac_int:,.1f}", f"x {model.e_ac_pj} pJ"],
        ["neuron updates", f"{counts.neuron_updates:,.1f}", "membrane: read + write"
         if model.prices_memory else "not in the energy sum"],
    ]
    if model.prices_memory:
        lines.append(["bytes moved", f"{estimate.memory_bytes:,.1f}",
                      f"x {model.e_byte_pj} pJ ({model.weights} weights)"])
    lines += [
        ["compute", f"{estimate.compute_mj:.6e} mJ", ""],
        ["memory", f"{estimate.memory_mj:.6e} mJ", ""],
        ["energy", f"{total:.6e} mJ", model.id],
    ]
    totals = fit_table(lines, tablefmt="simple_outline")
    c, p = record.config, record.protocol
    head = (
        f"{p.name} | neuron {c.neuron} | pruner {pruner_text(c.pruner, c.pruner_params)} | backend "
        f"{c.backend} | seed {c.seed} | per sample over {counts.samples} samples ({counts.subset}) | "
        f"convention {estimate.convention} | {estimate.pricing}"
    )
    if estimate.merged:
        head += f" (priced as one matrix: {', '.join(estimate.merged)})"
    stored = ""
    e = record.energy
    if e is not None and (e.model_id != model.id or (e.convention or DEFAULT_CONVENTION) != estimate.convention
                          or estimate.merged):
        stored = (f"\nstored: {e.mj_per_sample:.6e} mJ/sample ({e.model_id}, convention "
                  f"{e.convention or DEFAULT_CONVENTION}, as run)")
    return f"{wrap(head)}\n{table}\n{totals}{wrap(stored)}"


def variants_table(path: Path, record: Record) -> str:
    """The record's stored energy estimates, lowest first, the one the run reports marked."""
    if not record.energies:
        raise UsageError(f"{path}: the record holds no energy estimates (run with --no-counts, or "
                         "written before they were stored)")
    e = record.energy
    rows = []
    for v in sorted(record.energies, key=lambda v: v.mj_per_sample):
        reported = e is not None and (v.cost_model, v.convention, v.pricing) == (
            e.model_id, e.convention or DEFAULT_CONVENTION, "as-run")
        ratio = f"{v.mj_per_sample / e.mj_per_sample:.3f}" if e is not None and e.mj_per_sample else "-"
        rows.append([f"{v.mj_per_sample:.6f}", ratio, v.cost_model, v.convention, v.pricing,
                     "reported" if reported else ""])
    head = (f"{path}: {len(rows)} energy estimates per sample (mean over {record.counts.samples} test samples), "
            "lowest first; recompute one with --convention, --cost-model, --merge-if-cheaper"
            if record.counts else f"{path}: {len(rows)} energy estimates per sample, lowest first")
    table = fit_table(rows, headers=["mJ", "x reported", "cost model", "convention", "pricing", ""])
    return f"{wrap(head)}\n{table}"


def as_json_variants(record: Record) -> str:
    return json.dumps([v.model_dump(mode="json") for v in record.energies or []], indent=2)


def as_json(path: Path, estimate: Estimate) -> str:
    data = {
        "record": str(path), **estimate.record().model_dump(mode="json"),
        "layers": [
            {"module": layer.module, "op": layer.op, "kind": layer.kind, "ops": layer.ops,
             "dense_ops": layer.dense, "input_rate": layer.input_rate, "compute_mj": layer.compute_mj,
             "memory_bytes": layer.memory_bytes, "memory_mj": layer.memory_mj, "mj": layer.mj}
            for layer in estimate.layers
        ],
    }
    return json.dumps(data, indent=2)


@app.command("energy")
def energy_command(
    result: Path = typer.Argument(..., help="A result.json written by 'stxbench run'."),
    convention_name: str | None = typer.Option(
        None, "--convention", "-c",
        help=f"Counting convention: {', '.join(CONVENTIONS)} [default: the record's own].",
    ),
    model: str | None = typer.Option(
        None, "--cost-model", "--model", "-m",
        help=f"Cost model: {', '.join(SHORT_NAMES)} or a full id [default: the record's own].",
    ),
    merge: bool = typer.Option(
        False, "--merge-if-cheaper",
        help="Price each factorised matrix as the one matrix of its product where that costs less.",
    ),
    as_json_: bool = typer.Option(False, "--json", help="Print a JSON object instead of the table."),
    variants: bool = typer.Option(
        False, "--variants",
        help="List every energy estimate the record holds (each convention, cost model and pricing), lowest first.",
    ),
) -> None:
    """Recompute energy per sample from a record's stored op counts; print the per-layer table
    sorted by cost, or a JSON object (mj_per_sample, compute_mj, memory_mj, layers). With
    --variants: list the estimates the record stores (every convention, cost model, pricing)."""
    # names first: a bad name is reported as such whatever the file holds
    if convention_name is not None:
        convention(convention_name)
    if model is not None:
        cost_model(model)
    record = load_record(result)
    if variants:
        typer.echo(as_json_variants(record) if as_json_ else variants_table(result, record))
        return
    if record.counts is None:
        raise UsageError(
            f"{result}: the run was made with --no-counts, so the record holds no op counts; "
            "re-run it without --no-counts"
        )
    stored = record.energy
    name = convention_name or (stored.convention if stored and stored.convention else DEFAULT_CONVENTION)
    model_name = model or (stored.model_id if stored else "fp32")
    estimate = checked_estimate(record.counts, name, model_name, merge, where=str(result))
    typer.echo(as_json(result, estimate) if as_json_ else layer_table(record, estimate))
