"""Compression grids: the protocol's [[grid.<pruner>]] tables, their hash, their checks, and
``stxbench sweep --grid``."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_PROTOCOL

from stxbench.run.errors import UsageError
from stxbench.run.protocol import Protocol, builtin_protocols, load_protocol
from stxbench.record.schema import load_record

#: today's protocols, hashed before grids, validation splits and short epochs existed
PUBLISHED = {
    "cifar10-sdt-2-512": "0240cfed356f5a83b02eaa50063a7db41acff575d682eaee6bbaf89c368f4fdb",
    "cifar10-spikformer-4-384": "5a1292fafa6daaadf09163186479e2039ff2b0c071c45357069c47046b57c413",
    "cifar100-sdt-2-512": "90a978fd1e9f88eada300f4f328a35a9c954ffbc9e17da7dfa5dd2e6402ceb82",
    "cifar100-spikformer-4-384": "0e7fc17e68e1264303ce01b3c34a7f5940e14b7408342c6ceb2e793e02152afa",
    "cifar10dvs-sdt-2-256": "6026b10835da7730e3e9ba7db21c1e9a7573e41315ae9dd8adadeaf92bac901e",
    "cifar10dvs-spikformer-2-256": "3d92315c618977625ed2e5342db4d8189a02ab39ddeb0e49df3fefa0614634a2",
    "digits": "bb645ec4fb298717c2d3f537850f92c24c7286e9cb727d1f7c3c5cbdffa32004",
    "digits-sdt": "97a333406d5cb030f87780afe23aa481d83af8efb6402dbd716d5d823accd2ab",
    "fashion-mnist": "d4443edfd1a49d17db5c49b1df5b2baa12e25203ab8b6456e929578b7d1673df",
    "mnist1d": "12377b40d967e4b272292fe290cf615619a2bc31c3b6d3ed073acff8d0a79b4d",
}

GRID = """
[[grid.none]]

[[grid.l1p]]
sparsity = [0.5, 0.9]

[[grid.dsp]]
method = "svd"
keep = [0.5, 0.25]

[[grid.dsp]]
method = "channels"
keep = 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_protocols_without_the_new_fields_keep_their_hashes():
    for name, sha in PUBLISHED.items():
        protocol = load_protocol(name)
        if protocol.cpu_pin is not None:  # the pin (leaderboard work) changes the bits: hashed
            protocol = Protocol.model_validate({**protocol.model_dump(mode="json"), "cpu_pin": None})
        assert protocol.sha256() == sha, name
    assert set(PUBLISHED) < set(builtin_protocols())


def test_a_grid_expands_each_table_as_a_cartesian_product_in_the_order_written(tmp_path):
    text = TINY_PROTOCOL.format(dense_epochs=2) + GRID + '\n[[grid.dsp]]\nmethod = ["svd", "channels"]\nkeep = [0.1, 0.05]\n'
    proto = load_protocol(str(write(tmp_path, text)))
    assert proto.grid_cells() == [
        ("none", {}),
        ("l1p", {"sparsity": 0.5}), ("l1p", {"sparsity": 0.9}),
        ("dsp", {"method": "svd", "keep": 0.5}), ("dsp", {"method": "svd", "keep": 0.25}),
        ("dsp", {"method": "channels", "keep": 0.5}),
        ("dsp", {"method": "svd", "keep": 0.1}), ("dsp", {"method": "svd", "keep": 0.05}),
        ("dsp", {"method": "channels", "keep": 0.1}), ("dsp", {"method": "channels", "keep": 0.05}),
    ]
    plain = load_protocol(str(write(tmp_path, TINY_PROTOCOL.format(dense_epochs=2))))
    gridded = load_protocol(str(write(tmp_path, TINY_PROTOCOL.format(dense_epochs=2) + GRID)))
    assert gridded.sha256() != plain.sha256()  # the grid is part of the protocol
    assert gridded.dense_key(0, "torch") == plain.dense_key(0, "torch")  # but not of the dense model


