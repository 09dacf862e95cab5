"""``stxbench run``: one benchmark run of a neuron x pruner x backend under a protocol."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tabulate import tabulate

from stxbench.cli import app, common
from stxbench.checkpoints import RUN_CHECKPOINT
from stxbench.errors import RunFailed, UsageError
from stxbench.launch import check_before_launch, launch
from stxbench.protocol import DEFAULT_PROTOCOL
from stxbench.record import Record
from stxbench.runconfig import RunConfig, resolve
from stxbench.runner import RESULT_FILE, default_cache_dir, execute


class RichReporter:
    """Training progress as rich bars on stderr, one bar per stage."""

    def __init__(self, console: Console):
        self.console = console
        self.progress: Progress | None = None
        self.task = None

    def start(self, stage: str, total_steps: int, completed: int = 0) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task(stage, total=total_steps, completed=completed, loss="-")

    def advance(self, loss: float) -> None:
        self.progress.update(self.task, advance=1, loss=f"{loss:.4f}")

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def default_out_dir(protocol: str, neuron: str, pruner: str, backend: str, seed: int | None) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    name = Path(protocol).stem
    return Path("runs") / f"{name}-{neuron}-{pruner}-{backend}-s{seed if seed is not None else 'd'}-{stamp}"


def summary_table(record: Record, path: Path) -> str:
    m, t = record.metrics, record.timing
    energy = f"{record.energy.mj_per_sample:.6f} mJ ({record.energy.model_id})" if record.energy else "not counted"
    ops = "not counted"
    if record.counts:
        k = record.counts
        ops = f"{k.mac:,.0f} MAC / {k.ac:,.0f} AC / {k.ac_int:,.0f} int AC  ({k.subset})"
    dense_time = f"{t.dense_s:.1f} s" if t.dense_s is not None else "cached"
    rows = [
        ["accuracy", f"{m.accuracy:.4f}  ({m.correct}/{m.test_samples})"],
        ["accuracy dense / pruned", f"{m.accuracy_dense:.4f} / {m.accuracy_pruned:.4f}  (before fine-tuning)"],
        ["params total / effective", f"{m.params_total:,} / {m.params_effective:,}"],
        ["ST-matrix sparsity", f"{m.sparsity:.4f}"],
        ["firing rate", f"{m.firing_rate:.4f}"],
        ["ops / sample", ops],
        ["energy / sample", energy],
        ["time dense / finetune / eval", f"{dense_time} / {t.finetune_s:.1f} s / {t.eval_s:.2f} s"],
    ]
    c, p = record.config, record.protocol
    head = (f"{p.name} ({'official' if p.official else 'unofficial'}) | neuron {c.neuron} | pruner "
            f"{c.pruner} {c.pruner_params or ''} | backend {c.backend} | seed {c.seed}")
    return f"{head}\n{tabulate(rows, tablefmt='simple_outline')}\nrecord: {path}"


@app.command("run")
def run_command(
    neuron: str = typer.Option("lif", "--neuron", "-n", help="Neuron to fine-tune with (stxbench list neurons)."),
    pruner: str = typer.Option("none", "--pruner", help="Pruner (stxbench list pruners)."),
    backend: str = typer.Option("torch", "--backend", "-b", help="SNN library that runs the neurons (stxbench list backends)."),
    protocol: str = typer.Option(DEFAULT_PROTOCOL, "--protocol", help="Protocol name (stxbench list protocols) or a .toml path."),
    seed: int | None = typer.Option(None, "--seed", help="Seed [default: the protocol's first seed]."),
    settings: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
        help="Pruner parameter (sparsity=0.9) or dotted protocol key (train.epochs=3, which makes the run unofficial); repeatable."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch [default: torch's]."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder for result.json [default: a new folder under runs/]."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Where dense checkpoints are cached [default: $STXBENCH_CACHE or ~/.cache/stxbench]."),
    data_root: str | None = typer.Option(None, "--data-root", help="Folder holding a dataset that does not ship with a package."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    no_counts: bool = typer.Option(False, "--no-counts", help="Skip op counting: the record holds no counts and no energy."),
    precision: str = typer.Option("auto", "--precision",
        help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16 (autocast, also on CPU)."),
    workers: int | None = typer.Option(None, "--workers",
        help="DataLoader workers for file-backed datasets [default: 0 on CPU, up to 8 per GPU]."),
    nproc: int | None = typer.Option(None, "--nproc",
        help="Data-parallel processes on this machine, started with torchrun (one per GPU with --device cuda)."),
    resume: bool = typer.Option(False, "--resume",
        help="Continue the interrupted run in --out (rerunning with the same --out does so too; "
        "--resume also insists that there is a checkpoint)."),
    compile: bool | None = typer.Option(None, "--compile/--no-compile",
        help="Run the neuron layers through torch.compile (same results; compiling costs seconds to a minute, cached) [default: the protocol's, or the backend's: spikingjelly compiles on CPU]."),
) -> None:
    """Train (dense, cached), prune, swap the neuron, fine-tune, evaluate; write result.json.
    Every epoch is checkpointed in --out, so a killed or interrupted run resumes where it stopped."""
    host = common.host()
    out_dir = out or default_out_dir(protocol, neuron, pruner, backend, seed)
    check_out_dir(out_dir, resume)
    config = resolve(
        host, protocol=protocol, neuron=neuron, pruner=pruner, backend=backend, seed=seed,
        settings=settings, device=device,
        out_dir=out_dir,
        cache_dir=cache_dir or default_cache_dir(), threads=threads, data_root=data_root,
        counts=not no_counts, plugins=common.STATE.plugins, precision=precision, workers=workers,
        compile=compile,
    )
    if nproc is not None:
        check_before_launch(config, host, nproc)
        code = launch(nproc, config.plugins, child_args(config, protocol, settings, quiet))
        if code:
            raise RunFailed(f"torchrun with {nproc} processes failed (exit {code}); see its output above")
        return
    console = Console(stderr=True)
    reporter = None if quiet else RichReporter(console)
    record = execute(config, host, reporter=reporter, warn=lambda line: common.err_line(f"warning: {line}"))
    if record is not None:  # rank 0 of a torchrun job, or a plain run
        typer.echo(summary_table(record, config.out_dir / RESULT_FILE))


def check_out_dir(out_dir: Path, resume: bool) -> None:
    if (out_dir / RESULT_FILE).exists():
        raise UsageError(f"--out {out_dir} already holds a finished run ({RESULT_FILE}); choose another --out")
    if resume and not (out_dir / RUN_CHECKPOINT).exists():
        raise UsageError(f"--resume: {out_dir} holds no checkpoint ({RUN_CHECKPOINT}) to resume")


def child_args(config: RunConfig, protocol: str, settings: list[str], quiet: bool) -> list[str]:
    """The ``stxbench run`` arguments every torchrun process gets: the resolved run, pinned
    (seed, output folder) so that all processes agree."""
    args = [
        "--protocol", protocol, "--neuron", config.neuron, "--pruner", config.pruner,
        "--backend", config.backend, "--seed", str(config.seed), "--device", config.device,
        "--precision", config.precision, "--out", str(config.out_dir),
        "--cache-dir", str(config.cache_dir), "--compile" if config.compile else "--no-compile",
    ]
    for item in settings:
        args += ["--set", item]
    for flag, value in (("--threads", config.threads), ("--data-root", config.data_root),
                        ("--workers", config.workers)):
        if value is not None:
            args += [flag, str(value)]
    return args + (["--quiet"] if quiet else [])
