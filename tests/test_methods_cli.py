"""sLIF, L1P and DSP through the CLI, as a user runs them on the tiny protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY_PROTOCOL, run_cli

PRUNERS = {
    "none": [],
    "l1p": ["--set", "sparsity=0.9", "--set", "scope=layer"],
    "dsp-svd": ["--set", "keep=0.25"],
    "dsp-channels": ["--set", "method=channels", "--set", "keep=0.5"],
}
# tiny model (28,966 parameters): q, k, v, proj are 32x32, fc1 is 128x32, fc2 32x128
# (12,288 ST weights)
EXPECTED = {
    "none": dict(sparsity=0.0, ranks=[None] * 6, widths=[None] * 6, params=28966),
    # each matrix loses round(0.9 * n): 4 * 922 + 2 * 3686 = 11060 weights
    "l1p": dict(sparsity=1 - 1228 / 12288, ranks=[None] * 6, widths=[None] * 6,
                params=28966 - 11060),
    # 32x32: r = floor(0.25*1024/64) = 4 (256 weights); 128x32: r = floor(0.25*4096/160) = 6 (960)
    "dsp-svd": dict(sparsity=1 - 2944 / 12288, ranks=[4] * 4 + [6] * 2, widths=[None] * 6,
                    params=28966 - 12288 + 2944),
    # 64 hidden units removed: fc1 rows + biases (64*33), fc1 BN (2*64), fc2 columns (32*64)
    "dsp-channels": dict(sparsity=1 - 8192 / 12288, ranks=[None] * 6, widths=[None] * 4 + [64] * 2,
                         params=28966 - 4288),
}
# learnable neuron constants: PLIF one per layer (12 layers), sLIF two per channel (412
# channels: stem 4+8+16+32+32, q/k/v/attn/proj 5*32, fc1 128, fc2 32; 348 once fc1's neuron is
# narrowed to 64)
NEURON_PARAMS = {"lif": (0, 0), "plif": (12, 12), "slif": (2 * 412, 2 * 348)}


@pytest.fixture(scope="module")
def shared(tmp_path_factory, shared_cache) -> tuple[Path, Path]:
    """One protocol file and the session's dense cache for every combination (dense trains at
    most once per session)."""
    root = tmp_path_factory.mktemp("methods")
    protocol = root / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=2))
    return protocol, shared_cache


@pytest.mark.parametrize("pruner", PRUNERS)
@pytest.mark.parametrize("neuron", ["lif", "plif", "slif"])
def test_every_neuron_pruner_combination_runs(shared, tmp_path, neuron, pruner):
    protocol, cache = shared
    out = tmp_path / "out"
    result = run_cli("run", "--protocol", str(protocol), "--neuron", neuron,
                     "--pruner", pruner.split("-")[0], *PRUNERS[pruner], "--threads", "1",
                     "--cache-dir", str(cache), "--out", str(out), "--quiet")
    assert result.code == 0, result.stderr
    record = json.loads((out / "result.json").read_text())
    m, expected = record["metrics"], EXPECTED[pruner]
    assert m["sparsity"] == expected["sparsity"]
    assert [s["rank"] for s in m["matrices"]] == expected["ranks"]
    assert [s["width"] for s in m["matrices"]] == expected["widths"]
    assert m["params_total"] == 28966
    neuron_params = NEURON_PARAMS[neuron][pruner == "dsp-channels"]
    assert m["params_effective"] == expected["params"] + neuron_params
    assert len(m["firing_rates"]) == 12 and all(0 <= r <= 1 for r in m["firing_rates"].values())
    assert record["config"]["pruner_params"] == {
        "none": {}, "l1p": {"sparsity": 0.9, "scope": "layer"},
        "dsp-svd": {"keep": 0.25, "method": "svd"}, "dsp-channels": {"keep": 0.5, "method": "channels"},
    }[pruner]


@pytest.mark.parametrize(
    ("pruner", "setting", "words"),
    [
        ("l1p", "sparsity=1.0", ["sparsity=1.0", "less than 1"]),
        ("l1p", "sparsity=-0.1", ["sparsity=-0.1", "greater than or equal to 0"]),
        ("l1p", "scope=row", ["scope='row'", "'global' or 'layer'"]),
        ("dsp", "keep=0", ["keep=0", "greater than 0"]),
        ("dsp", "keep=1.5", ["keep=1.5", "less than or equal to 1"]),
        ("dsp", "method=qr", ["method='qr'", "'svd' or 'channels'"]),
        ("dsp", "sparsity=0.5", ["no parameter 'sparsity'", "keep, method"]),
    ],
)
def test_bad_pruner_parameters_are_one_line_errors_before_any_work(tmp_path, tiny_protocol, pruner, setting, words):
    out, cache = tmp_path / "out", tmp_path / "cache"
    result = run_cli("run", "--protocol", str(tiny_protocol), "--pruner", pruner, "--set", setting,
                     "--cache-dir", str(cache), "--out", str(out), "--quiet")
    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"pruner '{pruner}'" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists() and not cache.exists()
