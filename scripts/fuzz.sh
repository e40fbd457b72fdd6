#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer) of every decoder of bytes from the network or the disk:
# RPC request and response frames, metadata records, cluster maps, chunk homes, and the S3
# Range and condition headers (through the s3s parsers the gateway uses). Builds
# common/fuzz with coverage instrumentation on the stable toolchain (no sanitizer: Rust's own
# checks, debug assertions and overflow checks catch what matters here), then runs each target
# for SECONDS (default 20). A crash stops the run and leaves its input in
# target/fuzz/artifacts/TARGET/; copy it into common/fuzz/regressions/TARGET/ and it is replayed
# by `cargo test -p dmpstore-common --test decoders` from then on.
#   scripts/fuzz.sh            every target, 20 s each (what the test suite runs)
#   scripts/fuzz.sh 600 record one target, ten minutes
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(rpc_request rpc_response record cluster_map chunk_home s3_headers)
flags="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags="$flags -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
flags="$flags -Cllvm-args=-sanitizer-coverage-trace-compares"
out="$PWD/target/fuzz"
# An explicit --target keeps the instrumentation out of build scripts and proc macros.
host="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="$flags" CARGO_INCREMENTAL=0 cargo build --quiet --release --target "$host" \
  --manifest-path common/fuzz/Cargo.toml --target-dir "$out/build"
for t in "${targets[@]}"; do
  corpus="$out/corpus/$t"
  artifacts="$out/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  # Known crashes and earlier finds seed the corpus, so each run starts where the last ended.
  if [ -d "common/fuzz/regressions/$t" ]; then cp -n common/fuzz/regressions/"$t"/* "$corpus"/ 2>/dev/null || true; fi
  echo "fuzz: $t for ${secs}s"
  if ! "$out/build/$host/release/$t" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" > "$out/$t.log" 2>&1; then
    tail -40 "$out/$t.log"
    echo "fuzz: $t FAILED; the input is in $artifacts/" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$out/$t.log" | tr '\n' ' '
  echo
done
