"""Do CPU records depend on which instruction set the kernels use, and can pinning it fix that?

    python benchmarks/cpu_determinism.py                 # the tiny protocol, every variant
    python benchmarks/cpu_determinism.py --protocol digits --variants native avx2-machine ...

Each variant runs ``stxbench run`` once, in a fresh process (the settings are environment
variables that the libraries read when they initialise) with a fresh dense cache and one
thread, and prints a fingerprint of what the record claims: the dense checkpoint's sha256,
correct test images, firing rate, ACs, and one sha256 over every metric, count and energy
figure. Another CPU kind is emulated by capping the instruction set each library may use:
ATen's vectorised kernels (``ATEN_CPU_CAPABILITY``, also followed by inductor), oneDNN's
convolutions (``ONEDNN_MAX_CPU_ISA``) and MKL's GEMM and LAPACK (``MKL_ENABLE_INSTRUCTIONS``).
A *pin* is what stxbench would set on every machine: the same caps, plus MKL's conditional
numerical reproducibility mode (``MKL_CBWR``), applied on top of a machine's caps (the lower
cap wins). A pin works if every emulated machine gives the same fingerprint under it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

TINY = """
name = "tiny"
cpu_cheap = true
seeds = [0, 1]
[data]
dataset = "digits"
[model]
name = "spikformer-1-32"
T = 2
[model.options]
pools = 2
[train]
epochs = 2
batch_size = 32
lr = 5e-3
weight_decay = 0.01
[finetune]
epochs = 1
batch_size = 32
lr = 1e-3
[eval]
batch_size = 360
"""

ISA_ORDER = {"default": 0, "avx2": 2, "avx512": 3}
ONEDNN_ORDER = {"SSE41": 0, "AVX": 1, "AVX2": 2, "AVX512_CORE": 3, "ALL": 9}

#: emulated machines: what each library may use there
MACHINES: dict[str, dict[str, str]] = {
    "native": {},  # this CPU (AMD EPYC, AVX-512 with VNNI and BF16)
    "avx512-core": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx2-machine": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                     "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "sse4-machine": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                     "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}

#: one library capped at a time, on this machine: which of them change the bits
SINGLE: dict[str, dict[str, str]] = {
    "aten=default": {"ATEN_CPU_CAPABILITY": "default"},
    "aten=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten=avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
    "onednn=SSE41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "onednn=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "onednn=AVX512_CORE": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "mkl-isa=SSE4_2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "mkl-isa=AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "mkl-cbwr=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "mkl-cbwr=AVX2": {"MKL_CBWR": "AVX2"},
    "mkl-cbwr=AVX512": {"MKL_CBWR": "AVX512"},
    "mkldnn-off": {"STXBENCH_PROBE_MKLDNN": "0"},
    "threads=2": {"STXBENCH_PROBE_THREADS": "2"},
}

#: what stxbench could set everywhere
PINS: dict[str, dict[str, str]] = {
    "pin-avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"},
    "pin-compat": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                   "MKL_CBWR": "COMPATIBLE,STRICT"},
    # ATen at AVX2, MKL's cross-vendor branch, convolutions through MKL instead of oneDNN
    "pin-portable": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT", "STXBENCH_PROBE_MKLDNN": "0"},
    # portable-v2, the current pin: portable plus IEEE square roots in place of MKL's (stxbench.run.cpu_pin)
    "pin-portable-v2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT", "STXBENCH_PROBE_MKLDNN": "0",
                        "STXBENCH_PROBE_IEEE_SQRT": "1"},
    # the same with oneDNN capped at AVX2 instead of off
    "pin-portable-onednn": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT",
                            "ONEDNN_MAX_CPU_ISA": "AVX2"},
}

#: the run itself, in the child process: flags that only exist inside torch are set here
CHILD = """
import os, sys, torch
torch.backends.mkldnn.enabled = os.environ.get("STXBENCH_PROBE_MKLDNN", "1") == "1"
if os.environ.get("STXBENCH_PROBE_IEEE_SQRT") == "1":
    from stxbench.run.cpu_pin import install_ieee_sqrt
    install_ieee_sqrt()
from stxbench.cli import main
main(sys.argv[1:])
"""


#: --speed: median ms of a digits training step (forward, loss, backward, AdamW) in the child
SPEED_CHILD = """
import json, os, statistics, sys, time, torch
torch.backends.mkldnn.enabled = os.environ.get("STXBENCH_PROBE_MKLDNN", "1") == "1"
if os.environ.get("STXBENCH_PROBE_IEEE_SQRT") == "1":
    from stxbench.run.cpu_pin import install_ieee_sqrt
    install_ieee_sqrt()
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from harness import protocol_run
from train_step import make_step
from stxbench.run.context import build_model
from stxbench.run.training import batches, make_optimizer
config, run = protocol_run("torch", sys.argv[2])
x, y = next(batches(run.splits.train, config.protocol.train.batch_size, shuffle=False, drop_last=True))
if run.splits.prepare:
    x = run.splits.prepare(x)
