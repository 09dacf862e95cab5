"""The board's reference rows (stxbench.run.baselines): the linear classifier and the ANN twin, run
under a board's protocol, filed beside its entries, rendered apart from the ranking, checked and
re-run like entries; and the refusals around them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import lb, run_args, sweep_args, write_tiny_protocol
from stxbench.run.baselines import baseline_protocol
from stxbench.api import NeuronSite, Surrogate
from stxbench.run.protocol import load_protocol
from stxbench.record.schema import load_record

DIGITS_PIXELS, DIGITS_CLASSES = 64, 10
FP32_MAC_PJ = 4.6  # horowitz45-fp32-v1: mult 3.7 + add 0.9 pJ


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A lif run and both baselines of the tiny protocol, seed 0, by ``sweep --baselines``,
    submitted to a board of their own."""
    from helpers import run_cli

    root = tmp_path_factory.mktemp("baselines")
    protocol = write_tiny_protocol(root / "protocols")
    result = run_cli(*sweep_args(protocol, root / "sweep", root / "cache", "--baselines", "--seeds", "0",
                                 threads="1"))
    assert result.code == 0, result.stderr
    records = {p.parent.name: p for p in sorted((root / "sweep" / "tiny").glob("*/result.json"))}
    assert sorted(records) == ["baseline-ann-torch-s0", "baseline-linear-torch-s0", "lif-none-torch-s0"]
    submitted = lb(run_cli, "submit", root / "lb", protocol.parent, *map(str, records.values()))
    assert submitted.code == 0, submitted.stderr
    return root, protocol, records


def test_baseline_protocols_replace_the_model_and_keep_the_recipe():
    digits = load_protocol("digits")
    linear, ann = baseline_protocol(digits, "linear"), baseline_protocol(digits, "ann")
    assert (linear.model.name, linear.model.T, linear.model.options) == ("linear", 1, {})
    assert (ann.model.name, ann.model.T, ann.model.base_neuron) == (digits.model.name, 1, "ann")
    assert ann.model.options == digits.model.options
    for derived in (linear, ann):  # data, both stages, seeds, evaluation and cost model unchanged
        for section in ("data", "train", "finetune", "eval", "seeds", "energy_model", "cpu_pin"):
            assert getattr(derived, section) == getattr(digits, section)
    frames = load_protocol("cifar10dvs-sdt-2-256")  # event frames: time steps are the data's
    assert baseline_protocol(frames, "ann").model.T == frames.model.T
    assert baseline_protocol(digits, None) is digits


def test_the_twins_activation_is_the_if_rate_and_is_not_a_spike():
    from stxbench_neuron_ann import ANN, RateReference

    site = NeuronSite("s", channels=3, channel_dim=-1, v_threshold=0.5)
    neuron = RateReference(ANN, site, Surrogate("atan", 2.0))
    x = torch.tensor([[[-1.0, 0.0, 0.125, 0.25, 0.5, 3.0]]])  # exact in binary
    assert neuron(x).tolist() == [[[0.0, 0.0, 0.25, 0.5, 1.0, 1.0]]]
    assert neuron.spiking is False


def test_linear_baseline_record(board):
    _, _, records = board
    record = load_record(records["baseline-linear-torch-s0"])
    c, m = record.config, record.metrics
    assert (c.baseline, c.model, c.T, c.pruner, c.pruner_params) == ("linear", "linear", 1, "none", {})
    assert record.protocol.official and record.protocol.overrides == {}
    assert m.params_total == m.params_effective == DIGITS_PIXELS * DIGITS_CLASSES + DIGITS_CLASSES  # 650
    assert m.firing_rate is None and m.firing_rates == {} and m.sparsity == 0.0 and m.matrices == []
    # one 64 -> 10 matrix of real inputs: 640 fp32 multiply-accumulates per sample, nothing else
    assert (record.counts.mac, record.counts.ac, record.counts.ac_int) == (640, 0, 0)
    assert record.energy.mj_per_sample == pytest.approx(640 * FP32_MAC_PJ * 1e-9)


