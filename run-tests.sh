#!/usr/bin/env bash
# Runs dmpstore's whole test suite: unit and property tests of every crate, then integration
# tests that start real storage-node and gateway processes on 127.0.0.1 and drive them with real
# clients (aws-sdk-s3, aws cli, boto3, rclone, s3cmd, s3s-e2e, Spark), and a bounded
# coverage-guided fuzzing run of every decoder (scripts/fuzz.sh). Does its own set-up.
# Extra arguments go to `cargo test` (e.g. ./run-tests.sh --test failures).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --test-clients
# Integration tests spawn the binaries, so build them first in the same profile.
cargo build --release --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Every target but doc tests (there are none); arguments, when given, choose the targets.
targets=(--all-targets)
[ $# -eq 0 ] || targets=()
cargo test --release --workspace --no-fail-fast "${targets[@]}" "$@" 2>&1 | tee "$log" || status=$?
# The whole suite also fuzzes every decoder for a bounded time (20 s per target; a longer run:
# scripts/fuzz.sh 600).
if [ $# -eq 0 ]; then
  scripts/fuzz.sh "${DMPSTORE_FUZZ_SECS:-20}" || status=$?
fi
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
