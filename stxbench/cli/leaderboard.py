"""``stxbench leaderboard submit | render | check | paired``."""

from __future__ import annotations

import time
from fnmatch import fnmatch
from pathlib import Path

import typer

from stxbench.cli import common
from stxbench.cli.layout import fit_table, widest, width, wrap
from stxbench.cli.root import app
from stxbench.run.errors import UsageError
from stxbench.leaderboard import paired
from stxbench.leaderboard import receipts
from stxbench.leaderboard.check import check_board, unverified, verification_lines
from stxbench.leaderboard.render import render
from stxbench.leaderboard.changed import changed_entries
from stxbench.leaderboard.rerun import Rerunner, can_rerun, pick_one
from stxbench.leaderboard.store import DEFAULT_ROOT, Board, Entry, ProtocolLookup
from stxbench.leaderboard.submit import submit
from stxbench.leaderboard.verify import Verifier
from stxbench.run.paths import check_writable_dir
from stxbench.record.provenance import cpu_kind, git_commit, now_utc
from stxbench.run.resolve import resolve_device
from stxbench.run.config import usable_cpus

leaderboard_app = typer.Typer(
    help="Submit result records to the leaderboard, render its tables and plots, check it, compare methods.",
    no_args_is_help=True,
)
app.add_typer(leaderboard_app, name="leaderboard")

ROOT_HELP = "Leaderboard folder (one subfolder per protocol)."
PROTOCOL_DIR_HELP = ("Also look protocols up as DIR/<name>.toml (built-in protocols cannot be "
                     "shadowed); repeatable.")


def _verifier(protocol_dirs: list[Path]) -> tuple[ProtocolLookup, Verifier]:
    lookup = ProtocolLookup(protocol_dirs)
    host = common.host()
    return lookup, Verifier(lookup, host)


def _render(board: Board) -> None:
    changed, plan = render(board)
    for entry in plan.skipped:
        common.err_line(f"warning: not rendered: {board.relative(entry.path)}: {entry.error}")
    typer.echo(f"rendered {board.root}: {len(changed)} file(s) changed" if changed else
               f"rendered {board.root}: already up to date")


@leaderboard_app.command("submit")
def submit_command(
    records: list[Path] = typer.Argument(..., metavar="RESULT.json...", help="Result records (runs/*/result.json)."),
    root: Path = typer.Option(DEFAULT_ROOT, "--root", help=ROOT_HELP),
    protocol_dir: list[Path] = typer.Option([], "--protocol-dir", metavar="DIR", help=PROTOCOL_DIR_HELP),
    replace: bool = typer.Option(False, "--replace", help="Replace an existing entry of the same run (a re-run of a stale entry)."),
    no_render: bool = typer.Option(False, "--no-render", help="Do not re-render the tables and plots afterwards."),
) -> None:
    """Copy official records that pass every check into <root>/<protocol>/entries/, then render.
    Each refused record gets one line; the exit code is 2 if any was refused."""
    check_writable_dir("--root", root)
    board = Board(root)
    _, verifier = _verifier(protocol_dir)
    outcome = submit(board, verifier, records, replace=replace)
    for source, dest in outcome.submitted:
        typer.echo(f"submitted {source} -> {board.relative(dest)}")
    for source, held in outcome.already:
        typer.echo(f"already submitted {source} (as {board.relative(held)})")
    for source, reason in outcome.refused:
        common.err_line(f"refused {source}: {reason}")
    if outcome.submitted and not no_render:
        _render(board)
    if outcome.refused:
        raise typer.Exit(2)


@leaderboard_app.command("render")
def render_command(root: Path = typer.Option(DEFAULT_ROOT, "--root", help=ROOT_HELP)) -> None:
    """Write <root>/README.md (index), and per protocol README.md (table) and
    accuracy_energy.png (plot, Pareto front marked). Files already current are left alone."""
    check_writable_dir("--root", root)
    _render(Board(root))


