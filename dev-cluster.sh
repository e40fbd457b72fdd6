#!/usr/bin/env bash
# Starts the embedded single-machine dmpstore cluster (1 gateway + 6 storage nodes, RS(4,2))
# with data under DIR (default ./data), S3 on 127.0.0.1:9000 ($DMPSTORE_S3_ADDR) and the web
# console on 127.0.0.1:9001 (`--console-addr ADDR|off`). Ctrl-C stops it; running it again on the
# same DIR serves the same data. Extra arguments go to `gateway dev`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
dir=${1:-./data}
shift || true
# The same build as run-tests.sh, so the two commands never rebuild each other.
cargo build --release --workspace --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c "import json,sys; print(json.load(sys.stdin)['target_directory'])")
exec "$target_dir/release/gateway" dev --data-dir "$dir" --s3-addr "${DMPSTORE_S3_ADDR:-127.0.0.1:9000}" "$@"