model = build_model(run).train()
step = make_step(model, make_optimizer(model, config.protocol.train), x, y)
for _ in range(2):
    step()
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
print(json.dumps({"ms": 1e3 * statistics.median(times), "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def on_machine(machine: dict[str, str], pin: dict[str, str]) -> dict[str, str]:
    """A pin applied on an emulated machine: the lower instruction-set cap of the two wins."""
    env = dict(machine)
    for key, value in pin.items():
        if key == "ATEN_CPU_CAPABILITY" and key in env:
            env[key] = min(env[key], value, key=ISA_ORDER.__getitem__)
        elif key == "ONEDNN_MAX_CPU_ISA" and key in env:
            env[key] = min(env[key], value, key=ONEDNN_ORDER.__getitem__)
        else:
            env[key] = value
    return env


def fingerprint(record: dict) -> dict:
    claimed = {k: record[k] for k in ("metrics", "counts", "energy")}
    blob = json.dumps(claimed, sort_keys=True).encode()
    m = record["metrics"]
    return {"dense sha256": record["provenance"]["checkpoint_sha256"][:10], "correct": m["correct"],
            "acc dense": round(m["accuracy_dense"], 4), "firing rate": f"{m['firing_rate']:.6f}",
            "ACs": f"{record['counts']['ac']:.1f}", "claims sha256": hashlib.sha256(blob).hexdigest()[:10]}


def run_variant(env_extra: dict[str, str], args, work: Path) -> tuple[dict, float]:
    out = work / f"run{len(list(work.iterdir()))}"
    env = child_env(env_extra)
    threads = env_extra.get("STXBENCH_PROBE_THREADS", "1")
    cmd = [sys.executable, "-c", CHILD, "run", "--protocol", args.protocol_path, "--neuron", args.neuron,
           "--pruner", args.pruner, "--seed", str(args.seed), "--threads", threads, "--out", str(out),
           "--cache-dir", str(out / "cache"), "-q"]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"variant {env_extra} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads((out / "result.json").read_text()), seconds


def child_env(env_extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in
           ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")}
    env.update(env_extra)
    return env


def speed(variants: dict[str, dict[str, str]], chosen: list[str], args) -> None:
    """Train-step medians per variant, round-robin over fresh processes: each round starts one
    process per variant, so a change of load hits every variant alike."""
    here = str(Path(__file__).resolve().parent)
    times: dict[str, list[float]] = {name: [] for name in chosen}
    capability = {}
    for _ in range(args.rounds):
        for name in chosen:
            cmd = [sys.executable, "-c", SPEED_CHILD, here, args.protocol, str(args.steps)]
            done = subprocess.run(cmd, env=child_env(variants[name]), capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            times[name].append(result["ms"])
            capability[name] = result["capability"]
    base = statistics.median(times[chosen[0]])
    rows = [[name, capability[name], f"{statistics.median(t):.1f}", f"{statistics.median(t) / base:.2f}x"]
            for name, t in times.items()]
    print(f"{args.protocol} training step (batch of the protocol, one thread), median of {args.rounds} rounds "
          f"x {args.steps} steps; load {os.getloadavg()[0]:.2f} at the end")
    print(tabulate(rows, headers=["variant", "ATen capability", "ms per step", f"vs {chosen[0]}"],
                   disable_numparse=True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="tiny", help="tiny (built in here) or a protocol name")
    p.add_argument("--neuron", default="slif")
    p.add_argument("--pruner", default="dsp")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="*", help="names to run (default: all); pins as PIN@MACHINE")
    p.add_argument("--speed", action="store_true", help="time training steps instead (digits by default)")
    p.add_argument("--rounds", type=int, default=5, help="--speed: rounds (default 5)")
    p.add_argument("--steps", type=int, default=10, help="--speed: timed steps per process (default 10)")
    args = p.parse_args()
    variants: dict[str, dict[str, str]] = {**MACHINES, **SINGLE, **PINS}
    for pin_name, pin in PINS.items():
        for machine_name, machine in MACHINES.items():
            if pin.get("ATEN_CPU_CAPABILITY") == "avx2" and machine_name == "sse4-machine":
                continue  # an AVX2 pin cannot run on a machine without AVX2
            variants[f"{pin_name}@{machine_name}"] = on_machine(machine, pin)
    chosen = args.variants or [name for name in variants if name not in PINS]  # PIN alone = PIN@native
    unknown = [name for name in chosen if name not in variants]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(variants)}")
    if args.speed:
        if args.protocol == "tiny":
            args.protocol = "digits"
        return speed(variants, chosen, args)
    with tempfile.TemporaryDirectory(prefix="stxbench-determinism-") as tmp:
        work = Path(tmp)
        if args.protocol == "tiny":
            (work / "tiny.toml").write_text(TINY)
            args.protocol_path = str(work / "tiny.toml")
        else:
            args.protocol_path = args.protocol
        runs = work / "runs"
        runs.mkdir()
        rows = []
        for name in chosen:
            record, seconds = run_variant(variants[name], args, runs)
            rows.append({"variant": name, **fingerprint(record), "wall s": f"{seconds:.1f}",
                         "dense s": record["timing"]["dense_s"]})
            print(tabulate([rows[-1]], headers="keys"), file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    print(f"{args.protocol} / {args.neuron} / {args.pruner} / seed {args.seed}, one thread unless said; "
          f"load {load:.2f} at the end")
    print(tabulate(rows, headers="keys"))


if __name__ == "__main__":
    main()