def _rerun_selection(
    entries: list[Entry], lookup: ProtocolLookup, verifier: Verifier, root: Path, patterns: list[str],
    every: bool, changed_base: str | None, one: bool, device: str, unverified_only: bool = False,
) -> list[Entry]:
    """The entries to re-run: every one (--rerun), those without a valid receipt
    (--rerun-unverified), those matching --rerun-only, those changed since --rerun-changed BASE;
    and with --rerun-one one more, chosen by the commit among the rest (on its own: one of all).
    Entries this machine cannot re-run get a line each."""
    loaded = [e for e in entries if e.record is not None]
    chosen: list[Entry] = []
    if every:
        chosen = list(loaded)
    if unverified_only:
        missing = unverified(loaded, verifier.code)
        common.err_line(f"{len(missing)} of {len(loaded)} entries have no valid receipt")
        chosen += [e for e in loaded if e.path in missing and e not in chosen]
    if patterns:
        matching = [e for e in loaded if any(fnmatch(e.path.name, p) for p in patterns)]
        if not matching:
            example = entries[0].path.name if entries else "digits__lif__none__torch__s0.json"
            raise UsageError(f"--rerun-only {' '.join(patterns)}: no entry matches (names look like {example})")
        chosen += [e for e in matching if e not in chosen]
    if changed_base is not None:
        changed = changed_entries(loaded, root, changed_base)
        common.err_line(f"{len(changed)} entr{'y' if len(changed) == 1 else 'ies'} added or modified since {changed_base}")
        chosen += [e for e in changed if e not in chosen]
    runnable = []
    for entry in chosen:
        reason = can_rerun(entry, lookup, verifier.host, device)
        if reason is None:
            runnable.append(entry)
        else:
            common.err_line(f"not re-run: {entry.path.name}: {reason}")
    if one:
        rest = [e for e in loaded if e not in chosen and can_rerun(e, lookup, verifier.host, device) is None]
        audit = pick_one(rest, git_commit())
        if audit is not None:
            common.err_line(f"audit: also re-running {audit.path.name} (chosen by the commit)")
            runnable.append(audit)
        elif not chosen:
            common.err_line("not re-run: no entry of a CPU-cheap protocol that this machine can run")
    return runnable


