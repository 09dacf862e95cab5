"""Rendered curves: NAUC by hand, the recovery section and plot, paired verdicts with recovery
curves. Records are a real tiny record re-labelled in code (never real entries)."""

from __future__ import annotations

import json
import math

import pytest
from test_leaderboard_render import file_entries, table_rows

from stxbench.leaderboard.curves import group_lines
from stxbench.leaderboard.plots import ENERGY_PLOT, PARAMS_PLOT, RECOVERY_PLOT, png_plot_data
from stxbench.leaderboard.render import group_rows, render
from stxbench.leaderboard.store import entry_name
from stxbench.record.schema import CurvePoint, Diagnostics, NeuronDiagnostic, Recovery, load_record

T975_DF1 = 12.706204736174707  # t quantile 0.975, 1 degree of freedom


@pytest.fixture
def base(tiny_runs):
    return load_record(tiny_runs.records["lif-s0"])


def make(base, neuron, pruner, params, seed, accuracy, sparsity, curve=None):
    """A record with the configuration and numbers a test needs (``curve``: validation
    accuracies after 0..E fine-tune epochs)."""
    recovery = None
    if curve is not None:
        layer = NeuronDiagnostic(firing_rate=0.1, surrogate_grad=0.2, loss_grad=0.01)
        recovery = Recovery(
            validation_samples=100, accuracy_dense=0.9,
            curve=[CurvePoint(epoch=e, accuracy=a, loss=None if e == 0 else 1.0) for e, a in enumerate(curve)],
            diagnostics=Diagnostics(samples=10, dense={"n": layer}, pruned={"n": layer}, finetuned={"n": layer}))
    return base.model_copy(update={
        "config": base.config.model_copy(update={"neuron": neuron, "pruner": pruner, "pruner_params": params,
                                                 "seed": seed}),
        "metrics": base.metrics.model_copy(update={"accuracy": accuracy, "sparsity": sparsity}),
        "recovery": recovery,
    })


def test_nauc_by_hand(base):
    records = [
        make(base, "lif", "none", {}, 0, 0.9, 0.0),
        make(base, "lif", "l1p", {"sparsity": 0.5}, 0, 0.8, 0.5),
        make(base, "lif", "l1p", {"sparsity": 0.9}, 0, 0.5, 0.9),
        make(base, "lif", "dsp", {"keep": 0.4, "method": "svd"}, 0, 0.7, 0.6),
        make(base, "plif", "dsp", {"keep": 0.4, "method": "svd"}, 0, 0.6, 0.6),  # no dense plif row
    ]
    rows = group_rows([(entry_name(r), r) for r in records])
    lines, common = group_lines(rows)
    assert common == 0.6  # the largest sparsity every anchored curve reaches
    by_label = {line.label: line for line in lines}
    # l1p: 0..0.5 from 0.9 to 0.8 (0.425), 0.5..0.6 from 0.8 to 0.725 (0.07625), over 0.6
    assert by_label["lif / l1p / torch"].nauc == pytest.approx((0.425 + 0.07625) / 0.6)
    assert by_label["lif / dsp (method=svd) / torch"].nauc == pytest.approx((0.9 + 0.7) / 2)
    assert by_label["plif / dsp (method=svd) / torch"].nauc is None
    assert [line.label for line in lines] == ["lif / l1p / torch", "lif / dsp (method=svd) / torch",
                                              "plif / dsp (method=svd) / torch"]


@pytest.fixture
def board(tmp_path, base):
    curves = {  # (neuron, seed) -> validation accuracy after 0, 1, 2 epochs
        ("lif", 0): [0.5, 0.7, 0.8], ("lif", 1): [0.4, 0.7, 0.8],
        ("slif", 0): [0.5, 0.8, 0.8], ("slif", 1): [0.4, 0.8, 0.9],
    }
    records = []
    for (neuron, seed), curve in curves.items():
        records.append(make(base, neuron, "none", {}, seed, 0.9, 0.0, [0.9, 0.9, 0.9]))
        records.append(make(base, neuron, "l1p", {"sparsity": 0.9}, seed, 0.8 + 0.01 * seed
                            + (0.02 if neuron == "slif" else 0.0), 0.9, curve))
    return file_entries(tmp_path / "lb", records)


def energy_tables(markdown: str) -> int:
    """How many tables the energy views put between the main table and the curves."""
    head = markdown.split("## Accuracy-compression curves")[0] if "## Accuracy-compression curves" in markdown else markdown
    return sum(1 for a, b in zip([""] + head.splitlines(), head.splitlines()) if b.startswith("|") and not a.startswith("|")) - 1


