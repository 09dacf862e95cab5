"""Counts and energy through the CLI, as a user gets them: `stxbench run` records, `--no-counts`,
and `stxbench energy RESULT.json` with its error cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_PROTOCOL, run_cli

from stxbench.measure import counting
from stxbench.measure.conventions import CONVENTIONS
from stxbench.measure.energy import COST_MODELS, cost_model, estimate
from stxbench.record.schema import load_record

# neuron updates per sample of the tiny spikformer-1-32 (8x8 input, pools=2, T=2), by layer:
# stem 4x64 + 8x64 + 16x64 + 32x16 (pooled to 4x4) + rpe 32x4 = 2432; block (4 tokens, width
# 32, hidden 128) q,k,v 3x4x32 + attn 4x32 + proj 4x32 + fc1 4x128 + fc2 4x32 = 1280; x T
TINY_NEURON_UPDATES = (2432 + 1280) * 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_cache) -> Path:
    """Counted runs of the tiny protocol (dense, DSP svd, DSP svd with a spiking bottleneck) and a
    --no-counts one, on the session's dense model (`shared_cache`)."""
    root = tmp_path_factory.mktemp("energy")
    protocol = root / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=2))
    common = ["--protocol", str(protocol), "--cache-dir", str(shared_cache), "--threads", "1", "-q"]
    for name, extra in (("counted", []), ("skipped", ["--no-counts"]), ("dsp", ["--pruner", "dsp"]),
                        ("dsp_spike", ["--pruner", "dsp", "--set", "bottleneck=spike"])):
        result = run_cli("run", *common, "--out", str(root / name), *extra)
        assert result.code == 0, result.stderr
        (root / f"{name}.stdout").write_text(result.stdout)
    return root


def test_run_records_counts_with_attention_rows(runs):
    record = load_record(runs / "counted" / "result.json")
    counts, energy = record.counts, record.energy
    modules = {row.module: row for row in counts.layers}
    assert {"blocks.0.attn.qk", "blocks.0.attn.av"} <= set(modules)
    assert modules["blocks.0.attn.qk"].op == "bmm" and modules["blocks.0.attn.qk"].kind == "ac"
    assert modules["stem.convs.0"].kind == "mac"  # the real-valued image
    # first conv: 1 -> 4 channels, 3x3 padding 1 on 8x8 (22 x 22 real taps), at T = 2 steps
    assert modules["stem.convs.0"].effective_ops == 4 * 484 * 2
    # the head runs once, on the mean over tokens and time: 32 x 10 MACs
    assert (modules["head"].kind, modules["head"].effective_ops) == ("mac", 320.0)
    assert (counts.samples, counts.subset, counts.rule) == (360, "test[:360]", "stxbench-ops-v1")
    assert counts.neuron_updates == TINY_NEURON_UPDATES
    for kind in ("mac", "ac", "ac_int"):
        by_layer = sum(row.effective_ops for row in counts.layers if row.kind == kind)
        assert getattr(counts, kind) == pytest.approx(by_layer, rel=1e-12)
    assert (energy.model_id, energy.e_mac_pj, energy.e_ac_pj) == ("horowitz45-fp32-v1", 4.6, 0.9)
    # what the leaderboard checker does: recompute from the stored counts, exactly
    assert cost_model(energy.model_id).mj(counts.mac, counts.ac, counts.ac_int) == energy.mj_per_sample
    assert energy.mj_per_sample > 0
    assert "ops / sample" in (runs / "counted.stdout").read_text()


def test_no_counts_run_holds_no_counts(runs):
    record = load_record(runs / "skipped" / "result.json")
    assert record.counts is None and record.energy is None
    summary = (runs / "skipped.stdout").read_text()
    assert "energy / sample" in summary and "not counted" in summary


def _mj_column(stdout: str) -> list[float]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip() or line.startswith("┌"):
            break
        rows.append(float(line.split()[-2]))
    return rows


@pytest.mark.parametrize("name", ["int8", "horowitz45-fp16-v1", None])
def test_energy_recomputes_under_another_table(runs, name):
    path = runs / "counted" / "result.json"
    result = run_cli("energy", str(path), *(["--model", name] if name else []))
    assert result.code == 0, result.stderr
    record = load_record(path)
    model = cost_model(name or record.energy.model_id)
    expected = model.mj(record.counts.mac, record.counts.ac, record.counts.ac_int)
    assert f"{expected:.6e} mJ" in result.stdout and model.id in result.stdout
    assert ("stored:" in result.stdout) == (model.id != record.energy.model_id)
    costs = _mj_column(result.stdout)
    assert len(costs) == len(record.counts.layers)
    assert costs == sorted(costs, reverse=True)


