"""Energy views of a leaderboard: a table of energy per counting convention, and a per-layer
energy breakdown plot with one bar per row. Pure functions of the entries, like the rest of
`stxbench.leaderboard.render`, which calls them; both appear only once some entry holds energy
per convention (``Record.energies``), so boards of older entries render as before.
"""

from __future__ import annotations

import io
import json
import re
import statistics
from collections.abc import Sequence
from typing import Protocol as TypingProtocol

from stxbench.measure.conventions import CONVENTIONS, DEFAULT_CONVENTION
from stxbench.measure.energy import estimate
from stxbench.run.errors import UsageError
from stxbench.record.schema import Record

BREAKDOWN_PLOT = "energy_breakdown.png"
#: memory cost models shown next to the compute-only energies
MEMORY_MODELS = ("simple-fp32-v1", "simple-fp32-nz-v1")
#: their short column headers (the section's text names the models)
MEMORY_HEADERS = {"simple-fp32-v1": "memory, dense weights", "simple-fp32-nz-v1": "memory, nonzero weights"}
MAX_GROUPS = 10  # layer groups a bar is split into; the smallest rest is "other"


class _Row(TypingProtocol):
    label: str
    entries: list[tuple[str, Record]]


def _has_energies(rows: Sequence[_Row]) -> bool:
    return any(record.energies for row in rows for _, record in row.entries)


def _mean(values: list[float | None]) -> float | None:
    return None if not values or None in values else statistics.fmean(values)


def _stored(record: Record, convention: str, model: str) -> float | None:
    for e in record.energies or []:
        if (e.convention, e.cost_model, e.pricing) == (convention, model, "as-run"):
            return e.mj_per_sample
    return None


def _memory(record: Record, model: str) -> float | None:
    for e in record.energies or []:
        if (e.cost_model, e.pricing) == (model, "as-run"):
            return e.memory_mj
    return None


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def protocol_model(rows: Sequence[_Row]) -> str:
    """The cost model of the entries' ``energy`` (the protocol's), the first found."""
    for row in rows:
        for _, record in row.entries:
            if record.energy is not None:
                return record.energy.model_id
    return "horowitz45-fp32-v1"


def section(rows: Sequence[_Row]) -> list[str]:
    """README lines: energy per sample (mJ, mean over seeds) under every convention, and the
    memory share under the memory cost models; nothing when no entry holds per-convention
    energy."""
    if not _has_energies(rows):
        return []
    model = protocol_model(rows)
    table = []
    for rank, row in enumerate(rows, 1):
        records = [record for _, record in row.entries]
        cells = [_cell(_mean([_stored(r, c, model) for r in records])) for c in CONVENTIONS]
        cells += [_cell(_mean([_memory(r, m) for r in records])) for m in MEMORY_MODELS]
        table.append([rank, row.label, *cells])
    headers = ["#", "neuron / pruner / backend", *CONVENTIONS, *[MEMORY_HEADERS[m] for m in MEMORY_MODELS]]
    from tabulate import tabulate

    return [
        "## Energy by counting convention",
        "",
        f"mJ per sample, mean over seeds, every op as run; rows numbered as in the table above. "
        f"Compute (columns stxbench, spikingjelly, neurobench) under `{model}`, with each "
        "convention's MACs and ACs (`docs/energy.md`: stxbench counts nonzero pairs, "
        "spikingjelly charges spikes their whole fan-out and non-binary inputs dense MACs with "
        "padding and BatchNorm, neurobench counts Linear and Conv layers only); memory: bytes "
        "moved (weights per time step, membrane state, spikes), the same under every convention, "
        f"priced by `{MEMORY_MODELS[0]}` (dense weights) and `{MEMORY_MODELS[1]}` (nonzero "
        "weights only, with a 2-byte index each). `-`: an entry recorded before per-convention energy.",
        "",
        tabulate(table, headers=headers, tablefmt="github", disable_numparse=True),
        "",
        f"![energy by layer]({BREAKDOWN_PLOT})",
        "",
    ]


def layer_group(module: str) -> str:
    """A module path without its indices and low-rank factor names, cut to three parts:
    ``blocks.0.attn.q.linear.first`` -> ``blocks.attn.q``."""
    parts = [p for p in module.split(".") if not re.fullmatch(r"\d+", p)]
    return ".".join(parts[:3]) or module


def breakdown_data(protocol: str, rows: Sequence[_Row]) -> str | None:
    """Canonical JSON of the breakdown plot: per row, energy per layer group (mean over seeds)
    under the protocol's convention and cost model; None when no entry has per-op counts."""
    if not _has_energies(rows):
        return None
    model = protocol_model(rows)
    bars = []
    for row in rows:
        per_seed = []
        for _, record in row.entries:
            if record.counts is None or record.counts.ops is None:
                per_seed = []
                break
            convention = (record.energy.convention if record.energy else None) or DEFAULT_CONVENTION
            groups: dict[str, float] = {}
            for layer in estimate(record.counts, convention, model).layers:
                key = layer_group(layer.module)
                groups[key] = groups.get(key, 0.0) + layer.mj
            per_seed.append(groups)
        if per_seed:
            keys = sorted({k for g in per_seed for k in g})
            bars.append({"label": row.label,
                         "groups": {k: statistics.fmean(g.get(k, 0.0) for g in per_seed) for k in keys}})
    if not bars:
        return None
    return json.dumps({"protocol": protocol, "cost_model": model, "bars": bars},
                      sort_keys=True, separators=(",", ":"))


def _legend_groups(bars: list[dict]) -> list[str]:
    totals: dict[str, float] = {}
    for bar in bars:
        for key, value in bar["groups"].items():
            totals[key] = totals.get(key, 0.0) + value
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    return ranked if len(ranked) <= MAX_GROUPS else ranked[:MAX_GROUPS - 1]


def breakdown_png(data: str) -> bytes:
    try:
        from matplotlib import colormaps
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("rendering the plot needs matplotlib: pip install 'stxbench[leaderboard]'") from None
    from stxbench.leaderboard.plots import PLOT_DATA_KEY

    spec = json.loads(data)
    bars = spec["bars"]
    shown = _legend_groups(bars)
    names = shown + (["other"] if len({k for b in bars for k in b["groups"]}) > len(shown) else [])
    fig = Figure(figsize=(10, 1.4 + 0.42 * max(len(bars), 4)), dpi=100)
    ax = fig.subplots()
    cmap = colormaps["tab20"]
    labels = [bar["label"] for bar in bars]
    for i, name in enumerate(names):
        left, widths = [], []
        for bar in bars:
            before = sum(bar["groups"].get(n, 0.0) for n in names[:i] if n != "other")
            if name == "other":
                value = sum(v for k, v in bar["groups"].items() if k not in shown)
            else:
                value = bar["groups"].get(name, 0.0)
            left.append(before)
            widths.append(value)
        ax.barh(labels, widths, left=left, color=cmap(i % 20), label=name, height=0.7)
    ax.invert_yaxis()
    ax.set_xlabel(f"energy per sample (mJ), {spec['cost_model']}")
    ax.set_title(f"{spec['protocol']}: energy by layer (mean over seeds)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None, PLOT_DATA_KEY: data})
    return buf.getvalue()
