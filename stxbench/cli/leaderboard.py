"""``stxbench leaderboard submit | render | check | paired``."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import typer
from tabulate import tabulate

from stxbench.cli import common
from stxbench.cli.root import app
from stxbench.errors import UsageError
from stxbench.leaderboard import paired
from stxbench.leaderboard.check import check_board
from stxbench.leaderboard.render import render
from stxbench.leaderboard.rerun import can_rerun, pick_one, rerun_problems
from stxbench.leaderboard.store import DEFAULT_ROOT, Board, Entry, ProtocolLookup
from stxbench.leaderboard.submit import submit
from stxbench.leaderboard.verify import Verifier
from stxbench.provenance import git_commit

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
    _render(Board(root))


def _rerun_selection(
    entries: list[Entry], lookup: ProtocolLookup, verifier: Verifier, patterns: list[str], one: bool
) -> list[Entry]:
    loaded = [e for e in entries if e.record is not None]
    if patterns:
        loaded = [e for e in loaded if any(fnmatch(e.path.name, p) for p in patterns)]
        if not loaded:
            example = entries[0].path.name if entries else "digits__lif__none__torch__s0.json"
            raise UsageError(f"--rerun-only {' '.join(patterns)}: no entry matches (names look like {example})")
    runnable = []
    for entry in loaded:
        reason = can_rerun(entry, lookup, verifier.host)
        if reason is None:
            runnable.append(entry)
        elif not one:
            common.err_line(f"not re-run: {entry.path.name}: {reason}")
    if one:
        chosen = pick_one(runnable, git_commit())
        if chosen is None:
            common.err_line("not re-run: no entry of a CPU-cheap protocol that this machine can run")
        return [chosen] if chosen else []
    return runnable


@leaderboard_app.command("check")
def check_command(
    root: Path = typer.Option(DEFAULT_ROOT, "--root", help=ROOT_HELP),
    protocol_dir: list[Path] = typer.Option([], "--protocol-dir", metavar="DIR", help=PROTOCOL_DIR_HELP),
    rerun: bool = typer.Option(False, "--rerun", help="Also re-run every entry of a CPU-cheap protocol and compare."),
    rerun_only: list[str] = typer.Option([], "--rerun-only", metavar="PATTERN",
        help="Re-run only entries whose file name matches this glob (implies --rerun); repeatable."),
    rerun_one: bool = typer.Option(False, "--rerun-one",
        help="Re-run exactly one CPU-cheap entry, chosen by the current git commit (what CI does)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for re-runs [default: each entry's own]."),
) -> None:
    """Verify every entry (schema, protocol hash, energy from counts, plugin hashes, names,
    duplicates) and the rendered files. One line per problem; exit code 1 if there is any."""
    board = Board(root)
    if not board.root.is_dir():
        raise UsageError(f"--root {root}: no leaderboard folder there")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    lookup, verifier = _verifier(protocol_dir)
    entries = board.entries()
    selected = []
    if rerun or rerun_only or rerun_one:
        selected = _rerun_selection(entries, lookup, verifier, rerun_only, one=rerun_one and not (rerun or rerun_only))

    def rerun_entry(entry: Entry):
        common.err_line(f"re-running {entry.path.name} ...")
        return rerun_problems(entry, lookup, verifier.host, threads)

    problems = check_board(board, entries, verifier, rerun_entry, selected)
    for line in problems:
        typer.echo(line)
    summary = (f"{len(entries)} entries in {len(board.protocols())} protocol(s), "
               f"{len(selected)} re-run")
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
    records = [e.record for e in board.entries() if e.folder_protocol == protocol and e.record is not None]
    if not records:
        raise UsageError(f"board '{protocol}' holds no entry that loads")
    factor = by if by is not None else paired.infer_factor(records, a, b)
    comparisons = paired.compare(records, factor, a, b)
    if not comparisons:
        raise UsageError(f"no seed of board '{protocol}' has runs of both {' / '.join(a)} and {b} "
                         f"with everything else equal: nothing to pair")
    with_auc = any(c.auc is not None for c in comparisons)
    typer.echo(f"{protocol}: paired by seed, {factor} {', '.join(dict.fromkeys(c.a for c in comparisons))} "
               f"against {comparisons[0].b}")
    headers, rows = paired.table(comparisons, factor, with_auc)
    typer.echo(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    for line in paired.notes(comparisons, with_auc):
        typer.echo(line)
    note = paired.accuracy_only_note(records)
    if note:
        typer.echo(note)
