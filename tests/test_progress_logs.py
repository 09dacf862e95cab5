"""Progress in logs (issue 23): where stderr is not a terminal, a run prints plain progress lines
at a steady interval (a rich bar redirected to a file printed only when its stage ended)."""

from __future__ import annotations

import io

from rich.console import Console

from stxbench.cli.progress import LogReporter, RichReporter, interval_seconds, reporter_for


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_at_start_every_interval_and_at_the_end():
    out, clock = io.StringIO(), Clock()
    reporter = LogReporter(Console(file=out, width=100), interval=30, clock=clock)
    reporter.start("finetune", total_steps=300, steps_per_epoch=60)
    for step in range(1, 301):
        clock.now += 0.4  # 2.5 steps/s: a line every 75 steps
        reporter.advance(1.0 / step)
    reporter.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "finetune   epoch 1/5  step 0/300  0%  0 s  started"
    assert lines[1] == "finetune   epoch 2/5  step 75/300  25%  30 s  2.5 steps/s  loss 0.0133  about 90 s left"
    assert lines[-1] == "finetune   epoch 5/5  step 300/300  100%  120 s  2.5 steps/s  loss 0.0033  done"
    assert len(lines) == 6  # start, 4 intervals (the last at step 300), done


def test_a_resumed_stage_counts_its_rate_from_where_it_resumed():
    out, clock = io.StringIO(), Clock()
    reporter = LogReporter(Console(file=out, width=100), interval=10, clock=clock)
    reporter.start("dense", total_steps=100, completed=50, steps_per_epoch=10)
    for _ in range(20):
        clock.now += 1.0
        reporter.advance(0.5)
    reporter.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "dense      epoch 6/10  step 50/100  50%  0 s  resumed"
    assert lines[-1] == "dense      epoch 8/10  step 70/100  70%  20 s  1.0 steps/s  loss 0.5000  stopped"


def test_bars_on_a_terminal_lines_elsewhere(monkeypatch):
    assert isinstance(reporter_for(Console(file=io.StringIO())), LogReporter)
    assert isinstance(reporter_for(Console(file=io.StringIO(), force_terminal=True)), RichReporter)
    monkeypatch.setenv("STXBENCH_PROGRESS_SECONDS", "5")
    assert interval_seconds() == 5
    for bad in ("0", "-1", "soon", "nan", "inf"):
        monkeypatch.setenv("STXBENCH_PROGRESS_SECONDS", bad)
        assert interval_seconds() == 30


def test_a_redirected_run_shows_its_stages(tiny_protocol, tmp_path, cli):
    result = cli("run", "--protocol", str(tiny_protocol), "--out", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "cache"))
    assert result.code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("dense      epoch 1/2  step 0/") and line.endswith("started") for line in lines)
    assert any(line.startswith("finetune   epoch 1/1  step ") and line.endswith("done") for line in lines)


def test_a_cold_kernel_cache_is_announced_once(tmp_path, monkeypatch, capsys):
    """The first run on a machine compiles its neuron kernels for about a minute before its
    first step: the CLI says so before, and says nothing once the cache holds kernels."""
    from types import SimpleNamespace

    from stxbench.cli.run import kernel_cache_folder, say_first_compile

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    config = SimpleNamespace(device="cpu", compile=False, backend="torch", cache_dir=tmp_path / "cache",
                             protocol=SimpleNamespace(cpu_pin="portable-v2"))
    folder = kernel_cache_folder(config)
    assert folder == tmp_path / "cache" / "inductor" / "aten-avx2"
    say_first_compile(config)
    err = capsys.readouterr().err
    assert err == (f"note: no compiled kernels in {folder} yet: compiling this run's neuron kernels takes "
                   "about a minute before the first step (later runs load them)\n")
    say_first_compile(SimpleNamespace(**{**vars(config), "backend": "snntorch"}))  # eager: nothing to compile
    assert capsys.readouterr().err == ""
    folder.mkdir(parents=True)
    (folder / "kernel.so").write_bytes(b"")
    say_first_compile(config)
    assert capsys.readouterr().err == ""
