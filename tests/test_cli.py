"""The CLI end to end, as a user runs it: a real run on a tiny protocol, determinism, caching,
and every user error refused with one line, exit code 2 and nothing written."""

import json

import pytest
from conftest import TINY_PROTOCOL, run_cli

from stxbench.record.schema import load_record


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    proto = root / "tiny.toml"
    proto.write_text(TINY_PROTOCOL.format(dense_epochs=2))
    return root, proto


@pytest.fixture(scope="module")
def baseline(tiny):
    root, proto = tiny
    result = run_cli("run", "--protocol", str(proto), "--out", str(root / "a"),
                     "--cache-dir", str(root / "cache-a"), "-q")
    assert result.code == 0, result.stderr
    return result, load_record(root / "a" / "result.json")


def test_run_writes_a_valid_record_and_prints_a_table(baseline):
    result, record = baseline
    assert record.protocol.name == "tiny" and record.protocol.official
    assert record.config.neuron == "lif" and record.config.pruner == "none"
    assert record.config.backend == "torch" and record.config.seed == 0
    m = record.metrics
    assert 0.3 < m.accuracy <= 1.0  # the tiny model learns (chance is 0.1)
    assert m.correct == round(m.accuracy * m.test_samples) and m.test_samples == 360
    # spikformer-1-32 on 1x8x8: stem convs 36+288+1152+4608+9216, stem BNs 184, q/k/v/proj
    # 4*(32*32+32), fc1 32*128+128, fc2 128*32+32, block BNs 576, head 32*10+10
    assert m.params_total == 15_300 + 184 + 4_224 + 4_224 + 4_128 + 576 + 330 == 28_966
    assert m.params_effective <= m.params_total
    assert 0 < m.firing_rate < 1 and len(m.firing_rates) == 12
    assert record.timing.dense_s > 0
    assert record.provenance.checkpoint_sha256 and record.provenance.plugin_sha256
    used = {key.partition("/")[0] for key in record.provenance.plugin_sha256}
    assert used == {"stxbench_dataset_digits", "stxbench_model_spikformer", "stxbench_neuron_lif",
                    "stxbench_pruner_none", "stxbench_backend_torch"}
    assert "accuracy" in result.stdout and "params total / effective" in result.stdout
    assert "28,966" in result.stdout


def test_same_seed_same_metrics_with_or_without_the_cache(tiny, baseline):
    root, proto = tiny
    _, first = baseline
    fresh = run_cli("run", "--protocol", str(proto), "--out", str(root / "b"),
                    "--cache-dir", str(root / "cache-b"), "-q")
    cached = run_cli("run", "--protocol", str(proto), "--out", str(root / "c"),
                     "--cache-dir", str(root / "cache-a"), "-q")
    assert fresh.code == 0 and cached.code == 0
    b, c = load_record(root / "b" / "result.json"), load_record(root / "c" / "result.json")
    assert c.timing.dense_s is None and "cached" in cached.stdout
    assert b.metrics == first.metrics and c.metrics == first.metrics
    assert b.provenance.checkpoint_sha256 == first.provenance.checkpoint_sha256


def test_another_seed_differs_and_overrides_make_a_run_unofficial(tiny, baseline):
    root, proto = tiny
    _, first = baseline
    result = run_cli("run", "--protocol", str(proto), "--out", str(root / "d"), "--seed", "1",
                     "--set", "finetune.lr=0.002", "--cache-dir", str(root / "cache-a"), "-q")
    assert result.code == 0, result.stderr
    record = load_record(root / "d" / "result.json")
    assert not record.protocol.official
    assert record.protocol.overrides == {"finetune.lr": 0.002}
    assert record.protocol.sha256 != first.protocol.sha256
    assert record.metrics.firing_rates != first.metrics.firing_rates
    unlisted = run_cli("run", "--protocol", str(proto), "--out", str(root / "e"), "--seed", "7",
                       "--set", "train.epochs=0", "--cache-dir", str(root / "cache-a"), "-q")
    assert unlisted.code == 0 and not load_record(root / "e" / "result.json").protocol.official