def test_a_board_with_recovery_curves_renders_them(board, cli):
    assert cli("leaderboard", "render", "--root", str(board.root)).code == 0
    folder = board.root / "tiny"
    assert {p.name for p in folder.iterdir()} == {"README.md", "entries", ENERGY_PLOT, PARAMS_PLOT, RECOVERY_PLOT,
                                                 "energy_breakdown.png"}
    text = (folder / "README.md").read_text()
    recovery = {r[0]: r for r in table_rows(text, energy_tables(text) + 2)}
    # AURC of lif: seed 0 (0.6 + 0.75) / 2 = 0.675, seed 1 (0.55 + 0.75) / 2 = 0.65
    # validation accuracy dense → epoch 0 → last epoch in one column
    assert recovery["lif / l1p (sparsity=0.9) / torch"][1:4] == [
        "2", "90.00 → 45.00 → 80.00", f"66.25\u00a0±\u00a0{100 * math.sqrt(0.0125 ** 2 * 2):.2f}"]
    assert recovery["lif / l1p (sparsity=0.9) / torch"][4:] == ["0.1 → 0.1 → 0.1", "0.2 → 0.2 → 0.2"]
    data = json.loads(png_plot_data(folder / RECOVERY_PLOT))
    panel = next(p for p in data["panels"] if p["title"].startswith("l1p"))
    lif = next(line for line in panel["lines"] if line["label"] == "lif / torch")
    assert lif["epochs"] == [0, 1, 2] and lif["accuracy"] == pytest.approx([45.0, 70.0, 80.0])
    assert lif["band"] == pytest.approx([T975_DF1 * 5, 0.0, 0.0])  # sd 5 sqrt(2), over sqrt(2)
    assert panel["dense"] == pytest.approx(90.0)
    # verdicts of sLIF against LIF: accuracy +2 points at both seeds (sd 0), AURC +5 and +7.5
    # one table per metric; the backend, torch in every row, is said once above them
    assert ("From `stxbench leaderboard paired tiny --a slif --b lif` (backend torch in every row):"
            in text)
    accuracy = {(r[0], r[1]): r for r in table_rows(text, energy_tables(text) + 3)}
    aurc = {(r[0], r[1]): r for r in table_rows(text, energy_tables(text) + 4)}
    row = accuracy[("slif - lif", "l1p (sparsity=0.9)")]
    assert row[2:5] == ["2", "+2.00 ± 0.00", "0.000"] and row[5] == "a better"
    aurc_sd = math.sqrt(((5 - 6.25) ** 2 + (7.5 - 6.25) ** 2) / 1)
    row = aurc[("slif - lif", "l1p (sparsity=0.9)")]
    assert row[2:4] == ["2", f"+6.25 ± {T975_DF1 * aurc_sd / math.sqrt(2):.2f}"]
    assert row[5] == "no detectable difference"
    assert "**accuracy verdicts**" in text and "**AURC verdicts**" in text


def test_a_changed_curve_rerenders_the_recovery_views_only(board):
    render(board)
    path = board.entries_dir("tiny") / "tiny__slif__l1p-sparsity0.9__torch__s1.json"
    record = load_record(path)
    curve = [p.model_copy(update={"accuracy": 0.5}) for p in record.recovery.curve]
    path.write_text(record.model_copy(update={"recovery": record.recovery.model_copy(update={"curve": curve})})
                    .model_dump_json(indent=2))
    changed, _ = render(board)
    assert sorted(p.name for p in changed) == ["README.md", RECOVERY_PLOT]


def test_check_holds_recovery_fields_to_the_protocol(tiny_runs, base, tmp_path):
    from stxbench.host.plugin_host import PluginHost
    from stxbench.leaderboard.store import ProtocolLookup
    from stxbench.leaderboard.verify import Verifier

    verifier = Verifier(ProtocolLookup([tiny_runs.protocol_dir]), PluginHost(()))
    assert not [p for p in verifier.problems(base) if p.field.startswith(("recovery", "metrics.accuracy_"))]
    forged = make(base, "lif", "none", {}, 0, base.metrics.accuracy, 0.0, [0.5, 0.6])
    assert [(p.field, p.message) for p in verifier.problems(forged) if p.field == "recovery"] == [
        ("recovery", "protocol tiny has no validation split, yet the entry carries a recovery curve")]
    blank = base.model_copy(update={"metrics": base.metrics.model_copy(update={"accuracy_pruned": None})})
    assert [p.field for p in verifier.problems(blank)] == ["metrics.accuracy_pruned"]

    folder = tmp_path / "protocols"
    folder.mkdir()
    text = (tiny_runs.protocol_dir / "tiny.toml").read_text()
    (folder / "tiny.toml").write_text(text.replace("[model]", "[data.validation]\nsamples = 100\n"
                                                  "diagnostic_samples = 10\n\n[model]"))
    validated = Verifier(ProtocolLookup([folder]), PluginHost(()))
    good = make(base, "lif", "none", {}, 0, base.metrics.accuracy, 0.0, [0.5, 0.6])
    fields = [(p.field, p.message) for p in validated.problems(good) if p.field.startswith("recovery")]
    assert fields == []  # 1 fine-tune epoch: points at 0 and 1; counts of 100; 10 diagnostic samples
    bad = make(base, "lif", "none", {}, 0, base.metrics.accuracy, 0.0, [0.5, 0.6, 0.7, 0.123])
    assert [(p.field, p.message) for p in validated.problems(bad) if p.field.startswith("recovery")] == [
        ("recovery.curve", "epochs [0, 1, 2, 3], but the protocol fine-tunes for 1 (a point at 0 and after each epoch)"),
        ("recovery.curve", "an accuracy is not a count of the 100 validation samples"),
    ]
    assert [p.field for p in validated.problems(base) if p.field == "recovery"] == ["recovery"]
