"""Parameter accounting (stxbench.measure.metrics) against hand arithmetic on spikformer-1-16."""

from __future__ import annotations

import pytest

from stxbench.measure import metrics
from stxbench.run.errors import RunFailed
from stxbench_neuron_slif import SLIF
from stxbench_pruner_dsp import DSP, DSPParams
from stxbench_pruner_l1p import L1P, L1PParams
from tiny_models import tiny_model

# spikformer-1-16, 8x8x1 input, pools=2, 10 classes, by hand:
STEM = (1 * 2 + 2 * 4 + 4 * 8 + 8 * 16) * 9 + 2 * (2 + 4 + 8 + 16) + 16 * 16 * 9 + 2 * 16  # 3926
ATTN = 4 * (16 * 16 + 16) + 4 * 2 * 16  # q, k, v, proj Linear + BN: 1216
MLP = (16 * 64 + 64) + 2 * 64 + (64 * 16 + 16) + 2 * 16  # fc1, BN, fc2, BN: 2288
HEAD = 16 * 10 + 10
DENSE = STEM + ATTN + MLP + HEAD  # 7600
ST_WEIGHTS = 4 * 16 * 16 + 2 * 64 * 16  # 3072
# neuron channels: stem 2+4+8+16, rpe 16; q, k, v, attn, proj 16 each; fc1 64; fc2 16
NEURON_CHANNELS = 2 + 4 + 8 + 16 + 16 + 5 * 16 + 64 + 16  # 206


def measure(model, shapes):
    stats = metrics.matrix_stats(model, shapes)
    return stats, metrics.params_effective(model, stats), metrics.st_sparsity(stats)


def test_dense_counts():
    model = tiny_model()
    assert DENSE == 7600 and metrics.count_parameters(model) == DENSE
    stats, effective, sparsity = measure(model, metrics.dense_shapes(model))
    assert effective == DENSE and sparsity == 0.0
    assert [s.params for s in stats] == [256] * 4 + [1024] * 2
    assert sum(s.dense for s in stats) == ST_WEIGHTS


def test_slif_adds_two_parameters_per_channel():
    assert metrics.count_parameters(tiny_model(SLIF)) == DENSE + 2 * NEURON_CHANNELS  # 8012


def test_l1p_counts_nonzero_weights_after_finalize():
    model = tiny_model()
    shapes = metrics.dense_shapes(model)
    L1P().prune(model, L1PParams(sparsity=0.5))
    with pytest.raises(RunFailed, match="finalize"):  # weight_orig must not be counted
        metrics.matrix_stats(model, shapes)
    L1P().finalize(model)
    stats, effective, sparsity = measure(model, shapes)
    assert metrics.count_parameters(model) == DENSE  # still dense-shaped storage
    assert effective == DENSE - ST_WEIGHTS // 2 == 6064
    assert sparsity == 0.5 and sum(s.nonzero for s in stats) == 1536
    assert all(s.rank is None and s.width is None for s in stats)


def test_dsp_svd_counts_both_factors():
    model = tiny_model()
    shapes = metrics.dense_shapes(model)
    DSP().prune(model, DSPParams(keep=0.5, method="svd"))
    stats, effective, sparsity = measure(model, shapes)
    # 16x16: r = floor(0.5*256/32) = 4 -> 4*(16+16) = 128; 64x16: r = floor(0.5*1024/80) = 6 -> 480
    assert [s.rank for s in stats] == [4] * 4 + [6] * 2
    assert [s.params for s in stats] == [128] * 4 + [480] * 2
    assert [s.shape for s in stats][-2:] == [(64, 16), (16, 64)]
    assert effective == metrics.count_parameters(model) == DENSE - ST_WEIGHTS + 4 * 128 + 2 * 480 == 6000
    assert sparsity == 1 - 1472 / 3072


def test_dsp_channels_counts_the_narrowed_layers():
    model = tiny_model()
    shapes = metrics.dense_shapes(model)
    DSP().prune(model, DSPParams(keep=0.5, method="channels"))
    stats, effective, sparsity = measure(model, shapes)
    # 32 of 64 hidden units removed: fc1 rows + bias (32*17), BN (2*32), fc2 columns (16*32)
    removed = 32 * 16 + 32 + 2 * 32 + 16 * 32
    assert effective == metrics.count_parameters(model) == DENSE - removed == 6480
    fc1, fc2 = stats[-2:]
    assert (fc1.params, fc1.width, fc1.sparsity) == (512, 32, 0.5)
    assert (fc2.params, fc2.width, fc2.sparsity) == (512, 32, 0.5)
    assert sparsity == 1 - (ST_WEIGHTS - 1024) / ST_WEIGHTS