def _one_error_line(result, *fragments: str) -> None:
    assert result.code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_energy_errors_are_one_line(runs, tmp_path):
    _one_error_line(run_cli("energy", str(tmp_path / "missing.json")), "no such file")
    (tmp_path / "text.json").write_text("not json at all")
    _one_error_line(run_cli("energy", str(tmp_path / "text.json")), "not JSON")
    (tmp_path / "other.json").write_text(json.dumps({"accuracy": 0.9}))
    _one_error_line(run_cli("energy", str(tmp_path / "other.json")), "not a valid result record")
    _one_error_line(run_cli("energy", str(runs / "skipped" / "result.json")), "--no-counts")
    _one_error_line(
        run_cli("energy", str(runs / "counted" / "result.json"), "--model", "int4"),
        "unknown energy model 'int4'", "int8", "horowitz45-fp32-v1",
    )


def test_protocol_with_unknown_energy_model_is_refused_before_work(tmp_path, cache_dir):
    protocol = tmp_path / "bad.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=2).replace(
        'cpu_cheap = true', 'cpu_cheap = true\nenergy_model = "horowitz7-v9"'))
    out = tmp_path / "out"
    result = run_cli("run", "--protocol", str(protocol), "--cache-dir", str(cache_dir), "--out", str(out), "-q")
    _one_error_line(result, "unknown energy model 'horowitz7-v9'")
    assert not out.exists() and not cache_dir.exists()


def test_failing_count_fails_the_run(runs, tmp_path, monkeypatch):
    def broken(self, *args):
        raise ValueError("boom")

    monkeypatch.setattr(counting.OpCounter, "_charge", broken)
    out = tmp_path / "out"
    result = run_cli("run", "--protocol", str(runs / "tiny.toml"), "--cache-dir", str(runs / "cache"),
                     "--out", str(out), "--threads", "1", "-q")
    assert result.code == 1
    assert result.stderr.strip() == "error: op counting failed: ValueError: boom"
    assert not (out / "result.json").exists()


def test_record_holds_energy_under_every_convention_and_cost_model(runs):
    record = load_record(runs / "counted" / "result.json")
    counts = record.counts
    assert record.energy.convention == "stxbench" and counts.precision == "fp32"
    assert counts.ops and counts.batchnorm and counts.neurons and counts.merge_options == []
    assert sum(n.updates for n in counts.neurons) == counts.neuron_updates == TINY_NEURON_UPDATES
    pairs = {(e.convention, e.cost_model, e.pricing) for e in record.energies}
    assert pairs == {(c, m, "as-run") for c in CONVENTIONS for m in COST_MODELS}
    for stored in record.energies:
        again = estimate(counts, stored.convention, stored.cost_model)
        assert stored.mj_per_sample == again.mj_per_sample == stored.compute_mj + stored.memory_mj
        assert (stored.memory_mj > 0) == cost_model(stored.cost_model).prices_memory
    default = next(e for e in record.energies if (e.convention, e.cost_model) == ("stxbench", record.energy.model_id))
    assert default.mj_per_sample == record.energy.mj_per_sample


