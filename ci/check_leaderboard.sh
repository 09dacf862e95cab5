#!/usr/bin/env bash
# CI's leaderboard check, run by .ci/run after the tests (docs/leaderboard.md, "What CI proves").
# Verifies every entry (strict JSON, schema, official, protocol hash, CPU pin, per-layer names,
# metrics that imply each other, energy recomputed from counts, code identity current, names,
# duplicates) and every rendered file; re-runs from scratch, and compares exactly, every entry
# without a valid verification receipt (leaderboards/<protocol>/receipts/: written by a re-run
# that reproduced the entry, valid while the entry and the code that computes it are unchanged),
# plus one entry that has one, chosen by the commit (an audit).
#
# CI passes no entry it did not verify: with --require-verified, an entry that has no valid
# receipt and was not reproduced here (the budget ran out, it could not be re-run) fails the
# check, named with the command that verifies it. Re-runs share dense models per seed and run
# $STXBENCH_RERUN_JOBS at a time (default: one per core), each with the entry's own thread count
# (1). No re-run starts after $STXBENCH_RERUN_BUDGET minutes (default 50), so CI ends within its
# 90 minutes (install and tests take about 15); a landing that adds more entries than that budget
# re-runs commits their receipts (`stxbench leaderboard check --rerun-unverified`, any x86-64 CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs="${STXBENCH_RERUN_JOBS:-$(nproc)}"
budget="${STXBENCH_RERUN_BUDGET:-50}"
exec stxbench leaderboard check --root leaderboards --rerun-unverified --rerun-one --require-verified \
    --no-write-receipts --jobs "$jobs" --rerun-budget "$budget"
