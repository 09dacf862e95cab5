#!/usr/bin/env bash
# stxbench on one CUDA GPU: the measurements docs/performance.md's GPU section asks for.
#
#   bash benchmarks/gpu.sh [OUT]              # on a CUDA machine; results in OUT (default gpu-results)
#   bash benchmarks/gpu.sh --dry-run [OUT]    # the same steps on the CPU, tiny (tests run this)
#
# 1. kernel_check.py: the fused kernel (Triton) against the plain loop (eager CUDA ops), every
#    neuron and surrogate, parity's inputs (exit status kept, the script goes on);
# 2. neurons.py: one neuron layer forward and forward+backward, every variant and backend;
# 3. train_step.py: a Spikformer-4-384 training step and evaluation batch on CIFAR-shaped data
#    (fabricated CIFAR-10 files in the official layout), LIF and sLIF, fp32 and bf16 autocast:
#    the plain loop eager and compiled, the fused kernel, each library backend eager and compiled,
#    peak memory (max_memory_allocated);
# 4. one end-to-end `stxbench run` of the CIFAR-10 protocol (the headline neuron and pruner) on the
#    fabricated files with a short, unofficial budget, and a check that its record is valid.
#
# Knobs (environment): PYTHON (default python), ROUNDS (timed rounds, default 20), BACKENDS
# (train_step's library backends, default "spikingjelly"; "all" for every installed one),
# TORCHINDUCTOR_CACHE_DIR (default OUT/inductor). About 15-25 minutes on one GPU, most of it
# compiling (cold kernel cache).
set -euo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT=${1:-gpu-results}
PY=${PYTHON:-python}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$OUT/inductor}
BACKENDS=${BACKENDS:-spikingjelly}
[[ "$BACKENDS" == "all" ]] && BACKENDS=""

if (( DRY )); then
    DEVICE=cpu ROUNDS=1 PER_BATCH=16
    KERNEL_ARGS=(--neurons lif --surrogates atan)
    NEURON_ARGS=(--no-compile --shapes 2x4x64 --neurons lif --backends torch --threads 1)
    STEP_ARGS=(--model spikformer-1-48 --batch 8 --no-memory --no-compile --backends torch)
    RUN_SETTINGS=(--set model.name=spikformer-1-48 --set model.T=2 --set train.batch_size=16 --set finetune.batch_size=16
                  --set eval.batch_size=16 --set eval.count_samples=16)
else
    DEVICE=cuda ROUNDS=${ROUNDS:-20} PER_BATCH=1000
    NEURON_ARGS=(--shapes 4x64x24576 4x8192x384 --threads 1)
    STEP_ARGS=()
    [[ -n "$BACKENDS" ]] && STEP_ARGS=(--backends torch $BACKENDS)
    RUN_SETTINGS=()
    KERNEL_ARGS=()
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: run with --dry-run to try the script on the CPU')"
fi

log() { echo; echo "== $*"; }
log "environment" | tee "$OUT/environment.txt"
"$PY" - "$DEVICE" <<'EOF' | tee -a "$OUT/environment.txt"
import os, sys, torch
from torch.utils._triton import has_triton
device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, triton {has_triton()}")
if device == "cuda":
    print(torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
try:
    import spikingjelly, importlib.metadata as md
    print("spikingjelly", md.version("spikingjelly"), "implementations:",
          {k: v for k, v in os.environ.items() if k.startswith("SJ_")} or "auto")
except ImportError:
    print("spikingjelly not installed")
EOF

log "1. fused kernel vs plain loop on $DEVICE"
kernel_status=0
"$PY" "$HERE/kernel_check.py" --device "$DEVICE" "${KERNEL_ARGS[@]}" | tee "$OUT/kernel_check.txt" || kernel_status=$?

log "2. one neuron layer on $DEVICE"
"$PY" "$HERE/neurons.py" --device "$DEVICE" --rounds "$ROUNDS" "${NEURON_ARGS[@]}" | tee "$OUT/neurons.txt"

log "3. a Spikformer training step and evaluation on CIFAR-shaped data"
DATA="$OUT/fake-cifar"
"$PY" "$HERE/fake_cifar.py" "$DATA" --per-batch "$PER_BATCH"
for neuron in lif slif; do
    for precision in fp32 bf16; do
        (( DRY )) && [[ "$neuron$precision" != "liffp32" ]] && continue
        echo "-- $neuron, $precision"
        "$PY" "$HERE/train_step.py" --protocol cifar10-spikformer-4-384 --data-root "$DATA" --device "$DEVICE" \
            --precision "$precision" --neuron "$neuron" --rounds "$ROUNDS" "${STEP_ARGS[@]}" \
            | tee "$OUT/train_step-$neuron-$precision.txt"
    done
done

log "4. stxbench run: cifar10-spikformer-4-384, slif + dsp, on $DEVICE, short unofficial budget"
"$PY" -m stxbench run --protocol cifar10-spikformer-4-384 --data-root "$DATA" --device "$DEVICE" \
    --neuron slif --pruner dsp --backend torch --out "$OUT/run" --cache-dir "$OUT/cache" \
    --set train.epochs=1 --set train.warmup_epochs=0 --set train.mixup_epochs=1 --set finetune.epochs=1 \
    "${RUN_SETTINGS[@]}"
"$PY" - "$OUT/run/result.json" "$DEVICE" <<'EOF' | tee "$OUT/record.txt"
import sys
from stxbench.record.schema import load_record
record = load_record(sys.argv[1])  # validates the schema; a bad record is one UsageError line
device, execution = record.provenance.device, record.provenance.execution
assert not record.protocol.official and record.counts is not None and record.energy is not None
assert (execution.cudnn is not None) == (sys.argv[2] == "cuda"), (device, execution.cudnn)  # cudnn: None on CPUs
print(f"valid record: {record.protocol.name} (unofficial), {record.config.neuron}+{record.config.pruner} on "
      f"{record.config.backend}, device {device}, precision {execution.precision}, accuracy "
      f"{record.metrics.accuracy:.3f}, {record.timing.samples_per_s:.0f} samples/s")
EOF

log "done: results in $OUT"
if (( kernel_status )); then echo "kernel_check FAILED (exit $kernel_status): see $OUT/kernel_check.txt"; fi
exit $kernel_status
