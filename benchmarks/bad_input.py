"""Every kind of bad input a user can give, through the CLI, and whether each is refused cleanly.

Clean means: exit code 2, exactly one line on stderr starting with ``error:`` or ``refused``,
no traceback, and nothing written (no run folder, no result, no cache, no leaderboard file).

    python benchmarks/bad_input.py          # prints a table and "N tried, N refused cleanly"

tests/test_bad_input.py runs the same list, so the figure in the README cannot go stale.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

TINY = """
name = "tiny"
seeds = [0]
[data]
dataset = "digits"
[model]
name = "spikformer-1-16"
T = 2
[model.options]
pools = 2
[train]
epochs = 1
batch_size = 128
lr = 1e-2
[finetune]
epochs = 0
batch_size = 128
lr = 1e-3
"""


@dataclass
class Case:
    name: str
    args: list[str]
    #: writes the files the case needs into the scratch folder (they do not count as "written")
    setup: Callable[[Path], None] | None = None
    expect_code: int = 2


def _tiny(root: Path, text: str = TINY, name: str = "tiny.toml") -> None:
    (root / name).write_text(text)


def _record(root: Path, edit: Callable[[dict], None]) -> None:
    """A real record of a tiny run, edited. Produced once per scratch folder."""
    source = root / "_base" / "result.json"
    if not source.exists():
        _tiny(root)
        code, _, err = invoke(["run", "--protocol", str(root / "tiny.toml"), "--out", str(root / "_base"),
                               "--cache-dir", str(root / "_cache"), "-q", "--threads", "1"])
        assert code == 0, err
    data = json.loads(source.read_text())
    edit(data)
    (root / "edited.json").write_text(json.dumps(data))


def _set(path: str, value):
    def edit(data: dict) -> None:
        node = data
        *parents, leaf = path.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return edit


RUN = ["run", "--out", "out", "--cache-dir", "cache", "--protocol", "tiny.toml"]

CASES: list[Case] = [
    Case("unknown neuron", RUN + ["--neuron", "lfi"], _tiny),
    Case("unknown pruner", RUN + ["--pruner", "l2p"], _tiny),
    Case("unknown backend", RUN + ["--backend", "jax"], _tiny),
    Case("unknown protocol", ["run", "--protocol", "digit", "--out", "out"]),
    Case("protocol file that does not exist", ["run", "--protocol", "nowhere.toml", "--out", "out"]),
    Case("unknown dataset in a protocol", RUN, lambda r: _tiny(r, TINY.replace('"digits"', '"digitz"'))),
    Case("unknown model in a protocol", RUN, lambda r: _tiny(r, TINY.replace("spikformer-1-16", "vit-1-16"))),
    Case("malformed protocol TOML", RUN, lambda r: _tiny(r, TINY.replace("T = 2", "T = = 2"))),
    Case("unknown key in a protocol", RUN, lambda r: _tiny(r, TINY.replace("T = 2", "T = 2\nsteps = 4"))),
    Case("T <= 0", RUN + ["--set", "model.T=0"], _tiny),
    Case("epochs < 0", RUN + ["--set", "train.epochs=-1"], _tiny),
    Case("a non-number where a number is needed", RUN + ["--set", "train.lr=fast"], _tiny),
    Case("unknown protocol key", RUN + ["--set", "train.epoch=3"], _tiny),
    Case("a --set key the pruner does not have", RUN + ["--set", "sparsity=0.5"], _tiny),
    Case("a --set without '='", RUN + ["--set", "sparsity"], _tiny),
    Case("L1P sparsity outside [0, 1)", RUN + ["--pruner", "l1p", "--set", "sparsity=1.0"], _tiny),
    Case("DSP keep outside (0, 1]", RUN + ["--pruner", "dsp", "--set", "keep=0"], _tiny),
    Case("DSP unknown method", RUN + ["--pruner", "dsp", "--set", "method=qr"], _tiny),
    Case("L1P unknown scope", RUN + ["--pruner", "l1p", "--set", "scope=row"], _tiny),
    Case("negative seed", RUN + ["--seed", "-1"], _tiny),
    Case("zero threads", RUN + ["--threads", "0"], _tiny),
    Case("unknown device", RUN + ["--device", "tpu"], _tiny),
    Case("unknown option", RUN + ["--nueron", "lif"], _tiny),
    Case("a surrogate the backend lacks", RUN + ["--backend", "norse", "--set", 'model.surrogate="atan"'], _tiny),
    Case("CIFAR-10 folder without its files", ["run", "--protocol", "cifar10-spikformer-4-384",
                                               "--data-root", "data", "--out", "out"],
         lambda r: (r / "data").mkdir(exist_ok=True)),
    Case("Fashion-MNIST folder with a missing file", ["run", "--protocol", "fashion-mnist",
                                                      "--data-root", "data", "--out", "out"],
         lambda r: ((r / "data").mkdir(exist_ok=True), (r / "data" / "train-images-idx3-ubyte").write_bytes(b""))),
    Case("DVS folder that does not exist", ["run", "--protocol", "cifar10dvs-spikformer-2-256",
                                            "--data-root", "nowhere", "--out", "out"]),
    Case("--nproc below 2", RUN + ["--nproc", "0"], _tiny),
    Case("--resume without a checkpoint", RUN + ["--resume"], _tiny),
    Case("sweep: unknown neuron", ["sweep", "--neuron", "lif,lfi", "--out", "out"]),
    Case("sweep: seeds that are not integers", ["sweep", "--seeds", "0,x", "--out", "out"]),
    Case("sweep: --jobs 0", ["sweep", "--executor", "local", "--jobs", "0", "--out", "out"]),
    Case("sweep: --jobs without --executor local", ["sweep", "--jobs", "2", "--out", "out"]),
    Case("sweep: a SLURM option without --executor slurm", ["sweep", "--partition", "gpu", "--out", "out"]),
    Case("sweep: SLURM profile with unknown keys and bad values",
         ["sweep", "--executor", "slurm", "--slurm-profile", "slurm.toml", "--out", "out"],
         lambda r: (r / "slurm.toml").write_text('partion = "gpu"\ntime = "4h"\nmax_running = 0\n')),
    Case("sweep: SLURM time limit that is not one", ["sweep", "--executor", "slurm", "--time", "soon", "--out", "out"]),
    Case("sweep status: folder without a sweep", ["sweep", "status", "nowhere"]),
    Case("-p module that does not exist", ["-p", "no_such_plugin", "list"]),
    Case("list of an unknown kind", ["list", "widgets"]),
    Case("energy: file that does not exist", ["energy", "missing.json"]),
    Case("energy: file that is not JSON", ["energy", "bad.json"], lambda r: (r / "bad.json").write_text("{oops")),
    Case("energy: JSON that fails the schema", ["energy", "edited.json"],
         lambda r: _record(r, _set("metrics.accuracy", 1.5))),
    Case("energy: unknown cost model", ["energy", "edited.json", "--model", "fp8"],
         lambda r: _record(r, lambda d: None)),
    Case("compare: file that is not JSON", ["compare", "bad.json", "bad.json"],
         lambda r: (r / "bad.json").write_text("[1, 2")),
    Case("parity: unknown backend", ["parity", "--backend", "jax"]),
    Case("leaderboard submit: unofficial run", ["leaderboard", "submit", "edited.json", "--root", "lb",
                                                "--protocol-dir", "."],
         lambda r: _record(r, _set("protocol.official", False))),
    Case("leaderboard submit: wrong protocol hash", ["leaderboard", "submit", "edited.json", "--root", "lb",
                                                     "--protocol-dir", "."],
         lambda r: _record(r, _set("protocol.sha256", "0" * 64))),
    Case("leaderboard submit: not JSON", ["leaderboard", "submit", "bad.json", "--root", "lb"],
         lambda r: (r / "bad.json").write_text("nope")),
]


def invoke(args: list[str]) -> tuple[int, str, str]:
    from stxbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@contextmanager
def _cwd(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if not any(part.startswith("_") for part in p.relative_to(root).parts)}


def try_case(case: Case, scratch: Path) -> str | None:
    """None when the case was refused cleanly, else what went wrong."""
    with _cwd(scratch):
        for leftover in _files(scratch):
            if leftover.is_file():
                leftover.unlink()
        if case.setup:
            case.setup(scratch)
        before = _files(scratch)
        code, _, err = invoke(case.args)
        written = sorted(str(p.relative_to(scratch)) for p in _files(scratch) - before)
    lines = err.splitlines()
    if code != case.expect_code:
        return f"exit code {code}: {err.strip()[:200]}"
    if "Traceback" in err:
        return "traceback"
    if written:
        return f"wrote {', '.join(written)}"
    if len(lines) != 1 or not lines[0].startswith(("error:", "refused")):
        return f"{len(lines)} stderr lines: {err.strip()[:200]}"
    return None


def run_all(scratch: Path) -> list[tuple[Case, str | None]]:
    return [(case, try_case(case, scratch)) for case in CASES]


def main() -> int:
    from tabulate import tabulate

    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(Path(tmp))
    rows = [[case.name, "refused cleanly" if problem is None else f"NOT CLEAN: {problem}"]
            for case, problem in results]
    print(tabulate(rows, headers=["bad input", "outcome"]))
    clean = sum(problem is None for _, problem in results)
    print(f"\n{len(results)} tried, {clean} refused cleanly")
    return 0 if clean == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
