"""The GPU protocols carry the published training recipes of both families: what each sets, the
dataset options those recipes need (no crop on CIFAR, 64x64 unflipped CIFAR10-DVS frames), and
a training stage that runs the whole augmentation pipeline, seeded."""

from __future__ import annotations

import pytest
import torch

from stxbench.api import Surrogate
from stxbench.run.errors import UsageError
from stxbench.host.plugin_host import PluginHost
from stxbench.run.protocol import load_protocol
from stxbench.run.training import StageHooks, train_stage
from stxbench_backend_torch import TorchBackend
from stxbench_neuron_lif import LIF
from test_datasets_dvs import random_events
from test_datasets_idx_cifar import fake_cifar10

SPIKFORMER_OPS = ["Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel"]
RA = "rand-m9-n1-mstd0.4-inc1"


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


@pytest.mark.parametrize("name", ["cifar10-spikformer-4-384", "cifar100-spikformer-4-384"])
def test_spikformer_cifar_recipe(name):
    p = load_protocol(name)
    assert p.data.options == {"crop_padding": 0}
    assert p.model.surrogate == "sigmoid" and p.model.surrogate_alpha is None  # alpha 4
    for stage in (p.train, p.finetune):
        assert (stage.rand_augment, stage.rand_augment_ops, stage.rand_augment_interpolation) == (
            RA, SPIKFORMER_OPS, "bicubic")
        assert (stage.random_erasing, stage.random_erasing_mode, stage.random_erasing_count) == (0.25, "const", 1)
    t = p.train
    assert (t.epochs, t.batch_size, t.lr, t.min_lr, t.weight_decay, t.warmup_epochs) == (300, 128, 5e-4, 1e-5, 0.06, 20)
    assert (t.mixup, t.mixup_epochs, t.label_smoothing) == (0.5, 200, 0.1)


@pytest.mark.parametrize("name, classes, params", [("cifar10-sdt-2-512", 10, 10_233_418),
                                                   ("cifar100-sdt-2-512", 100, 10_279_588)])
def test_sdt_cifar_recipe(host, name, classes, params):
    p = load_protocol(name)
    assert p.data.options == {"crop_padding": 0} and p.model.surrogate == "sigmoid"
    for stage in (p.train, p.finetune):
        assert (stage.rand_augment, stage.rand_augment_ops, stage.random_erasing) == (RA, None, 0.0)
    t = p.train
    assert (t.epochs, t.batch_size, t.lr, t.min_lr, t.weight_decay, t.warmup_epochs) == (300, 64, 3e-4, 1e-5, 0.06, 20)
    assert (t.mixup, t.mixup_epochs, t.label_smoothing) == (0.5, 200, 0.1)
    model = _build(host, p, (3, 32, 32), classes)
    assert sum(q.numel() for q in model.parameters()) == params


def test_sdt_dvs_recipe(host):
    p = load_protocol("cifar10dvs-sdt-2-256")
    assert p.data.options == {"split_by": "number", "size": 64, "flip": False}
    assert p.model.T == 16 and p.model.options == {"heads": 8, "pools": 2, "erode": True}
    assert (p.train.rand_augment, p.train.random_erasing, p.train.mixup) == (None, 0.0, 0.0)
    t = p.train
    assert (t.epochs, t.batch_size, t.lr, t.min_lr, t.weight_decay, t.warmup_epochs) == (200, 32, 7.5e-3, 3e-4, 1e-4, 10)
    assert sum(q.numel() for q in _build(host, p, (2, 64, 64), 10).parameters()) == 2_566_666
    assert load_protocol("cifar10dvs-spikformer-2-256").model.surrogate == "sigmoid"


def _build(host, proto, shape, classes):
    family, _, size = proto.model.name.partition("-")
    return host.model_family(family).build(
        size, input_shape=shape, num_classes=classes, T=proto.model.T, options=dict(proto.model.options),
        make_neuron=lambda site: TorchBackend().make_neuron(LIF, site, Surrogate("sigmoid")))


