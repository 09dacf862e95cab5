"""The plots of a board: accuracy against energy and against effective parameters (one panel per
pruner family, one line per neuron x backend through the family's levels from the dense row,
with the 95 % band of the mean over seeds), and the recovery curves (one panel per pruner
configuration, one line per neuron x backend).

Every plot is compared by its source data, not its pixels: the PNG carries the canonical JSON of
what it shows in a text chunk (``stxbench-plot-data``), `board_plots` computes that JSON from the
rows alone, and a PNG whose data are unchanged is not rewritten. Pixels depend on the matplotlib
and FreeType versions; the data do not. Labels go into legends beside the axes, never onto the
points, so they cannot overlap.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path

from stxbench.run.errors import UsageError
from stxbench.leaderboard.curves import config_order, group_lines, has_recovery, mean_band, row_curves

PLOT_DATA_KEY = "stxbench-plot-data"
ENERGY_PLOT = "accuracy_energy.png"
PARAMS_PLOT = "accuracy_params.png"
RECOVERY_PLOT = "recovery.png"
PLOT_FILES = (ENERGY_PLOT, PARAMS_PLOT, RECOVERY_PLOT)


def _canonical(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _point(row, x: float | None) -> dict:
    mean, band = mean_band([100 * record.metrics.accuracy for _, record in row.entries])
    return {"x": x, "accuracy": mean, "band": band, "label": row.label, "series": f"{row.neuron} / {row.backend}"}


def compression_data(protocol: str, rows, axis: str) -> str:
    """accuracy_energy / accuracy_params: ``axis`` is ``energy`` or ``params``."""
    def x_of(row):
        return row.energy if axis == "energy" else row.params_effective

    lines, _ = group_lines(rows)
    panels: dict[str, list[dict]] = {}
    for line in sorted(lines, key=lambda line: (line.pruner_label, line.neuron, line.backend)):
        # in compression order: the dense row, then the levels by ST sparsity
        points = [_point(row, x_of(row)) for row in line.points() if x_of(row) is not None]
        if points:
            panels.setdefault(line.pruner_label, []).append(
                {"label": f"{line.neuron} / {line.backend}", "series": f"{line.neuron} / {line.backend}",
                 "anchored": line.anchor is not None, "points": points})
    anchors = {id(line.anchor) for line in lines if line.anchor is not None}
    placed = [row for row in rows if x_of(row) is not None]
    # a dense row that no curve starts from: a point of its own, in every panel
    single = [_point(row, x_of(row)) for row in placed if row.pruner == "none" and id(row) not in anchors]
    return _canonical({"kind": "compression", "axis": axis, "protocol": protocol,
                       "panels": [{"title": title, "lines": panel} for title, panel in panels.items()],
                       "single": single})


def recovery_data(protocol: str, rows) -> str:
    panels: dict[str, dict] = {}
    for row in rows:
        curves = row_curves(row)
        if not curves:
            continue
        from stxbench.leaderboard.store import pruner_label

        title = pruner_label(row.pruner, row.params)
        panel = panels.setdefault(title, {"title": title, "lines": [], "dense": []})
        epochs = [point.epoch for point in curves[0][1]]
        means, bands = [], []
        for i in range(len(epochs)):
            mean, band = mean_band([100 * curve[i].accuracy for _, curve in curves if len(curve) > i])
            means.append(mean)
            bands.append(band)
        panel["lines"].append({"label": f"{row.neuron} / {row.backend}", "series": f"{row.neuron} / {row.backend}",
                               "epochs": epochs, "accuracy": means, "band": bands})
        panel["dense"] += [100 * record.recovery.accuracy_dense for record, _ in curves]
    ordered = []
    for title in sorted(panels, key=config_order):
        panel = panels[title]
        panel["dense"] = sum(panel["dense"]) / len(panel["dense"])
        panel["lines"].sort(key=lambda line: line["label"])
        ordered.append(panel)
    return _canonical({"kind": "recovery", "protocol": protocol, "panels": ordered})


def board_plots(protocol: str, rows) -> dict[str, str]:
    """File name -> plot data for every plot the board gets (recovery only with curves)."""
    plots = {ENERGY_PLOT: compression_data(protocol, rows, "energy"),
             PARAMS_PLOT: compression_data(protocol, rows, "params")}
    if has_recovery(rows):
        plots[RECOVERY_PLOT] = recovery_data(protocol, rows)
    return plots


# -- drawing --------------------------------------------------------------------------------


def _figure(figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("rendering the plots needs matplotlib: pip install 'stxbench[leaderboard]'") from None
    return Figure(figsize=figsize, dpi=100)


def _colours(series: list[str]) -> dict[str, str]:
    palette = [f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown", "pink", "olive", "cyan")]
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(set(series)))}


def _png(fig, data: str) -> bytes:
    buf = io.BytesIO()
    # No "Software" chunk and no timestamp: the same data give the same bytes on one install.
    fig.savefig(buf, format="png", metadata={"Software": None, PLOT_DATA_KEY: data})
    return buf.getvalue()


def _marker(marker: str):
    """A grey legend entry for a marker drawn in every series' colour."""
    from matplotlib.lines import Line2D

    return Line2D([], [], marker=marker, color="gray", linestyle="none", markersize=9)


def _grid(count: int, width: float, height: float, extra: float):
    cols = min(3, max(1, count))
    rows = max(1, math.ceil(count / cols))
    fig = _figure((width * cols + extra, height * rows + 0.7))
    return fig, fig.subplots(rows, cols, squeeze=False, sharey=True), cols


