"""Protocols: loading, canonical hashing, overrides, and one-line errors naming line and key."""

import pytest

from stxbench.run.errors import UsageError
from stxbench.run.protocol import builtin_protocols, load_protocol, parse_value

DIGITS_REFORMATTED = """
# the same protocol, keys reordered, comments and spacing changed
seeds = [0, 1, 2]
name = "digits"
description = "a different description does not change the hash"
accuracy_tolerance = 0.02
cpu_cheap = true
cpu_pin = 'portable-v2'

[train]
warmup_epochs = 1
epochs = 15
batch_size   = 64
lr = 0.005
optimizer = "adamw"
schedule = "cosine"
weight_decay = 0.01

[finetune]
epochs = 5
batch_size = 64
lr = 0.001
weight_decay = 0.01

[data]
dataset = "digits"

[model]
name = "spikformer-1-64"
T = 4
options = { pools = 1 }

[eval]
batch_size = 360

[pruners.l1p]
scope = "global"
sparsity = 0.5

[pruners.dsp]
method = "svd"
keep = 0.5
"""


def test_digits_is_builtin_and_loads():
    assert "digits" in builtin_protocols()
    proto = load_protocol("digits")
    assert proto.model.name == "spikformer-1-64" and proto.model.T == 4
    assert proto.seeds == [0, 1, 2] and proto.cpu_cheap


def test_hash_is_canonical(tmp_path):
    path = tmp_path / "digits.toml"
    path.write_text(DIGITS_REFORMATTED)
    assert load_protocol(str(path)).sha256() == load_protocol("digits").sha256()


def test_any_value_change_changes_the_hash_but_dense_key_only_for_stage_one():
    base = load_protocol("digits")
    finetune = load_protocol("digits", {"finetune.epochs": 6})
    dense = load_protocol("digits", {"train.epochs": 14})
    assert len({base.sha256(), finetune.sha256(), dense.sha256()}) == 3
    assert finetune.dense_key(0, "torch") == base.dense_key(0, "torch")
    assert dense.dense_key(0, "torch") != base.dense_key(0, "torch")
    assert base.dense_key(1, "torch") != base.dense_key(0, "torch")
    assert base.dense_key(0, "spikingjelly") != base.dense_key(0, "torch")


def test_set_values_are_read_as_toml():
    assert parse_value("3") == 3
    assert parse_value("0.5") == 0.5
    assert parse_value("true") is True
    assert parse_value("[0, 1]") == [0, 1]
    assert parse_value("channels") == "channels"
    assert parse_value('"spikformer-1-32"') == "spikformer-1-32"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model.T": 0}, "model.T: Input should be greater than 0"),
        ({"train.epochs": -1}, "train.epochs: Input should be greater than or equal to 0"),
        ({"train.lr": "fast"}, "train.lr: Input should be a valid number"),
        ({"train.epoch": 3}, "unknown protocol key 'train.epoch'; did you mean 'train.epochs'?"),
        ({"name": "x"}, "cannot be overridden"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(UsageError, match=message.replace("?", r"\?").replace(".", r"\.")):
        load_protocol("digits", overrides)


def test_malformed_toml_names_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\nseeds = = [0]\n')
    with pytest.raises(UsageError, match=r"bad\.toml: malformed TOML: .*line 2"):
        load_protocol(str(path))


def test_unknown_and_invalid_keys_name_line_and_key(tmp_path):
    text = (tmp_path / "x.toml")
    lines = DIGITS_REFORMATTED.replace("epochs = 15", "epochz = 15")
    text.write_text(lines)
    line = lines.splitlines().index("epochz = 15") + 1
    with pytest.raises(UsageError) as err:
        load_protocol(str(text))
    assert f"(line {line}): train.epochz: unknown key" in str(err.value)
    lines = DIGITS_REFORMATTED.replace("T = 4", "T = -4")
    text.write_text(lines)
    line = lines.splitlines().index("T = -4") + 1
    with pytest.raises(UsageError, match=rf"\(line {line}\): model\.T: Input should be greater than 0"):
        load_protocol(str(text))


def test_unknown_protocol_suggests_a_close_name():
    with pytest.raises(UsageError, match="unknown protocol 'digit'; did you mean 'digits'"):
        load_protocol("digit")
    with pytest.raises(UsageError, match="does not exist"):
        load_protocol("nowhere.toml")