# -- dataset options the recipes need -------------------------------------------------------


def test_cifar_without_crop_only_flips(host, tmp_path):
    fake_cifar10(tmp_path)
    splits = host.dataset("cifar10").load(str(tmp_path), crop_padding=0)
    assert splits.info["augment"] == "horizontal flip"
    x = splits.prepare(splits.train.tensors[0][:16])
    a = splits.augment(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(a[i], x[i].flip(-1)) for i in range(16)]
    assert all(flipped[i] or torch.equal(a[i], x[i]) for i in range(16)) and 0 < sum(flipped) < 16
    for bad in (-1, 17, 2.5, True, "4"):
        with pytest.raises(UsageError, match="crop_padding must be a whole number"):
            host.dataset("cifar10").load(str(tmp_path), crop_padding=bad)


def test_dvs_frames_resized_like_torchvision_and_unflipped(host, tmp_path):
    for c, name in enumerate(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]):
        for i in range(2):
            random_events(tmp_path / "events_np" / name / f"cifar10_{name}_{i}.npz", 400, c * 10 + i)
    full = host.dataset("cifar10-dvs").load(str(tmp_path), frames=3)
    small = host.dataset("cifar10-dvs").load(str(tmp_path), frames=3, size=64, flip=False)
    assert small.input_shape == (2, 64, 64) and small.augment is None and full.augment is not None
    x, _ = full.train[0]
    y, _ = small.train[0]
    assert y.shape == (3, 2, 64, 64)
    # bilinear 128 -> 64 with half-pixel centres and no antialiasing averages 2x2 blocks
    assert torch.allclose(y, torch.nn.functional.avg_pool2d(x, 2), atol=1e-6)
    assert y.sum() == pytest.approx(x.sum() / 4)
    for options, match in [({"size": 0}, "size must be"), ({"size": 200}, "size must be"),
                           ({"flip": "no"}, "flip must be true or false")]:
        with pytest.raises(UsageError, match=match):
            host.dataset("cifar10-dvs").load(str(tmp_path), frames=3, **options)


# -- a training stage with the whole pipeline -----------------------------------------------


def test_a_stage_trains_with_randaugment_erasing_and_mixup_seeded(host, tmp_path):
    fake_cifar10(tmp_path, n=16)
    splits = host.dataset("cifar10").load(str(tmp_path), crop_padding=0)
    stage = load_protocol("cifar10-spikformer-4-384", {
        "train.epochs": 1, "train.batch_size": 16, "train.warmup_epochs": 0}).train
    raw_inputs = []

    def run():
        torch.manual_seed(0)
        model = host.model_family("sdt").build(
            "1-16", input_shape=(3, 32, 32), num_classes=10, T=1, options={"pools": 2},
            make_neuron=lambda site: TorchBackend().make_neuron(LIF, site, Surrogate()))
        model.register_forward_pre_hook(lambda m, args: raw_inputs.append(args[0]) and None)
        losses = []
        hooks = StageHooks(on_epoch_end=lambda epoch, metrics: losses.append(metrics["loss"]))
        train_stage(model, splits, stage, name="dense", seed=3, device=torch.device("cpu"), hooks=hooks)
        return losses, model.state_dict()

    (loss_a, state_a), (loss_b, state_b) = run(), run()
    assert loss_a == loss_b and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    n = len(raw_inputs) // 2
    assert all(torch.equal(a, b) for a, b in zip(raw_inputs[:n], raw_inputs[n:]))
    plain = splits.prepare(splits.train.tensors[0])
    seen = torch.cat(raw_inputs[:n])
    assert seen.shape == (80, 3, 32, 32)
    # mixed, augmented inputs: none of them is a stored image or its mirror
    assert not any(torch.equal(s, p) or torch.equal(s, p.flip(-1)) for s in seen[:8] for p in plain)
