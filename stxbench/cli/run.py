"""``stxbench run``: one benchmark run of a neuron x pruner x backend under a protocol."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import typer
from rich.console import Console

from stxbench.cli import common
from stxbench.cli.layout import fit_table, pruner_text, wrap
from stxbench.cli.root import app
from stxbench.cli.progress import reporter_for
from stxbench.cli.options import ProtocolOption, QuietOption, SettingsOption, with_run_options
from stxbench.run.baselines import BASELINES, check_baseline
from stxbench.run.checkpoints import RUN_CHECKPOINT
from stxbench.measure.conventions import DEFAULT_CONVENTION
from stxbench.run.errors import RunFailed, UsageError
from stxbench.neurons.kernel_cache import CACHE_ENV, LEAF
from stxbench.run.torchrun import check_before_launch, launch
from stxbench.run.protocol import DEFAULT_PROTOCOL
from stxbench.record.schema import Record
from stxbench.run.resolve import resolve, unofficial_reasons
from stxbench.run.config import RunConfig
from stxbench.run.stages import RESULT_FILE, execute
from stxbench.run.config import RunOptions, folder_parser


def kernel_cache_folder(config: RunConfig) -> Path:
    """Where this run's compiled kernels are cached (`stxbench.neurons.compile.use_cache_dir`, per CPU
    capability as `stxbench.neurons.kernel_cache` keeps them)."""
    folder = Path(os.environ.get(CACHE_ENV) or config.cache_dir / "inductor")
    if folder.name.startswith(LEAF):
        folder = folder.parent
    pin = config.protocol.cpu_pin
    capability = "avx2" if pin and config.device == "cpu" else os.environ.get("ATEN_CPU_CAPABILITY")
    return folder / f"{LEAF}{capability}" if capability else folder


def say_first_compile(config: RunConfig) -> None:
    """A cold kernel cache costs a minute before the first step (the torch backend's fused
    kernels, spikingjelly's compiled neurons): say so before it is paid, once per cache."""
    if config.device != "cpu" or not (config.compile or config.backend == "torch"):
        return
    folder = kernel_cache_folder(config)
    if folder.is_dir() and any(folder.iterdir()):
        return
    common.err_line(f"note: no compiled kernels in {folder} yet: compiling this run's neuron kernels takes "
                    "about a minute before the first step (later runs load them)")


def default_out_dir(protocol: str, neuron: str, pruner: str, backend: str, seed: int | None) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    name = Path(protocol).stem
    return Path("runs") / f"{name}-{neuron}-{pruner}-{backend}-s{seed if seed is not None else 'd'}-{stamp}"


def summary_table(record: Record, path: Path) -> str:
    """The table a run prints, then the notes on what it leaves out (every line within the
    terminal's width: long lines wrap)."""
    m, t = record.metrics, record.timing
    energy = "not counted"
    if record.energy:
        e = record.energy
        energy = f"{mj_text(e.mj_per_sample)} mJ ({e.model_id}, convention {e.convention or DEFAULT_CONVENTION})"
    ops = "not counted"
    if record.counts:
        k = record.counts
        ops = f"{k.mac:,.0f} MAC / {k.ac:,.0f} AC / {k.ac_int:,.0f} int AC"
    dense_time = f"{t.dense_s:.1f} s" if t.dense_s is not None else "cached"
    rec = record.recovery
    if rec is not None:
        curve = " ".join(f"{point.accuracy:.4f}" for point in rec.curve)
        before = ["validation: dense / by epoch", f"{rec.accuracy_dense:.4f} / {curve}  "
                  f"({rec.validation_samples} samples; epoch 0 = pruned)"]
    else:
        before = ["accuracy dense / pruned", f"{m.accuracy_dense:.4f} / {m.accuracy_pruned:.4f}  (before fine-tuning)"]
    rows = [
        ["accuracy", f"{m.accuracy:.4f}  ({m.correct}/{m.test_samples})"],
        before,
        ["params total / effective", f"{m.params_total:,} / {m.params_effective:,}"],
        ["ST-matrix sparsity", f"{m.sparsity:.4f}"],
        ["firing rate", "none (no neurons)" if m.firing_rate is None else f"{m.firing_rate:.4f}"],
        ["ops / sample (mean)", ops],
        ["energy / sample (mean)", energy],
        ["time dense / finetune / eval", f"{dense_time} / {t.finetune_s:.1f} s / {t.eval_s:.2f} s"],
    ]
    c, p = record.config, record.protocol
    who = (f"baseline {c.baseline} ({c.model}, T={c.T})" if c.baseline else
           f"neuron {c.neuron} | pruner {pruner_text(c.pruner, c.pruner_params)}")
    head = f"{p.name} ({'official' if p.official else 'unofficial'}) | {who} | backend {c.backend} | seed {c.seed}"
    lines = [wrap(head), fit_table(rows, tablefmt="simple_outline", wrappable=(1,)), wrap(f"record: {path}")]
    lines += [wrap(note) for note in summary_notes(record, path)]
    return "\n".join(lines)


def summary_notes(record: Record, path: Path) -> list[str]:
    """What the summary leaves out, named: that op counts and energy are means over the counted
    test samples (hence fractional), and the record's other energy estimates (other counting
    conventions, cost models, DSP factors priced merged), the lowest of them with what it is."""
    notes = []
    if record.counts:
        k = record.counts
        notes.append(f"ops and energy: mean per sample over the {k.samples} test samples {k.subset} (spikes "
                     "differ from sample to sample, so the counts are fractional)")
    e = record.energy
    variants = [v for v in record.energies or []
                if e is None or not (v.cost_model == e.model_id and v.pricing == "as-run"
                                     and v.convention == (e.convention or DEFAULT_CONVENTION))]
    if variants:
        low = min(variants, key=lambda v: v.mj_per_sample)
        lowest = f"the lowest {mj_text(low.mj_per_sample)} mJ ({low.cost_model}, convention {low.convention}, {low.pricing})"
        same = [v for v in variants if e is not None and v.cost_model == e.model_id]
        near = min(same, key=lambda v: v.mj_per_sample) if same else None
        if near is not None and near is not low and near.mj_per_sample < e.mj_per_sample:
            lowest = (f"under {e.model_id} as low as {mj_text(near.mj_per_sample)} mJ (convention {near.convention}, "
                      f"{near.pricing}); {lowest}")
        notes.append(f"energy: {len(variants)} other estimates in {path.name} (other counting conventions, "
                     f"cost models, factorised matrices priced merged); {lowest}; list them: "
                     f"stxbench energy {path} --variants")
    return notes


@app.command("run")
@with_run_options
def run_command(
    neuron: str = typer.Option("lif", "--neuron", "-n", help="Neuron to fine-tune with (stxbench list neurons)."),
    pruner: str = typer.Option("none", "--pruner", help="Pruner (stxbench list pruners)."),
    backend: str = typer.Option("torch", "--backend", "-b", help="SNN library that runs the neurons (stxbench list backends)."),
    protocol: ProtocolOption = DEFAULT_PROTOCOL,
    seed: int | None = typer.Option(None, "--seed", help="Seed [default: the protocol's first seed]."),
    settings: SettingsOption = [],
    out: Path | None = typer.Option(None, "--out", "-o", parser=folder_parser("--out"),
                                    help="Output folder for result.json [default: a new folder under runs/]."),
    quiet: QuietOption = False,
    nproc: int | None = typer.Option(None, "--nproc",
        help="Data-parallel processes on this machine, started with torchrun (one per GPU with --device cuda)."),
    resume: bool = typer.Option(False, "--resume",
        help="Continue the interrupted run in --out (rerunning with the same --out does so too; "
        "--resume also insists that there is a checkpoint)."),
    baseline: str | None = typer.Option(None, "--baseline",
        help=f"Run a board's reference row instead: {', '.join(BASELINES)} (docs/baselines.md)."),
    *,
    options: RunOptions,
) -> None:
    """Train (dense, cached), prune, swap the neuron, fine-tune, evaluate; write result.json.
    Every epoch is checkpointed in --out, so a killed or interrupted run resumes where it stopped."""
    host = common.host()
    if baseline is not None:
        check_baseline(baseline)
        if neuron != "lif" or pruner != "none":
            raise UsageError(f"--baseline {baseline} names its own neuron and is never pruned: drop "
                             f"{'--neuron' if neuron != 'lif' else '--pruner'}")
    out_dir = out or default_out_dir(protocol, f"baseline-{baseline}" if baseline else neuron, pruner, backend, seed)
    check_out_dir(out_dir, resume)
    config = resolve(
        host, protocol=protocol, neuron=neuron, pruner=pruner, backend=backend, seed=seed,
        settings=settings, out_dir=out_dir, options=options, plugins=common.STATE.plugins, baseline=baseline,
    )
    common.restart_pinned(config.protocol, config.device)
    why = unofficial_reasons([config])

    def say_unofficial() -> None:  # once every check has passed, before the first stage
        if why:
            common.err_line(f"note: this run will be unofficial ({'; '.join(why)}): its record cannot go "
                            "to the leaderboard")

    if nproc is not None:
        check_before_launch(config, host, nproc)
        say_unofficial()  # here, by the command the user typed, not by each torchrun process
        code = launch(nproc, config.plugins, child_args(config, protocol, settings, quiet))
        if code:
            raise RunFailed(f"torchrun with {nproc} processes failed (exit {code}); see its output above")
        return
    say_first_compile(config)
    console = Console(stderr=True)
    reporter = None if quiet else reporter_for(console)
    record = execute(config, host, reporter=reporter, warn=lambda line: common.err_line(f"warning: {line}"),
                     before_work=say_unofficial if "RANK" not in os.environ else None)
    if record is not None:  # rank 0 of a torchrun job, or a plain run
        typer.echo(summary_table(record, config.out_dir / RESULT_FILE))


def mj_text(value: float) -> str:
    """Energy per sample, six decimals as usual; significant digits below 1e-4 mJ (a linear
    baseline's few hundred MACs), where six decimals would print 0.000000."""
    return f"{value:.6f}" if value == 0 or value >= 1e-4 else f"{value:.3g}"


def check_out_dir(out_dir: Path, resume: bool) -> None:
    if (out_dir / RESULT_FILE).exists():
        raise UsageError(f"--out {out_dir} already holds a finished run ({RESULT_FILE}); choose another --out")
    if resume and not (out_dir / RUN_CHECKPOINT).exists():
        raise UsageError(f"--resume: {out_dir} holds no checkpoint ({RUN_CHECKPOINT}) to resume")


def child_args(config: RunConfig, protocol: str, settings: list[str], quiet: bool) -> list[str]:
    """The ``stxbench run`` arguments every torchrun process gets: the resolved run, pinned
    (seed, output folder, every run option as resolved) so that all processes agree."""
    who = ["--baseline", config.baseline] if config.baseline else ["--neuron", config.neuron, "--pruner", config.pruner]
    args = [
        "--protocol", protocol, *who,
        "--backend", config.backend, "--seed", str(config.seed), "--out", str(config.out_dir),
        *config.to_args(),
    ]
    for item in settings:
        args += ["--set", item]
    return args + (["--quiet"] if quiet else [])