def _band(ax, xs, ys, bands, colour) -> None:
    """The 95 % band: shaded where x runs one way along the line, else as error bars (a DSP svd
    line can turn back in energy: its factors cost MACs)."""
    if not all(b is not None for b in bands):
        return
    steps = [b - a for a, b in zip(xs, xs[1:])]
    if len(xs) > 1 and (all(d > 0 for d in steps) or all(d < 0 for d in steps)):
        ax.fill_between(xs, [max(y - b, 0.0) for y, b in zip(ys, bands)],
                        [min(y + b, 100.0) for y, b in zip(ys, bands)], color=colour, alpha=0.15, linewidth=0)
    else:
        ax.errorbar(xs, ys, yerr=bands, fmt="none", ecolor=colour, alpha=0.5, capsize=2, linewidth=0.8)


def _finish(fig, axes, count: int, title: str, handles: dict, legend_width: float, total_width: float,
            values: list[float]) -> None:
    """Hide unused panels, title, legend; y limits from the means (a band of 2 seeds can span
    far more than the data: it is cut at the axes, never widens them)."""
    for ax in list(axes.flat)[count:]:
        ax.set_visible(False)
    if values:
        low, high = min(values), max(values)
        margin = max(1.0, 0.15 * (high - low))
        axes.flat[0].set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    fig.suptitle(title, fontsize=9)
    fig.legend(list(handles.values()), list(handles), loc="center right", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - legend_width / total_width, 1))


def draw_compression(spec: dict):
    panels = spec["panels"] or [{"title": "dense rows", "lines": []}]
    fig, axes, cols = _grid(len(panels), 3.6, 3.0, 1.9)
    colours = _colours([line["series"] for panel in panels for line in panel["lines"]]
                       + [p["series"] for p in spec["single"]])
    every_x = [p["x"] for panel in panels for line in panel["lines"] for p in line["points"]]
    every_x += [p["x"] for p in spec["single"]]
    positive = [x for x in every_x if x > 0]
    log = bool(positive) and max(positive) > 20 * min(positive)
    handles: dict[str, object] = {}
    for ax, panel in zip(axes.flat, panels):
        for line in panel["lines"]:
            xs, ys = [p["x"] for p in line["points"]], [p["accuracy"] for p in line["points"]]
            colour = colours[line["series"]]
            (handle,) = ax.plot(xs, ys, color=colour, marker="o", markersize=3.5, linewidth=1.3)
            handles.setdefault(line["label"], handle)
            _band(ax, xs, ys, [p["band"] for p in line["points"]], colour)
            if line["anchored"]:
                ax.plot(xs[:1], ys[:1], "*", color=colour, markersize=9)
                handles.setdefault("dense row (start of each line)", _marker("*"))
        for p in spec["single"]:
            handle = ax.errorbar(p["x"], p["accuracy"], yerr=p["band"], fmt="*", color=colours[p["series"]],
                                 markersize=8, capsize=3)
            handles.setdefault(p["label"], handle)
        if log:
            ax.set_xscale("log")
        else:  # few ticks, in scientific notation: tick labels must not run into each other
            ax.locator_params(axis="x", nbins=4)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 4), useOffset=False)
        ax.set_title(panel["title"], fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    name = "energy per sample (mJ)" if spec["axis"] == "energy" else "effective parameters"
    for ax in axes[-1]:
        ax.set_xlabel(name + (", log" if log else ""), fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)", fontsize=8)
    width = 3.6 * cols + 1.9
    values = [p["accuracy"] for panel in panels for line in panel["lines"] for p in line["points"]]
    _finish(fig, axes, len(panels), f"{spec['protocol']}: accuracy vs {name.split(' per')[0]}\nfrom the dense "
            "row through each pruner's levels (mean over seeds, 95 % band)", handles, 1.9, width,
            values + [p["accuracy"] for p in spec["single"]])
    return fig


def draw_recovery(spec: dict):
    from matplotlib.ticker import MaxNLocator

    panels = spec["panels"]
    fig, axes, cols = _grid(len(panels), 3.1, 2.5, 1.9)
    colours = _colours([line["series"] for panel in panels for line in panel["lines"]])
    handles: dict[str, object] = {}
    for ax, panel in zip(axes.flat, panels):
        for line in panel["lines"]:
            colour = colours[line["series"]]
            (handle,) = ax.plot(line["epochs"], line["accuracy"], marker="o", markersize=3, color=colour,
                                linewidth=1.2)
            handles.setdefault(line["label"], handle)
            _band(ax, line["epochs"], line["accuracy"], line["band"], colour)
        handles.setdefault("dense model (before pruning)",
                           ax.axhline(panel["dense"], color="black", linestyle="--", linewidth=0.8))
        ax.set_title(panel["title"], fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for ax in axes[-1]:
        ax.set_xlabel("fine-tune epoch", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("validation accuracy (%)", fontsize=8)
    values = [a for panel in panels for line in panel["lines"] for a in line["accuracy"]]
    _finish(fig, axes, len(panels), f"{spec['protocol']}: recovery after pruning\n(validation accuracy, mean "
            "over seeds, 95 % band)", handles, 1.9, 3.1 * cols + 1.9, values + [p["dense"] for p in panels])
    return fig


DRAW: dict[str, Callable[[dict], object]] = {"compression": draw_compression, "recovery": draw_recovery}


def plot_png(data: str) -> bytes:
    """The PNG of a plot's data, carrying that data."""
    spec = json.loads(data)
    return _png(DRAW[spec["kind"]](spec), data)


def png_plot_data(path: Path) -> str | None:
    """The source data a rendered PNG carries, or None if it is not such a PNG."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise UsageError("checking the plots needs Pillow (comes with matplotlib): "
                         "pip install 'stxbench[leaderboard]'") from None
    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get(PLOT_DATA_KEY)
    except (UnidentifiedImageError, OSError):
        return None
