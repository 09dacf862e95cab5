"""Data parallelism through torchrun, on the CPU: 2 processes, gloo, one record, the accuracy of
a single-process run with the same global batch (within the protocol's tolerance)."""

from __future__ import annotations

import pytest
import torch.distributed as dist

from stxbench.protocol import load_protocol
from stxbench.record import load_record

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

# Global batch 32 = 2 processes x 16. Small enough for seconds, large enough to learn digits.
DDP_PROTOCOL = """
name = "ddp-check"
cpu_cheap = true
accuracy_tolerance = 0.06
seeds = [0]
[data]
dataset = "digits"
[model]
name = "spikformer-1-32"
T = 2
[model.options]
pools = 1
[train]
epochs = 3
batch_size = 32
lr = 5e-3
weight_decay = 0.01
[finetune]
epochs = 1
batch_size = 32
lr = 1e-3
[eval]
batch_size = 360
"""


def test_two_processes_write_one_record_with_single_process_accuracy(cli, tmp_path):
    protocol = tmp_path / "ddp.toml"
    protocol.write_text(DDP_PROTOCOL)
    common = ["--protocol", str(protocol), "--device", "cpu", "--threads", "1", "-q"]
    single = cli("run", *common, "--out", str(tmp_path / "one"), "--cache-dir", str(tmp_path / "cache"))
    assert single.code == 0, single.stderr
    double = cli("run", *common, "--nproc", "2", "--out", str(tmp_path / "two"), "--cache-dir", str(tmp_path / "cache"))
    assert double.code == 0, double.stderr

    one = load_record(tmp_path / "one" / "result.json")
    two = load_record(tmp_path / "two" / "result.json")
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["result.json"]
    assert two.provenance.execution.world_size == 2 and two.provenance.execution.dist_backend == "gloo"
    assert one.provenance.execution.world_size == 1
    assert two.metrics.test_samples == 360 and two.timing.dense_s is not None  # trained, not cached
    # rank 0 wrote the dense cache once, apart from the single-process one
    assert len(list((tmp_path / "cache" / "dense").glob("*.pt"))) == 2
    tolerance = load_protocol(str(protocol)).accuracy_tolerance
    assert one.metrics.accuracy_dense > 0.5  # it learned: the comparison means something
    assert abs(two.metrics.accuracy_dense - one.metrics.accuracy_dense) <= tolerance
    assert abs(two.metrics.accuracy - one.metrics.accuracy) <= tolerance