@pytest.mark.parametrize(
    "args, message",
    [
        (["--neuron", "lfi"], "error: unknown neuron 'lfi'; did you mean 'lif'?"),
        (["--pruner", "nope"], "error: unknown pruner 'nope'"),
        (["--backend", "torc"], "error: unknown backend 'torc'; did you mean 'torch'?"),
        (["--protocol", "digit"], "error: unknown protocol 'digit'; did you mean 'digits'?"),
        (["--set", "model.T=0"], "model.T: Input should be greater than 0"),
        (["--set", "train.epochs=-1"], "train.epochs: Input should be greater than or equal to 0"),
        (["--set", "train.lr=fast"], "train.lr: Input should be a valid number"),
        (["--set", "sparsity=0.5"], "error: --set sparsity: pruner 'none' has no parameter 'sparsity'"),
        (["--set", "train.epoch=3"], "unknown protocol key 'train.epoch'; did you mean 'train.epochs'?"),
        (["--set", "novalue"], "error: --set 'novalue' must be KEY=VALUE"),
        (["--seed", "-1"], "error: --seed must be in 0..4294967295"),
        (["--threads", "0"], "error: --threads must be in 1.."),
        (["--device", "tpu"], "error: --device tpu: valid devices are auto, cpu, cuda, cuda:N"),
        (["--nueron", "lif"], "error: No such option: --nueron"),
    ],
)
def test_bad_input_is_refused_with_one_line(tmp_path, tiny_protocol, cli, args, message):
    out = tmp_path / "out"
    result = cli("run", "--protocol", str(tiny_protocol), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), *args)
    assert result.code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_a_protocol_naming_an_unknown_dataset_is_refused(tmp_path, cli):
    proto = tmp_path / "p.toml"
    proto.write_text(TINY_PROTOCOL.format(dense_epochs=1).replace('dataset = "digits"', 'dataset = "digitz"'))
    result = cli("run", "--protocol", str(proto), "--out", str(tmp_path / "o"))
    assert result.code == 2
    assert result.stderr == "error: unknown dataset 'digitz'; did you mean 'digits'? valid: " \
        + result.stderr.split("valid: ")[1]
    assert not (tmp_path / "o").exists()


def test_divergence_stops_the_run_without_a_record(tmp_path, tiny_protocol, cli):
    out = tmp_path / "out"
    result = cli("run", "--protocol", str(tiny_protocol), "--out", str(out), "-q",
                 "--cache-dir", str(tmp_path / "cache"), "--set", "train.lr=1e30")
    assert result.code == 1
    note, error = result.stderr.splitlines()  # the --set makes it unofficial, said up front
    assert note.startswith("note: this run will be unofficial (--set train.lr changes the protocol)")
    assert error.startswith("error: training diverged: loss is ") and "at dense epoch 1, step" in error
    assert not (out / "result.json").exists()


def test_help_is_complete(cli):
    top = cli("--help")
    assert top.code == 0
    for command in ("run", "list"):
        assert command in top.stdout
    run_help = cli("run", "--help").stdout
    for option in ("--protocol", "--neuron", "--pruner", "--backend", "--seed", "--device",
                   "--threads", "--out", "--cache-dir", "--set", "--data-root"):
        assert option in run_help


def test_list_shows_every_kind(cli):
    result = cli("list")
    assert result.code == 0
    for heading in ("neurons:", "pruners:", "backends:", "datasets:", "models:", "protocols:"):
        assert heading in result.stdout
    protocols = cli("list", "protocols").stdout
    assert "digits" in protocols and "spikformer-1-64" in protocols
    assert cli("list", "bogus").code == 2


def test_result_json_is_plain_json(baseline, tiny):
    root, _ = tiny
    data = json.loads((root / "a" / "result.json").read_text())
    assert data["schema_version"] == 3
    assert data["energy"] is None or data["energy"]["model_id"] == "horowitz45-fp32-v1"
