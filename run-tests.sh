#!/usr/bin/env bash
# Runs dmpstore's whole test suite: unit and property tests of every crate, then integration
# tests that start real storage-node and gateway processes on 127.0.0.1. Does its own set-up.
# Extra arguments go to `cargo test` (e.g. ./run-tests.sh --test failures).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
# Integration tests spawn the binaries, so build them first in the same profile.
cargo build --release --workspace --bins
cargo test --release --workspace "$@"
