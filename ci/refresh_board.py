#!/usr/bin/env python3
"""Re-make every entry of a board under today's code and protocol, for `submit --replace`.

    python ci/refresh_board.py digits --out runs/refresh-digits --jobs 2
    stxbench leaderboard submit --replace runs/refresh-digits/*/result.json
    stxbench leaderboard check --rerun-unverified      # writes the receipts to commit

Stale entries are re-run, never edited: each entry's configuration (neuron, pruner and its
parameters, backend, seed, threads, compile setting) runs again from scratch exactly as
``leaderboard check --rerun`` re-runs it (`stxbench.leaderboard.rerun`: a fresh process, the
protocol's CPU pin), one shared dense cache, the dense models first, ``--jobs`` at a time. Runs
whose record exists in ``--out`` are skipped, so an interrupted refresh goes on where it stopped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stxbench.leaderboard.rerun import Rerunner, schedule
from stxbench.leaderboard.store import Board, ProtocolLookup
from stxbench.run.stages import RESULT_FILE


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("protocol")
    p.add_argument("--root", type=Path, default=Path("leaderboards"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--protocol-dir", type=Path, action="append", default=[])
    args = p.parse_args()
    board = Board(args.root)
    entries = [e for e in board.entries() if e.record is not None and e.folder_protocol == args.protocol]
    if not entries:
        print(f"error: no loadable entry of {args.protocol} under {args.root}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rerunner = Rerunner(ProtocolLookup(args.protocol_dir))
    waves = schedule(entries, commit="refresh")
    started = time.monotonic()
    failed = []

    def one(entry) -> None:
        out = args.out / entry.path.stem
        if (out / RESULT_FILE).is_file():
            return
        cmd, env, _ = rerunner.command(entry, args.out, 0)
        cmd[cmd.index("--out") + 1] = str(out)
        cmd[cmd.index("--cache-dir") + 1] = str(args.out / "cache")
        begun = time.monotonic()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        status = "ok" if done.returncode == 0 else f"FAILED: {lines[-1] if lines else done.returncode}"
        if done.returncode != 0:
            failed.append(entry.path.name)
        print(f"[{(time.monotonic() - started) / 60:5.1f} min] {entry.path.stem}: {status} "
              f"({time.monotonic() - begun:.0f} s)", flush=True)

    for wave in waves:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(one, wave))
    print(f"{len(entries) - len(failed)} of {len(entries)} remade in {(time.monotonic() - started) / 60:.1f} min"
          f"{'; failed: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