@leaderboard_app.command("check")
def check_command(
    root: Path = typer.Option(DEFAULT_ROOT, "--root", help=ROOT_HELP),
    protocol_dir: list[Path] = typer.Option([], "--protocol-dir", metavar="DIR", help=PROTOCOL_DIR_HELP),
    rerun: bool = typer.Option(False, "--rerun", help="Also re-run every entry of a CPU-cheap protocol and compare."),
    rerun_only: list[str] = typer.Option([], "--rerun-only", metavar="PATTERN",
        help="Re-run entries whose file name matches this glob; repeatable."),
    rerun_unverified: bool = typer.Option(False, "--rerun-unverified",
        help="Re-run every entry without a valid verification receipt (receipts/ beside entries/)."),
    require_verified: bool = typer.Option(False, "--require-verified",
        help="Fail unless every entry has a valid receipt or was reproduced by this check (CI)."),
    write_receipts: bool = typer.Option(True, "--write-receipts/--no-write-receipts",
        help="Write a receipt for each entry a CPU re-run reproduced exactly."),
    rerun_changed: str | None = typer.Option(None, "--rerun-changed", metavar="BASE",
        help="Re-run every entry added or modified since the git revision BASE (committed or not)."),
    rerun_one: bool = typer.Option(False, "--rerun-one",
        help="Re-run one more entry, chosen by the current git commit among those not re-run otherwise (CI's audit)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for re-runs [default: each entry's own]."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Re-runs at a time (each in its own process)."),
    rerun_device: str = typer.Option("cpu", "--rerun-device",
        help="cpu (exact comparison) or cuda / cuda:N (GPU protocols; within the protocol's tolerances)."),
    rerun_budget: float | None = typer.Option(None, "--rerun-budget", metavar="MINUTES",
        help="Start no re-run after this many minutes; the entries left are listed (one per row first, "
        "then an order drawn from the commit) [default: no limit]."),
) -> None:
    """Verify every entry (schema, strict JSON, protocol hash, per-layer names, metrics that imply
    each other, energy from counts, plugin hashes, names, duplicates) and the rendered files,
    and compare re-runs with everything their entries claim. One line per problem; exit code 1
    if there is any."""
    board = Board(root)
    if not board.root.is_dir():
        raise UsageError(f"--root {root}: no leaderboard folder there")
    cpus = usable_cpus()
    if threads is not None and not 1 <= threads <= cpus:
        raise UsageError(f"--threads must be in 1..{cpus} (the CPUs this process may use), got {threads}")
    if not 1 <= jobs <= cpus:
        raise UsageError(f"--jobs must be in 1..{cpus} (one re-run per CPU this process may use at most), "
                         f"got {jobs}")
    if rerun_budget is not None and not 0 <= rerun_budget <= 7 * 24 * 60:
        raise UsageError(f"--rerun-budget must be between 0 and {7 * 24 * 60} minutes, got {rerun_budget}")
    if rerun_device != "cpu":
        if rerun_device == "auto":
            raise UsageError("--rerun-device auto: say cpu, cuda or cuda:N (it decides how re-runs are compared)")
        try:
            resolve_device(rerun_device)  # cuda or cuda:N, on a machine that has CUDA
        except UsageError as exc:
            raise UsageError(str(exc).replace("--device", "--rerun-device", 1)) from None
    lookup, verifier = _verifier(protocol_dir)
    entries = board.entries()
    selected = []
    if rerun or rerun_only or rerun_one or rerun_unverified or rerun_changed is not None:
        selected = _rerun_selection(entries, lookup, verifier, board.root, rerun_only, rerun, rerun_changed,
                                    rerun_one, rerun_device, rerun_unverified)
    skipped: list[Entry] = []

    def skip(entry: Entry) -> None:
        skipped.append(entry)
        common.err_line(f"not re-run: {entry.path.name}: over the re-run budget of {rerun_budget:g} min")

    started = time.monotonic()
    rerunner = Rerunner(lookup, common.STATE.plugins, threads, rerun_device, jobs,
                        budget_s=None if rerun_budget is None else 60 * rerun_budget, commit=git_commit(),
                        on_start=lambda entry: common.err_line(f"re-running {entry.path.name} ..."), on_skip=skip)
    handed: list[Entry] = []

    reproduced: set[Path] = set()

    def on_result(entry: Entry, problems: list) -> None:
        if not problems:
            reproduced.add(entry.path)
            if write_receipts and rerun_device == "cpu":
                receipts.write(entry, cpu_kind(), now_utc(), git_commit(), verifier.code)

    rerunner.on_result = on_result

    def rerun_all(chosen: list[Entry]):
        handed.extend(chosen)
        return rerunner.run(chosen)

    problems = check_board(board, entries, verifier, rerun_all, selected)
    if require_verified:
        problems += verification_lines(board, entries, verifier.code, reproduced)
    for line in problems:
        typer.echo(line)
    for entry in selected:
        if entry not in handed:
            common.err_line(f"not re-run: {entry.path.name}: it fails the checks above")
    ran = len(handed) - len(skipped)
    summary = f"{len(entries)} entries in {len(board.protocols())} protocol(s), {ran} re-run"
    if handed:
        left = f", {len(skipped)} left out by the budget" if skipped else ""
        common.err_line(f"re-ran {ran} entr{'y' if ran == 1 else 'ies'} in "
                        f"{(time.monotonic() - started) / 60:.1f} min{left}")
    if problems:
        common.err_line(f"error: leaderboard check found {len(problems)} problem(s) ({summary})")
        raise typer.Exit(1)
    typer.echo(f"ok: {summary}; rendered files up to date")


@leaderboard_app.command("paired")
def paired_command(
    protocol: str = typer.Argument(..., metavar="PROTOCOL", help="The board: a protocol folder under --root."),
    a: list[str] = typer.Option(..., "--a", metavar="SELECTOR",
        help="What to test (repeatable): a neuron, a backend, or a pruner as NAME or NAME:key=value,..."),
    b: str = typer.Option(..., "--b", metavar="SELECTOR", help="What to test it against (one configuration)."),
    by: str | None = typer.Option(None, "--by", metavar="FACTOR",
        help="neuron, pruner or backend [default: the one that --a and --b name]."),
    root: Path = typer.Option(DEFAULT_ROOT, "--root", help=ROOT_HELP),
) -> None:
    """Paired verdicts on one board: per pruner and level (or per the other factors), a - b by
    seed in test accuracy and in area under the recovery curve, with 95 % t intervals and
    Holm-corrected verdicts over every comparison shown."""
    board = Board(root)
    if protocol not in board.protocols():
        raise UsageError(f"no board '{protocol}' under {root}; boards: {', '.join(board.protocols()) or 'none'}")
    records = [e.record for e in board.entries() if e.folder_protocol == protocol and e.record is not None
               and e.record.config.baseline is None]  # baselines are reference rows, never compared
    if not records:
        raise UsageError(f"board '{protocol}' holds no entry that loads")
    factor = by if by is not None else paired.infer_factor(records, a, b)
    comparisons = paired.compare(records, factor, a, b)
    if not comparisons:
        raise UsageError(f"no seed of board '{protocol}' has runs of both {' / '.join(a)} and {b} "
                         f"with everything else equal: nothing to pair")
    with_auc = any(c.auc is not None for c in comparisons)
    typer.echo(wrap(f"{protocol}: paired by seed, {factor} {', '.join(dict.fromkeys(c.a for c in comparisons))} "
                    f"against {comparisons[0].b}"))
    headers, rows = paired.table(comparisons, factor, with_auc)
    typer.echo(paired_tables(headers, rows))
    for line in paired.notes(comparisons, with_auc):
        typer.echo(wrap(line))
    note = paired.accuracy_only_note(records)
    if note:
        typer.echo(wrap(note))


def paired_tables(headers: list[str], rows: list[list[str]]) -> str:
    """The paired table within the terminal's width: with both accuracy and AURC verdicts it is
    12 columns, so where it does not fit it is shown as two tables, one per measure, each
    with the columns that say what is compared."""
    table = fit_table(rows, headers=headers, tablefmt="simple", limit=10**6)
    if widest(table) <= width():
        return table
    cut = [i for i, h in enumerate(headers) if h.startswith("Δ ")]
    if len(cut) < 2:
        return fit_table(rows, headers=headers, tablefmt="simple")
    keys = list(range(cut[0]))
    parts = [keys + list(range(cut[0], cut[1])), keys + list(range(cut[1], len(headers)))]
    return "\n\n".join(
        fit_table([[row[i] for i in part] for row in rows], headers=[headers[i] for i in part], tablefmt="simple")
        for part in parts)
