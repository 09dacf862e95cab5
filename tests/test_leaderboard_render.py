"""Rendered leaderboard views (tables, index, plot) and `stxbench compare`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stxbench.leaderboard.energy_views import BREAKDOWN_PLOT
from stxbench.leaderboard.plots import PARAMS_PLOT, compression_data, plot_png, png_plot_data
from stxbench.leaderboard.render import PLOT, group_rows, render
from stxbench.leaderboard.store import Board, entry_name
from stxbench.record.schema import Record, load_record, write_record


def table_rows(markdown: str, index: int = 0) -> list[list[str]]:
    """The body cells of the ``index``-th markdown table."""
    tables, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in tables[index][2:]]


def file_entries(root: Path, records: list[Record]) -> Board:
    board = Board(root)
    for record in records:
        write_record(record, board.entries_dir(record.protocol.name) / entry_name(record))
    return board


@pytest.fixture
def tiny_records(tiny_runs) -> dict[str, Record]:
    return {name: load_record(path) for name, path in tiny_runs.records.items() if name != "unofficial"}


def variant(record: Record, neuron: str, accuracy: float, energy: float) -> Record:
    """A row built in code with the accuracy and energy a test needs."""
    return record.model_copy(update={
        "config": record.config.model_copy(update={"neuron": neuron}),
        "metrics": record.metrics.model_copy(update={"accuracy": accuracy}),
        "energy": record.energy.model_copy(update={"mj_per_sample": energy}),
    })


def test_rows_sort_by_accuracy_then_energy_and_mark_the_pareto_front(tiny_records):
    base = tiny_records["lif-s0"]
    records = [variant(base, "c", 0.7, 1.5), variant(base, "d", 0.9, 3.0), variant(base, "b", 0.8, 1.0),
               variant(base, "a", 0.9, 2.0), variant(base, "e", 0.8, 1.0)]
    rows = group_rows([(entry_name(r), r) for r in records])
    assert [(row.neuron, row.pareto) for row in rows] == [
        ("a", True), ("d", False), ("b", True), ("e", True), ("c", False)]


def test_the_table_shows_mean_and_std_over_seeds(tmp_path, tiny_records, cli):
    board = file_entries(tmp_path / "lb", list(tiny_records.values()))
    result = cli("leaderboard", "render", "--root", str(board.root))
    # index, README, accuracy-vs-energy, accuracy-vs-parameters and energy breakdown plots
    assert result.code == 0 and result.stdout == f"rendered {board.root}: 5 file(s) changed\n"
    s0, s1 = tiny_records["lif-s0"], tiny_records["lif-s1"]
    assert s1.metrics.correct == s0.metrics.correct + 18  # 5 points apart: std = 5 / sqrt(2)
    mean = 100 * (2 * s0.metrics.correct + 18) / 720
    energy = (s0.energy.mj_per_sample + s1.energy.mj_per_sample) / 2
    firing = (s0.metrics.firing_rate + s1.metrics.firing_rate) / 2
    text = (board.root / "tiny" / "README.md").read_text()
    rows = {cells[1].split(" / ")[0]: cells for cells in table_rows(text)}
    pareto = {row.neuron: "*" if row.pareto else "" for row in group_rows([(entry_name(r), r) for r in tiny_records.values()])}
    # one label column; params total (the same in every row) is said once above the table
    assert rows["lif"][1:7] == ["lif / none / torch", f"{mean:.2f}\u00a0±\u00a03.54", f"{energy:.4g}", "28,966",
                                f"{firing:.4f}", pareto["lif"]]
    assert "; params total 28,966 in every row. 3 entries in 2 rows." in text
    assert rows["lif"][7] == ("[s0](entries/tiny__lif__none__torch__s0.json) "
                              "[s1](entries/tiny__lif__none__torch__s1.json)")
    plif = tiny_records["plif-s0"]
    # PLIF adds one learnable decay per neuron layer (12) to the dense LIF model's count
    assert [rows["plif"][2], rows["plif"][4]] == [f"{100 * plif.metrics.accuracy:.2f}", "28,978"]
    assert rows["plif"][7] == "[s0](entries/tiny__plif__none__torch__s0.json)"
    assert sorted(rows) == ["lif", "plif"] and sorted(r[0] for r in rows.values()) == ["1", "2"]
    assert len(table_rows(text)[0]) == 8  # compact: fits a 1,280-pixel window (test_site_browser.py)
    assert text.startswith("# Leaderboard: tiny\n")
    assert "![accuracy vs energy](accuracy_energy.png)" in text
    index = table_rows((board.root / "README.md").read_text())
    best = rows["lif"] if rows["lif"][0] == "1" else rows["plif"]
    assert index == [["[tiny](tiny/README.md)", "digits", "spikformer-1-32", "2", "3", "2",
                      f"{best[2]} ({best[1]})", "-", "-"]]  # no baselines on this board


def test_render_is_stable(tmp_path, tiny_records, cli):
    board = file_entries(tmp_path / "lb", list(tiny_records.values()))
    changed, _ = render(board)
    assert len(changed) == 5  # index, README and three plots
    files = sorted(p for p in board.root.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    assert render(board)[0] == []  # nothing to do
    (board.root / "tiny" / PLOT).unlink()
    (board.root / "README.md").unlink()
    assert len(render(board)[0]) == 2
    assert {p: p.read_bytes() for p in files} == before  # byte for byte, the PNG included


def test_the_plot_carries_its_data(tiny_records, tmp_path):
    rows = group_rows([(entry_name(r), r) for r in tiny_records.values()])
    data = compression_data("tiny", rows, "energy")
    spec = json.loads(data)
    # no pruned rows: no curves, the dense rows are points of their own
    assert spec["panels"] == [] and sorted(p["label"] for p in spec["single"]) == sorted(r.label for r in rows)
    lif = next(p for p in spec["single"] if p["label"].startswith("lif "))
    assert lif["x"] == next(r.energy for r in rows if r.neuron == "lif")
    png = plot_png(data)
    assert png.startswith(b"\x89PNG") and png == plot_png(data)
    (tmp_path / "p.png").write_bytes(png)
    assert png_plot_data(tmp_path / "p.png") == data
    assert b"Software" not in png and b"Creation" not in png


def test_an_empty_leaderboard_renders_an_index(tmp_path, cli):
    root = tmp_path / "lb"
    assert cli("leaderboard", "render", "--root", str(root)).code == 0
    assert (root / "README.md").read_text() == (
        "# stxbench leaderboards\n\nGenerated by `stxbench leaderboard render` from the entries; "
        "checked by `stxbench leaderboard check` in CI. Do not edit by hand.\n\nNo entries yet. The "
        "Contributing section of the top-level README says how to produce and submit them.\n")
    assert [p.name for p in root.iterdir()] == ["README.md"]


def test_render_removes_the_views_of_a_protocol_without_entries(tmp_path, tiny_records):
    board = file_entries(tmp_path / "lb", [tiny_records["plif-s0"]])
    render(board)
    (board.entries_dir("tiny") / entry_name(tiny_records["plif-s0"])).unlink()
    changed, _ = render(board)
    assert sorted(p.name for p in changed) == sorted(["README.md", "README.md", PLOT, PARAMS_PLOT, BREAKDOWN_PLOT])
    assert not (board.root / "tiny" / "README.md").exists()


# -- compare --------------------------------------------------------------------------------


def test_compare_marks_the_differences(tiny_runs, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per field (at 100 columns long names wrap)
    a, b = tiny_runs.records["lif-s0"], tiny_runs.records["lif-s1"]
    result = cli("compare", str(a), str(b))
    assert result.code == 0
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"A: {a}", f"B: {b}"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[4:-1]}
    assert rows["config.seed"] == ["0", "1", "*", "+1"]
    assert rows["config.neuron"] == ["lif", "lif"]
    accuracy = rows["metrics.accuracy"]
    assert accuracy[2:] == ["*", "+0.05"]
    assert lines[-1].endswith(f"of {len(rows)} fields differ")
    only = cli("compare", str(a), str(b), "--only-diff").stdout.splitlines()
    assert any(line.startswith("config.seed ") for line in only)
    assert not any(line.startswith("config.neuron ") for line in only)
    assert len(only) - 5 == int(lines[-1].split()[0])  # every differing field, nothing else


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("[1, 2", "not JSON: Expecting ',' delimiter at line 1"),
    ('{"schema_version": 4}', "not a valid result record: schema_version: Input should be 1, 2 or 3 (+7 more)"),
])
def test_compare_refuses_bad_files_with_one_line(tmp_path, tiny_runs, cli, content, message):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    result = cli("compare", str(tiny_runs.records["lif-s0"]), str(bad))
    assert result.code == 2
    assert result.stderr == f"error: {bad}: {message}\n" and result.stdout == ""


def test_energy_views_per_convention_and_per_layer(tmp_path, tiny_records):
    from stxbench.leaderboard import energy_views

    board = file_entries(tmp_path / "lb", list(tiny_records.values()))
    render(board)
    text = (board.root / "tiny" / "README.md").read_text()
    section = text[text.index("## Energy by counting convention"):]
    rows = table_rows(section)
    lif = next(cells for cells in rows if cells[1] == "lif / none / torch")
    assert len(lif) == 7
    s0, s1 = tiny_records["lif-s0"], tiny_records["lif-s1"]  # s1: s0's counts at another seed

    def stored(record, convention, model):
        return next(e for e in record.energies if (e.convention, e.cost_model) == (convention, model))

    assert lif[2:5] == [f"{stored(s0, c, 'horowitz45-fp32-v1').mj_per_sample:.4g}"
                        for c in ("stxbench", "spikingjelly", "neurobench")]
    assert lif[5] == f"{stored(s0, 'stxbench', 'simple-fp32-v1').memory_mj:.4g}"
    assert s1.energies == s0.energies
    data = json.loads(png_plot_data(board.root / "tiny" / BREAKDOWN_PLOT))
    bars = {bar["label"]: bar["groups"] for bar in data["bars"]}
    assert set(bars) == {"lif / none / torch", "plif / none / torch"}
    groups = bars["lif / none / torch"]
    assert {"stem.convs", "blocks.attn.qk", "blocks.mlp.fc1", "head"} <= set(groups)
    assert sum(groups.values()) == pytest.approx(s0.energy.mj_per_sample, rel=1e-9)
    assert energy_views.layer_group("blocks.3.attn.q.linear.first") == "blocks.attn.q"
    # entries recorded before per-convention energy: the board renders as it did
    old = [r.model_copy(update={"energies": None}) for r in tiny_records.values()]
    before = file_entries(tmp_path / "old", old)
    render(before)
    assert "## Energy by counting convention" not in (before.root / "tiny" / "README.md").read_text()
    assert not (before.root / "tiny" / BREAKDOWN_PLOT).exists()