@pytest.mark.parametrize("grid, message", [
    ('[[grid.l1p]]\nsparsity = [0.5, 0.9]\n[[grid.l1p]]\nsparsity = 0.9\n',
     "protocol tiny.toml: grid: grid.l1p: sparsity=0.9 appears twice (tables 0 and 1)"),
    ("[[grid.l1p]]\nsparsity = []\n", "grid.l1p[0].sparsity is an empty list"),
    ("[grid]\nl1p = []\n", "grid.l1p lists no parameter table"),
    ("[[grid.l1p]]\nsparsity = [[0.5]]\n", "grid.l1p.0.sparsity"),
])
def test_a_malformed_grid_is_refused_at_load_in_one_line(tmp_path, grid, message):
    with pytest.raises(UsageError) as err:
        load_protocol(str(write(tmp_path, TINY_PROTOCOL.format(dense_epochs=2) + grid)))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("grid, message", [
    ("[[grid.l1p]]\nsparsity = [0.5, 1.5]\n",
     "protocol tiny: grid.l1p (sparsity=1.5): pruner 'l1p': sparsity=1.5: Input should be less than 1"),
    ('[[grid.dsp]]\nmethod = ["svd", "tucker"]\n',
     "protocol tiny: grid.dsp (method=tucker): pruner 'dsp': method='tucker': Input should be 'svd' or 'channels'"),
    ("[[grid.dsp]]\nrank = 4\n", "protocol tiny: grid.dsp: pruner 'dsp' has no parameter 'rank' (its parameters: "),
    ("[[grid.l2p]]\nsparsity = 0.5\n", "protocol tiny: grid.l2p: unknown pruner 'l2p'; did you mean 'l1p'?"),
])
def test_an_invalid_grid_cell_stops_any_run_of_the_protocol_before_work(cli, tmp_path, cache_dir, grid, message):
    path = write(tmp_path, TINY_PROTOCOL.format(dense_epochs=2) + grid)
    for command in (["run", "--out", str(tmp_path / "out")], ["sweep", "--grid", "--out", str(tmp_path / "sw")]):
        result = cli(*command, "--protocol", str(path), "--cache-dir", str(cache_dir), "-q")
        assert result.code == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines
    assert not (tmp_path / "out").exists() and not (tmp_path / "sw").exists() and not cache_dir.exists()


def test_sweep_grid_runs_every_cell_once_per_seed_with_one_dense_model(cli, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per row of the summary (narrower, its cells wrap)
    path = write(tmp_path, TINY_PROTOCOL.format(dense_epochs=2) + GRID)
    out = tmp_path / "sweep"
    result = cli("sweep", "--grid", "--protocol", str(path), "--pruner", "none,dsp", "--seeds", "0",
                 "--out", str(out), "--cache-dir", str(cache_dir), "-q", "--threads", "1")
    assert result.code == 0, result.stderr
    folders = sorted(p.name for p in (out / "tiny").iterdir() if p.is_dir())
    assert folders == ["lif-dsp-keep0.25-methodsvd-torch-s0", "lif-dsp-keep0.5-methodchannels-torch-s0",
                       "lif-dsp-keep0.5-methodsvd-torch-s0", "lif-none-torch-s0"]
    params = {f: load_record(out / "tiny" / f / "result.json").config.pruner_params for f in folders}
    assert params["lif-dsp-keep0.25-methodsvd-torch-s0"] == {"keep": 0.25, "method": "svd"}
    assert params["lif-none-torch-s0"] == {}
    assert all(load_record(out / "tiny" / f / "result.json").protocol.official for f in folders)
    assert len(list((cache_dir / "dense").glob("*.pt"))) == 1  # one dense model for the seed
    assert "4 runs: 4 ran, 0 skipped" in result.stdout
    assert any(line.split()[:5] == ["lif", "dsp", "keep=0.25", "method=svd", "torch"]
               for line in result.stdout.splitlines()), result.stdout


def test_sweep_grid_refuses_what_the_grid_decides(cli, tmp_path, cache_dir):
    gridded = write(tmp_path, TINY_PROTOCOL.format(dense_epochs=2) + GRID)
    for args, message in [
        (["--set", "sparsity=0.5"], "error: --set sparsity: with --grid the protocol's grid sets the pruner parameters"),
        (["--pruner", "l1p,foo"], "error: --pruner foo: not in the grid of protocol tiny (its pruners: none, l1p, dsp)"),
    ]:
        result = cli("sweep", "--grid", "--protocol", str(gridded), "--out", str(tmp_path / "o"),
                     "--cache-dir", str(cache_dir), *args)
        assert result.code == 2 and result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr
        assert result.stderr.startswith(message), result.stderr
    plain = tmp_path / "plain.toml"
    plain.write_text(TINY_PROTOCOL.format(dense_epochs=2))
    result = cli("sweep", "--grid", "--protocol", str(plain), "--out", str(tmp_path / "o"))
    assert result.code == 2
    assert result.stderr.strip() == "error: --grid: protocol tiny has no compression grid ([[grid.<pruner>]] tables)"
    assert not (tmp_path / "o").exists() and not cache_dir.exists()


def test_the_curves_protocol_grid_is_about_a_hundred_runs():
    proto = load_protocol("fashion-mnist-curves")
    cells = proto.grid_cells()
    assert cells[0] == ("none", {})
    runs = 3 * len(cells) * len(proto.seeds)  # lif, plif, slif
    assert 90 <= runs <= 105, runs
    assert proto.data.validation is not None and proto.cpu_cheap
    assert proto.eval.count_samples < 10_000
    with pytest.raises(UsageError):
        load_protocol("fashion-mnist-curves", {"grid": {"l1p": [{"sparsity": [0.5, 0.5]}]}})
