"""Validation split, short epochs, recovery curves and per-layer neuron diagnostics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TINY_PROTOCOL
from tiny_models import factory
from torch import nn

from stxbench.api import NeuronSite
from stxbench.data.splits import carve_validation, stratified_indices
from stxbench.measure.diagnostics import neuron_diagnostics
from stxbench.run.errors import UsageError
from stxbench.models.base import NeuronSlot, SpikingModel
from stxbench.run.protocol import load_protocol
from stxbench.record.schema import load_record
from stxbench.run.training import StagePlan
from stxbench_dataset_digits import Digits
from stxbench_neuron_lif import LIF

VALIDATED = TINY_PROTOCOL.format(dense_epochs=2).replace(
    '[model]', '[data.validation]\nsamples = 300\nseed = 5\ndiagnostic_samples = 40\n\n[model]'
).replace("[finetune]\nepochs = 1\n", "[finetune]\nepochs = 3\nepoch_samples = 320\n")


# -- the split ------------------------------------------------------------------------------


def test_stratified_split_takes_the_largest_remainders_and_is_pinned_by_its_seed():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)  # shares of 7: 3.5, 2.1, 1.4
    index = stratified_indices(labels, 7, seed=3)
    assert list(np.bincount(labels[index])) == [4, 2, 1]  # floors 3, 2, 1; the one left to class 0
    assert list(index) == sorted(index) and len(set(index)) == 7
    assert list(stratified_indices(labels, 7, seed=3)) == list(index)
    assert list(stratified_indices(labels, 7, seed=4)) != list(index)
    # a tie in remainders goes to the lower label: shares 1.5 and 1.5
    tied = np.array([0] * 6 + [1] * 6)
    assert list(np.bincount(tied[stratified_indices(tied, 3, 0)])) == [2, 1]


def test_the_validation_split_leaves_the_training_set_and_keeps_class_shares(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text(VALIDATED)
    proto = load_protocol(str(path))
    splits = Digits().load(None)
    train, validation = carve_validation(proto, splits)
    x_all, y_all = splits.train.tensors
    x_tr, y_tr = train.train.tensors
    x_val, y_val = validation.tensors
    assert len(y_val) == 300 and len(y_tr) + 300 == len(y_all)
    assert train.test is splits.test  # the test set is not touched
    rows = {tuple(r.tolist()) for r in x_all.flatten(1)}
    assert len(rows) == len(y_all)  # digits has no duplicate images: rows identify samples
    assert not {tuple(r.tolist()) for r in x_tr.flatten(1)} & {tuple(r.tolist()) for r in x_val.flatten(1)}
    share = torch.bincount(y_all, minlength=10) * 300 / len(y_all)
    assert (torch.bincount(y_val, minlength=10) - share).abs().max() < 1
    again, validation_again = carve_validation(proto, splits)
    assert torch.equal(validation_again.tensors[0], x_val) and torch.equal(again.train.tensors[1], y_tr)


def test_a_validation_split_that_cannot_be_carved_is_one_line(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text(VALIDATED.replace("samples = 300", "samples = 1437"))
    with pytest.raises(UsageError, match=r"data\.validation\.samples = 1437 must be at least the 10 classes and "
                                         r"fewer than the 1437 training samples"):
        carve_validation(load_protocol(str(path)), Digits().load(None))
    path.write_text(VALIDATED.replace("diagnostic_samples = 40", "diagnostic_samples = 301"))
    with pytest.raises(UsageError, match=r"diagnostic_samples \(301\) must be at most samples \(300\)"):
        load_protocol(str(path))


def test_short_epochs_take_whole_batches_of_the_shuffled_order(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text(VALIDATED)
    proto = load_protocol(str(path))
    splits, _ = carve_validation(proto, Digits().load(None))
    assert StagePlan.of(splits, proto.finetune).per_epoch == 10  # 320 / 32
    assert StagePlan.of(splits, proto.finetune).total == 30
    assert StagePlan.of(splits, proto.train).per_epoch == len(splits.train) // 32
    path.write_text(VALIDATED.replace("epoch_samples = 320", "epoch_samples = 300"))
    with pytest.raises(UsageError, match=r"\(line \d+\): finetune: epoch_samples \(300\) must be a multiple "
                                         r"of batch_size \(32\)$"):
        load_protocol(str(path))


# -- a run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validated_run(tmp_path_factory):
    from conftest import run_cli

    root = tmp_path_factory.mktemp("validated")
    (root / "v.toml").write_text(VALIDATED)
    result = run_cli("run", "--protocol", str(root / "v.toml"), "--neuron", "slif", "--pruner", "l1p",
                     "--set", "sparsity=0.9", "--out", str(root / "out"), "--cache-dir", str(root / "cache"),
                     "--threads", "1", "-q")
    assert result.code == 0, result.stderr
    return root, load_record(root / "out" / "result.json")


def test_a_run_with_a_validation_split_records_its_recovery(validated_run):
    _, record = validated_run
    rec = record.recovery
    assert rec.validation_samples == 300
    assert [p.epoch for p in rec.curve] == [0, 1, 2, 3]
    assert rec.curve[0].loss is None and all(p.loss > 0 for p in rec.curve[1:])
    assert all(abs(p.accuracy * 300 - round(p.accuracy * 300)) < 1e-9 for p in rec.curve)  # counts of 300
    # the test set is touched once: no test accuracy before fine-tuning
    assert record.metrics.accuracy_dense is None and record.metrics.accuracy_pruned is None
    d = rec.diagnostics
    assert d.samples == 40
    names = set(d.dense)
    assert names == set(d.pruned) == set(d.finetuned) == set(record.metrics.firing_rates)
    # pruning touches only the ST-block matrices: the stem neurons see the same input before and after
    for name in names:
        if name.startswith("stem."):
            assert d.pruned[name].firing_rate == d.dense[name].firing_rate
            assert d.pruned[name].surrogate_grad == d.dense[name].surrogate_grad
    assert d.pruned["blocks.0.mlp.fc1.neuron"] != d.dense["blocks.0.mlp.fc1.neuron"]
    assert record.timing.validation_s > 0


def test_the_recovery_curve_is_the_validation_accuracy_of_the_model_at_each_epoch(validated_run, cli):
    root, record = validated_run
    # the same run with fine-tuning cut to one epoch reproduces the first two points exactly:
    # the validation passes change nothing in training
    short = cli("run", "--protocol", str(root / "v.toml"), "--neuron", "slif", "--pruner", "l1p",
                "--set", "sparsity=0.9", "--set", "finetune.epochs=1", "--out", str(root / "short"),
                "--cache-dir", str(root / "cache"), "--threads", "1", "-q")
    assert short.code == 0, short.stderr
    other = load_record(root / "short" / "result.json").recovery
    assert other.accuracy_dense == record.recovery.accuracy_dense
    assert other.curve[0] == record.recovery.curve[0]
    assert other.diagnostics.dense == record.recovery.diagnostics.dense
    assert other.diagnostics.pruned == record.recovery.diagnostics.pruned


# -- diagnostics, by hand -------------------------------------------------------------------


class OneNeuronLayer(SpikingModel):
    """x [B, T=2, 1] -> X = x (identity weight) -> LIF (tau 2, theta 1, ATan alpha 2) -> logits
    (m, -m) with m the mean spike over time."""

    T = 2

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1, bias=False)
        nn.init.ones_(self.linear.weight)
        self.slot = NeuronSlot(NeuronSite("slot", 1, -1), factory(LIF))

    def st_matrix_names(self):
        return []

    def forward(self, x):
        s = self.slot(self.linear(x.transpose(0, 1)))
        m = s.mean(0)
        return torch.cat([m, -m], dim=-1)


def test_diagnostics_equal_a_hand_computation():
    x = torch.tensor([[[1.0], [3.0]], [[2.4], [0.2]]])  # two samples, T = 2
    y = torch.tensor([1, 0])
    found = neuron_diagnostics(OneNeuronLayer(), x, y)["slot"]

    def atan_grad(u):  # ATan(alpha=2): (alpha/2) / (1 + (pi alpha/2 u)^2)
        return 1.0 / (1.0 + (math.pi * u) ** 2)

    local, loss, spikes = [], [], []
    for (x1,), (x2,) in x.tolist():
        h1 = x1 / 2
        s1 = float(h1 >= 1)
        v1 = h1 * (1 - s1)
        h2 = v1 + (x2 - v1) / 2
        s2 = float(h2 >= 1)
        g1, g2 = atan_grad(h1 - 1), atan_grad(h2 - 1)
        ds1_dx1, ds2_dx2 = g1 / 2, g2 / 2
        ds2_dx1 = g2 * (1 - s1) / 2 / 2  # through V1 = H1 (1 - S1), the reset spike detached
        local += [ds1_dx1 + ds2_dx1, ds2_dx2]
        spikes += [s1, s2]
        m = (s1 + s2) / 2
        p = [math.exp(m) / (math.exp(m) + math.exp(-m)), math.exp(-m) / (math.exp(m) + math.exp(-m))]
        label = int(y[len(loss) // 2])
        dl_dm = (p[0] - (label == 0)) - (p[1] - (label == 1))
        dl_ds = dl_dm / 2  # m is the mean over T = 2
        loss += [abs(dl_ds * (ds1_dx1 + ds2_dx1)), abs(dl_ds * ds2_dx2)]
    assert spikes == [0.0, 1.0, 1.0, 0.0]
    assert found.firing_rate == 0.5
    assert found.surrogate_grad == pytest.approx(sum(local) / 4, rel=1e-6)
    assert found.loss_grad == pytest.approx(sum(loss) / 4, rel=1e-6)


def test_diagnostics_leave_the_model_and_its_gradients_alone():
    model = OneNeuronLayer().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    neuron_diagnostics(model, torch.rand(3, 2, 1) * 4, torch.tensor([0, 1, 0]))
    assert model.training and model.linear.weight.grad is None
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_short_epochs_longer_than_the_training_set_are_refused_before_work(cli, tmp_path):
    path = tmp_path / "v.toml"
    path.write_text(VALIDATED)
    result = cli("run", "--protocol", str(path), "--set", "finetune.epoch_samples=1152", "--out",
                 str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "-q")
    assert result.code == 2
    assert result.stderr.strip() == ("error: protocol tiny: finetune.epoch_samples = 1152 exceeds the 1137 "
                                     "training samples")  # 1437 digits training images less 300
    assert not (tmp_path / "out" / "result.json").exists() and not (tmp_path / "cache").exists()
