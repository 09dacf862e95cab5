#!/usr/bin/env bash
# CI's leaderboard check, run by .ci/run after the tests (docs/leaderboard.md, "What CI proves").
# Verifies every entry (strict JSON, schema, official, protocol hash, CPU pin, per-layer names,
# metrics that imply each other, energy recomputed from counts, plugin file hashes, names,
# duplicates) and every rendered file; re-runs from scratch, and compares exactly, every entry
# added or modified since BASE, plus one unchanged entry chosen by the commit (an audit).
#
# BASE: $STXBENCH_LEADERBOARD_BASE when set, else the commit in ci/leaderboard_base (the last
# commit CI has re-run everything up to; kept by the lead), else HEAD^1. A BASE that is not in
# this clone's history fails the check (exit 2) rather than re-running less.
# Re-runs share dense models per seed and run $STXBENCH_RERUN_JOBS at a time (default: one per
# core), each with the entry's own thread count (1). No re-run starts after
# $STXBENCH_RERUN_BUDGET minutes (default 40), so CI ends within about an hour whatever landed (the tests take 15-25 min);
# the entries left are listed one per line (every row and every dense model comes first, the
# rest in an order drawn from the commit), for a reviewer to re-run on a bigger machine.
set -euo pipefail
cd "$(dirname "$0")/.."

base="${STXBENCH_LEADERBOARD_BASE:-}"
if [ -z "$base" ] && [ -f ci/leaderboard_base ]; then
    base="$(grep -v '^#' ci/leaderboard_base | tr -d '[:space:]')"
fi
if [ -z "$base" ] && git rev-parse --verify --quiet 'HEAD^1' >/dev/null; then
    base="$(git rev-parse 'HEAD^1')"
fi
jobs="${STXBENCH_RERUN_JOBS:-$(nproc)}"
budget="${STXBENCH_RERUN_BUDGET:-40}"

if [ -n "$base" ]; then
    exec stxbench leaderboard check --root leaderboards --rerun-changed "$base" --rerun-one --jobs "$jobs" --rerun-budget "$budget"
fi
echo "no commit to compare with: re-running every entry" >&2
exec stxbench leaderboard check --root leaderboards --rerun --jobs "$jobs" --rerun-budget "$budget"