def test_ann_twin_record_is_the_same_network_without_spikes(board):
    _, protocol, records = board
    twin, snn = load_record(records["baseline-ann-torch-s0"]), load_record(records["lif-none-torch-s0"])
    assert (twin.config.baseline, twin.config.neuron, twin.config.base_neuron, twin.config.T) == ("ann", "ann", "ann", 1)
    assert twin.config.model == snn.config.model
    assert twin.protocol.sha256 == snn.protocol.sha256 == load_protocol(str(protocol)).sha256()
    assert twin.metrics.params_total == snn.metrics.params_total  # same architecture and widths
    assert set(twin.metrics.firing_rates) == set(snn.metrics.firing_rates)
    assert 0.0 < twin.metrics.firing_rate < 1.0
    assert twin.counts.mac > twin.counts.ac  # real-valued activations: multiply-accumulates
    int8 = [e for e in twin.energies if e.cost_model == "horowitz45-int8-v1" and e.convention == "stxbench"
            and e.pricing == "as-run"]
    assert len(int8) == 1 and 0 < int8[0].mj_per_sample < twin.energy.mj_per_sample


def test_board_shows_baselines_apart_with_margins(board):
    root, _, records = board
    readme = (root / "lb" / "tiny" / "README.md").read_text()
    ranked = readme.split("## Baselines")[0]
    assert "baseline" not in ranked.split("|---")[1]  # not a ranked row
    assert "2 entries" not in ranked and "1 entries in 1 rows" in ranked
    section = readme.split("## Baselines")[1].split("\n## ")[0]
    linear = load_record(records["baseline-linear-torch-s0"]).metrics.accuracy
    twin = load_record(records["baseline-ann-torch-s0"]).metrics.accuracy
    snn = load_record(records["lif-none-torch-s0"]).metrics.accuracy
    row = next(line for line in section.splitlines() if line.startswith("| lif / none / torch"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == f"{100 * (snn - linear):+.2f}" and cells[3] == f"{100 * (snn - twin):+.2f}"
    snn_mj, twin_record = load_record(records["lif-none-torch-s0"]).energy.mj_per_sample, load_record(records["baseline-ann-torch-s0"])
    int8 = next(e.mj_per_sample for e in twin_record.energies
                if (e.cost_model, e.convention, e.pricing) == ("horowitz45-int8-v1", "stxbench", "as-run"))
    assert cells[4] == f"{snn_mj / twin_record.energy.mj_per_sample:.3g}" and cells[5] == f"{snn_mj / int8:.3g}"
    index = (root / "lb" / "README.md").read_text()
    assert f"| {100 * linear:.2f}" in index and f"| {100 * twin:.2f}" in index


def test_check_holds_baselines_to_the_rules_of_entries(board, cli, tmp_path):
    root, protocol, _ = board
    copy = tmp_path / "lb"
    shutil.copytree(root / "lb", copy)
    assert lb(cli, "check", copy, protocol.parent).code == 0
    entry = copy / "tiny" / "entries" / "tiny__baseline-ann__torch__s0.json"
    data = json.loads(entry.read_text())
    data["config"]["neuron"] = "lif"
    entry.write_text(json.dumps(data))
    result = lb(cli, "check", copy, protocol.parent)
    assert result.code == 1 and "config.neuron: 'lif' but baseline ann runs 'ann'" in result.stdout
    data["config"].update(neuron="ann", baseline="svm")
    entry.write_text(json.dumps(data))
    result = lb(cli, "check", copy, protocol.parent)
    assert "config.baseline: 'svm' is not a baseline (valid: linear, ann)" in result.stdout


def test_baseline_entries_rerun_exactly(board, cli):
    root, protocol, _ = board
    result = lb(cli, "check", root / "lb", protocol.parent, "--rerun-only", "tiny__baseline-*",
                "--no-write-receipts")
    assert result.code == 0, result.stderr
    assert "2 re-run" in result.stdout + result.stderr


@pytest.mark.parametrize("extra, message", [
    (["--neuron", "ann"], "--neuron ann: not a spiking neuron"),
    (["--set", "model.base_neuron=ann"], "model.base_neuron ann: not a spiking neuron"),
    (["--baseline", "svm"], "--baseline svm: unknown baseline (valid: linear, ann)"),
    (["--baseline", "ann", "--pruner", "l1p"], "--baseline ann names its own neuron and is never pruned: drop --pruner"),
    (["--baseline", "linear", "--neuron", "slif"], "drop --neuron"),
    (["--baseline", "linear", "--set", "sparsity=0.5"], "--set sparsity: --baseline linear is never pruned"),
])
def test_baseline_refusals(cli, tiny_protocol, tmp_path, extra, message):
    result = cli(*run_args(tiny_protocol, tmp_path / "out", tmp_path / "cache", *extra))
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "out" / "result.json").exists()


def test_regime_criteria_are_measured_from_a_boards_records(board):
    """benchmarks/regime_criteria.py: the ST-block share, the margin over the linear baseline and
    the loss at each pruner's harshest and mildest level, from records."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import regime_criteria

    _, _, records = board
    dense, linear = load_record(records["lif-none-torch-s0"]), load_record(records["baseline-linear-torch-s0"])

    def pruned(sparsity: float, points_lost: float, params: int):
        config = dense.config.model_copy(update={"pruner": "l1p", "pruner_params": {"sparsity": sparsity}})
        metrics = dense.metrics.model_copy(update={"accuracy": dense.metrics.accuracy - points_lost / 100,
                                                   "params_effective": params})
        return dense.model_copy(update={"config": config, "metrics": metrics})

    found = {name: (value, met) for name, value, met, _ in regime_criteria.criteria(
        [dense, linear, pruned(0.5, 0.5, 20_000), pruned(0.98, 4.0, 10_000)])}
    m = dense.metrics
    assert found["ST-block matrices' share of parameters"] == (
        pytest.approx(100 * sum(s.dense for s in m.matrices) / m.params_total), False)  # tiny: the stem dominates
    margin = 100 * (m.accuracy - linear.metrics.accuracy)
    assert found["dense above the linear baseline (points)"] == (pytest.approx(margin), False)  # 360 test images
    assert found["l1p harshest level: loss after fine-tuning (points)"] == (pytest.approx(4.0), True)
    assert found["l1p mildest level: loss after fine-tuning (points)"] == (pytest.approx(0.5), True)


@pytest.mark.parametrize("baseline", ["linear", "ann"])
def test_baselines_run_on_a_protocol_with_a_validation_split(baseline, cli, tiny_protocol, shared_cache, tmp_path):
    """Recovery curves and diagnostics: the twin is diagnosed per layer, the linear model (no
    neuron layer) has nothing to diagnose and says so with empty diagnostics, not an error."""
    out = tmp_path / "out"
    result = cli(*run_args(tiny_protocol, out, shared_cache, "--baseline", baseline,
                           "--set", "data.validation.samples=300"))
    assert result.code == 0, result.stderr
    recovery = load_record(out / "result.json").recovery
    assert recovery.validation_samples == 300 and len(recovery.curve) == 2  # epoch 0 and 1
    layers = set(recovery.diagnostics.finetuned)
    assert (layers == set()) if baseline == "linear" else (len(layers) > 0 and layers == set(recovery.diagnostics.dense))


def test_the_summary_prints_a_linear_rows_tiny_energy_in_significant_digits():
    from stxbench.cli.run import mj_text

    assert (mj_text(2.944e-06), mj_text(1.472e-07), mj_text(0.011651), mj_text(0.0)) == (
        "2.94e-06", "1.47e-07", "0.011651", "0.000000")
