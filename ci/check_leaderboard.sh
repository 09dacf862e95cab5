#!/usr/bin/env bash
# CI's leaderboard check, run by .ci/run after the tests. Verifies every entry (schema, official,
# protocol hash, energy recomputed from counts, plugin file hashes, names, duplicates) and every
# rendered file, then re-runs exactly one entry of a CPU-cheap protocol -- chosen from the commit
# being checked, so successive commits re-run different entries while CI stays fast (about a
# minute on 2 cores for a digits entry). Passes on an empty leaderboard.
set -euo pipefail
cd "$(dirname "$0")/.."
exec stxbench leaderboard check --root leaderboards --rerun-one
