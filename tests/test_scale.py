"""Training that scales: sharded batches, mixup, schedule floor, bf16 autocast, execution record,
and the argument checks of --precision / --workers / --nproc / --device."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stxbench.run.processes import Execution, cudnn_settings, derive_seed
from stxbench.run.protocol import builtin_protocols, load_protocol
from stxbench.record.schema import load_record
from stxbench.run.config import usable_cpus
from stxbench.run.training import batches, lr_factor, mixup


class ListDataset(torch.utils.data.Dataset):
    """Not a TensorDataset: goes through the DataLoader path."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.tensor([float(i)]), i


@pytest.mark.parametrize("dataset", [
    torch.utils.data.TensorDataset(torch.arange(10.0)[:, None], torch.arange(10)),
    ListDataset(),
])
def test_shards_of_a_global_batch_are_the_single_process_batch(dataset):
    def labels(shard):
        gen = torch.Generator().manual_seed(derive_seed(5, 0))
        return [y.tolist() for _, y in batches(dataset, 4, shuffle=True, drop_last=True, generator=gen, shard=shard)]

    single = labels((0, 1))
    rank0, rank1 = labels((0, 2)), labels((1, 2))
    assert len(single) == 2 and all(len(b) == 4 for b in single)  # 10 // 4 batches, rest dropped
    assert [a + b for a, b in zip(rank0, rank1)] == single
    assert sorted(sum(single, [])) != list(range(8))  # shuffled, a permutation of 8 of the 10


def test_epoch_order_depends_on_seed_and_epoch_only():
    assert derive_seed(7, 0) == derive_seed(7, 0)
    assert len({derive_seed(7, 0), derive_seed(7, 1), derive_seed(8, 0)}) == 3


def test_cosine_decays_to_the_floor():
    assert lr_factor(0, 100, 10, "cosine", 0.02) == pytest.approx(0.1)  # warm-up
    assert lr_factor(10, 100, 10, "cosine", 0.02) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine", 0.02) == pytest.approx(0.51)  # halfway: (1 + 0.02) / 2
    assert lr_factor(100, 100, 10, "cosine", 0.02) == pytest.approx(0.02)


def test_mixup_mixes_inputs_and_one_hot_targets_with_one_lambda():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    y = torch.tensor([0, 2, 1])
    lam = float(np.random.default_rng(4).beta(0.5, 0.5))
    mixed, target = mixup(x, y, 3, 0.5, np.random.default_rng(4))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0))
    assert torch.allclose(target[0], torch.tensor([lam, 1 - lam, 0.0]))  # sample 0 with sample 2 (class 1)
    assert torch.allclose(target.sum(1), torch.ones(3))


def test_bf16_autocast_on_cpu_runs_and_is_recorded(cli, tiny_protocol, tmp_path, cache_dir):
    result = cli("run", "--protocol", str(tiny_protocol), "--device", "cpu", "--precision", "bf16",
                 "--out", str(tmp_path / "bf16"), "--cache-dir", str(cache_dir), "-q")
    assert result.code == 0, result.stderr
    execution = load_record(tmp_path / "bf16" / "result.json").provenance.execution
    assert execution.model_dump() == {"precision": "bf16", "world_size": 1, "dist_backend": None,
                                      "data_workers": 0, "pin_memory": False, "cudnn": None,
                                      "compile": None}
    # bf16 training caches its dense model apart from fp32's
    assert len(list((cache_dir / "dense").glob("*.pt"))) == 1
    result = cli("run", "--protocol", str(tiny_protocol), "--device", "cpu", "--out", str(tmp_path / "fp32"),
                 "--cache-dir", str(cache_dir), "-q")
    assert result.code == 0 and len(list((cache_dir / "dense").glob("*.pt"))) == 2
    record = json.loads((tmp_path / "fp32" / "result.json").read_text())
    assert record["provenance"]["execution"]["precision"] == "fp32"


def test_autocast_only_when_asked():
    layer = torch.nn.Linear(2, 2)
    with Execution(precision="bf16").autocast(torch.device("cpu")):
        assert layer(torch.ones(1, 2)).dtype == torch.bfloat16
    with Execution().autocast(torch.device("cpu")):
        assert layer(torch.ones(1, 2)).dtype == torch.float32
    assert cudnn_settings(torch.device("cpu")) is None


