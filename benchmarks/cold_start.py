"""The README's first command as a new user runs it: a fresh clone, an empty HOME and TMPDIR (no
pip cache, no dense model, no compiled kernels), the install line, then the main job with its
defaults. Writes what it measured to ``docs/measured/first-run.json``, the one source of every
time the README and the docs state for that command (tests/test_docs_times.py holds them to it).

    python benchmarks/cold_start.py                  # measure, print, write the JSON
    python benchmarks/cold_start.py --no-write       # measure and print only

Run it on the machine the claim is about (2 cores here) and say how loaded it was: the JSON keeps
the load average before and after, and the stage times the run's own record gives.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "measured" / "first-run.json"


def readme_first_command() -> str:
    """The README's first indented command (install and run, one line)."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("    python3 -m venv .venv") and "stxbench run" in line:
            return line.strip()
    raise SystemExit("README.md has no first command (an indented `python3 -m venv .venv ... stxbench run` line)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    command = readme_first_command()
    install, _, run = command.rpartition(" && stxbench run")
    run = "stxbench run" + run
    with tempfile.TemporaryDirectory(prefix="stxbench-cold-") as tmp:
        work = Path(tmp)
        clone = work / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "STXBENCH", "TORCHINDUCTOR"))}
        env.update(HOME=str(work / "home"), TMPDIR=str(work / "tmp"), PIP_NO_CACHE_DIR="", PIP_CACHE_DIR=str(work / "pip"))
        (work / "home").mkdir()
        (work / "tmp").mkdir()
        load_before = os.getloadavg()
        started = time.perf_counter()
        subprocess.run(["bash", "-c", install], cwd=clone, env=env, check=True, stdout=subprocess.DEVNULL)
        installed = time.perf_counter()
        done = subprocess.run(["bash", "-c", f". .venv/bin/activate && {run} --out first-run"], cwd=clone, env=env,
                              capture_output=True, text=True)
        finished = time.perf_counter()
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        record = json.loads((clone / "first-run" / "result.json").read_text())
        compile_s = (record["provenance"]["execution"].get("compile") or {}).get("compile_s")
    measured = {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "load_before": round(load_before[0], 1),
        "load_after": round(os.getloadavg()[0], 1),
        "install_s": round(installed - started),
        "run_s": round(finished - installed),
        "total_s": round(finished - started),
        "dense_s": round(record["timing"]["dense_s"]) if record["timing"]["dense_s"] is not None else None,
        "finetune_s": round(record["timing"]["finetune_s"]),
        "compile_s": round(compile_s) if compile_s is not None else None,
        "accuracy": record["metrics"]["accuracy"],
    }
    print(json.dumps(measured, indent=2))
    print(f"\nthe README's first command from empty caches: {measured['total_s'] / 60:.1f} min "
          f"(install {measured['install_s']} s, run {measured['run_s']} s) at load {measured['load_before']}")
    if not args.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(measured, indent=2) + "\n")
        print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