def test_dsp_records_price_merged_matrices_and_spiking_bottlenecks(runs):
    real = load_record(runs / "dsp" / "result.json")
    assert real.config.pruner_params == {"keep": 0.5, "method": "svd"}
    assert len(real.counts.merge_options) == 6
    merged = [e for e in real.energies if e.pricing == "merge-if-cheaper"]
    assert {(e.convention, e.cost_model) for e in merged} == {(c, m) for c in CONVENTIONS for m in COST_MODELS}
    for e in merged:
        as_run = next(a for a in real.energies if (a.convention, a.cost_model, a.pricing) == (e.convention, e.cost_model, "as-run"))
        assert e.mj_per_sample <= as_run.mj_per_sample
        assert (e.mj_per_sample < as_run.mj_per_sample) == bool(e.merged)
    spike = load_record(runs / "dsp_spike" / "result.json")
    assert spike.config.pruner_params["bottleneck"] == "spike" and spike.counts.merge_options == []
    seconds = {layer.kind for layer in spike.counts.layers if layer.module.endswith(".second")}
    assert seconds == {"ac"}
    assert "blocks.0.mlp.fc1.linear.neuron" in spike.metrics.firing_rates


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_energy_json_under_a_convention_and_memory_model(runs, convention):
    path = runs / "counted" / "result.json"
    result = run_cli("energy", str(path), "--convention", convention, "--cost-model", "simple", "--json")
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    stored = next(e for e in load_record(path).energies
                  if (e.convention, e.cost_model) == (convention, "simple-fp32-v1"))
    assert (data["convention"], data["cost_model"], data["pricing"]) == (convention, "simple-fp32-v1", "as-run")
    assert data["mj_per_sample"] == stored.mj_per_sample == data["compute_mj"] + data["memory_mj"]
    assert data["memory_mj"] > data["compute_mj"] > 0
    assert sum(layer["mj"] for layer in data["layers"]) == pytest.approx(data["mj_per_sample"], rel=1e-9)
    table = run_cli("energy", str(path), "-c", convention, "-m", "simple")
    assert table.code == 0 and f"convention {convention}" in table.stdout
    assert f"{stored.mj_per_sample:.6e} mJ" in table.stdout


def test_energy_merge_if_cheaper_through_the_cli(runs):
    path = runs / "dsp" / "result.json"
    data = json.loads(run_cli("energy", str(path), "--merge-if-cheaper", "--json").stdout)
    stored = next(e for e in load_record(path).energies
                  if (e.convention, e.cost_model, e.pricing) == ("stxbench", "horowitz45-fp32-v1", "merge-if-cheaper"))
    assert (data["pricing"], data["merged"], data["mj_per_sample"]) == ("merge-if-cheaper", stored.merged, stored.mj_per_sample)


def test_energy_convention_errors_are_one_line(runs, tmp_path):
    path = runs / "counted" / "result.json"
    _one_error_line(run_cli("energy", str(path), "--convention", "syops"),
                    "unknown counting convention 'syops'", "neurobench, spikingjelly, stxbench")
    _one_error_line(run_cli("energy", str(path), "--cost-model", "hbm", "--json"),
                    "unknown energy model 'hbm'", "simple", "horowitz45-fp32-dram-v1")
    # a bad name is reported even for a file that is not there
    _one_error_line(run_cli("energy", str(tmp_path / "missing.json"), "-c", "nope"), "unknown counting convention")
    # a record from before per-op counts: stxbench compute energy only
    old = json.loads(path.read_text())
    for key in ("ops", "batchnorm", "neurons", "merge_options", "precision"):
        old["counts"].pop(key)
    old.pop("energies")
    old["energy"].pop("convention")
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert run_cli("energy", str(tmp_path / "old.json"), "-m", "int8").code == 0
    for extra in (["-c", "spikingjelly"], ["-m", "simple"], ["--merge-if-cheaper"]):
        _one_error_line(run_cli("energy", str(tmp_path / "old.json"), *extra), "predates per-op raw counts")


def test_protocol_with_unknown_convention_is_refused_before_work(tmp_path, cache_dir):
    protocol = tmp_path / "bad.toml"
    protocol.write_text(TINY_PROTOCOL.format(dense_epochs=2).replace(
        'cpu_cheap = true', 'cpu_cheap = true\nenergy_convention = "syops"'))
    out = tmp_path / "out"
    result = run_cli("run", "--protocol", str(protocol), "--cache-dir", str(cache_dir), "--out", str(out), "-q")
    _one_error_line(result, "unknown counting convention 'syops'")
    assert not out.exists() and not cache_dir.exists()


def test_protocol_names_the_convention_of_the_records_energy(runs, tmp_path):
    protocol = tmp_path / "tiny.toml"
    protocol.write_text((runs / "tiny.toml").read_text().replace(
        'cpu_cheap = true', 'cpu_cheap = true\nenergy_convention = "spikingjelly"'))
    out = tmp_path / "out"
    result = run_cli("run", "--protocol", str(protocol), "--cache-dir", str(runs / "cache"),
                     "--out", str(out), "--threads", "1", "-q")
    assert result.code == 0, result.stderr
    record = load_record(out / "result.json")
    assert record.energy.convention == "spikingjelly"
    assert record.energy.mj_per_sample == estimate(record.counts, "spikingjelly", record.energy.model_id).mj_per_sample
    # the table defaults to the record's own convention
    assert "convention spikingjelly" in run_cli("energy", str(out / "result.json")).stdout