@pytest.mark.parametrize(("args", "message"), [
    (["--precision", "fp16"], "error: --precision fp16: valid: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16"),
    (["--workers", "-1"], f"error: --workers must be in 0..{usable_cpus()} (the CPUs this process may use), got -1"),
    (["--nproc", "1"], "error: --nproc must be >= 2 (1 is a plain run), got 1"),
    (["--nproc", "3"], "error: batch size 32 does not split over 3 processes; choose a process count that divides every stage's batch size"),
    (["--device", "cuda"], "error: --device cuda: CUDA is not available on this machine (valid: auto, cpu)"),
])
def test_execution_arguments_are_checked_before_work(cli, tiny_protocol, tmp_path, args, message):
    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli("run", "--protocol", str(tiny_protocol), "--device", "cpu", *args,
                 "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_protocol_hashes_survive_the_new_fields(tmp_path):
    # digits as it was before it pinned CPU numerics: the values main computed before
    # data.options, min_lr, mixup, rerun_rtol and cpu_pin existed
    unpinned = tmp_path / "digits.toml"
    unpinned.write_text(builtin_protocols()["digits"].read_text().replace('cpu_pin = "portable-v2"', ""))
    digits = load_protocol(str(unpinned))
    assert digits.cpu_pin is None
    assert digits.sha256() == "bb645ec4fb298717c2d3f537850f92c24c7286e9cb727d1f7c3c5cbdffa32004"
    assert digits.dense_key(0, "torch") == "a276264d75f2681cb09018f7589334de3bd14021cd088527ced833d489fde702"
    # the pin changes what a run computes: another hash and another dense model
    assert load_protocol("digits").sha256() != digits.sha256()
    assert load_protocol("digits").dense_key(0, "torch") != digits.dense_key(0, "torch")
    # a checking setting does not change what a run computes
    assert load_protocol(str(unpinned), {"rerun_rtol": 0.2}).sha256() == digits.sha256()
    assert load_protocol("digits", {"train.mixup": 0.5}).sha256() != digits.sha256()
    assert load_protocol("digits", {"data.options.train_samples": 100}).data.options == {"train_samples": 100}


def test_builtin_protocols_and_their_listing(cli):
    cifar = load_protocol("cifar10-spikformer-4-384")
    assert (cifar.model.T, cifar.train.epochs, cifar.train.batch_size, cifar.train.lr) == (4, 300, 128, 5e-4)
    assert (cifar.train.mixup, cifar.train.label_smoothing, cifar.train.warmup_epochs) == (0.5, 0.1, 20)
    dvs = load_protocol("cifar10dvs-spikformer-2-256")
    assert (dvs.data.encoding, dvs.model.T, dvs.data.options) == ("frames", 16, {"split_by": "number"})
    result = cli("list", "protocols")
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[3:] if line.strip()}
    assert rows["mnist1d"][1:6] == ["mnist1d", "spikformer-1-64", "4", "15+5", "yes"]
    assert rows["mnist1d-paper"][1:6] == ["mnist1d", "spikformer-2-64", "4", "15+4", "yes"]
    assert rows["fashion-mnist"][1:6] == ["fashion-mnist", "spikformer-1-32", "4", "10+3", "yes"]
    assert rows["cifar100-spikformer-4-384"][1:7] == ["cifar100", "spikformer-4-384", "4", "300+30", "no", "(GPU)"]
    assert rows["cifar10dvs-spikformer-2-256"][1:5] == ["cifar10-dvs", "spikformer-2-256", "16", "106+20"]


def test_firing_rates_count_exactly_under_bf16_autocast():
    """A bf16 sum of 300001 spikes is 299008: the count must not be taken in the output dtype."""
    from stxbench.api import NeuronSite
    from stxbench.measure.metrics import FiringRates
    from stxbench.models.base import NeuronSlot, SpikingModel

    class AllFire(torch.nn.Module):
        def forward(self, x):
            return torch.ones_like(x)

    class OneLayer(SpikingModel):
        def __init__(self):
            super().__init__()
            self.neuron = NeuronSlot(NeuronSite("neuron", 1, -1), lambda site: AllFire())

        def forward(self, x):
            return self.neuron(x)

    model = OneLayer()
    with FiringRates(model) as rates:
        model(torch.zeros(300_001, 1, dtype=torch.bfloat16))
    assert rates.overall() == 1.0


def test_every_builtin_cpu_protocol_pins_cpu_numerics():
    # an unpinned CPU protocol's entries re-run exactly only on the CPU kind that made them, so
    # CI (another machine) would fail them: every built-in CPU-cheap protocol carries the current
    # pin (portable-v1 left MKL's sqrt to the CPU: exact on one vendor only)
    from stxbench.run.cpu_pin import CURRENT

    protocols = {name: load_protocol(name) for name in builtin_protocols()}
    unpinned = [name for name, p in protocols.items() if p.cpu_cheap and p.cpu_pin != CURRENT]
    assert unpinned == []
