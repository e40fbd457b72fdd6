#!/usr/bin/env bash
# Installs what a fresh machine lacks to build dmpstore: the system packages RocksDB's bindings
# need (libclang for bindgen, a C++ compiler), python3 and openssl for the cluster launcher.
# With --test-clients it also installs the real clients the tests drive: aws cli, boto3, rclone,
# s3cmd, faketime (clock skew in the history checker), pyspark with Java 17, the s3s-e2e
# suite, and Debian's chromium with playwright-core from npm for the web console's browser test.
# Idempotent and quiet when everything is there already.
set -euo pipefail

test_clients=false
[ "${1:-}" = "--test-clients" ] && test_clients=true

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# deploy/local-cluster.sh --tls makes its test certificates with openssl.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if $test_clients; then
  command -v pip3 >/dev/null 2>&1 || need+=(python3-pip)
  command -v rclone >/dev/null 2>&1 || need+=(rclone)
  command -v s3cmd >/dev/null 2>&1 || need+=(s3cmd)
  command -v faketime >/dev/null 2>&1 || need+=(faketime)
  java -version 2>&1 | grep -q 'version "17' || need+=(openjdk-17-jre-headless)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust 1.95 with rustup" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy >/dev/null 2>&1 || true
$test_clients || exit 0

pip_install() { python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$@"; }
# aws cli, boto3 and pyspark from PyPI, pinned; skipped when these versions are there already.
# Debian's own python3 refuses system-wide installs (PEP 668) unless told otherwise.
if ! python3 -c "import boto3, sys; sys.exit(boto3.__version__ != '1.43.11')" 2>/dev/null \
  || ! aws --version 2>/dev/null | grep -q "aws-cli/1.45.11"; then
  echo "setup: installing awscli and boto3"
  pip_install "awscli==1.45.11" "boto3==1.43.11" || pip_install --break-system-packages "awscli==1.45.11" "boto3==1.43.11"
fi
# pyspark's hadoop-aws jars come from Maven at first use (cached in ~/.cache/dmpstore/ivy).
if ! python3 -c "import pyspark, sys; sys.exit(pyspark.__version__ != '3.5.4')" 2>/dev/null; then
  echo "setup: installing pyspark"
  pip_install "pyspark==3.5.4" || pip_install --break-system-packages "pyspark==3.5.4"
fi
# The s3s-e2e conformance suite, built once into a cache directory.
if ! "$HOME/.cache/dmpstore/tools/bin/s3s-e2e" --version 2>/dev/null | grep -q "0.14.1"; then
  echo "setup: building s3s-e2e 0.14.1 (once, several minutes)"
  cargo install --quiet --locked s3s-e2e --version 0.14.1 --root "$HOME/.cache/dmpstore/tools"
fi
# playwright-core (pinned in tests/console/package-lock.json) drives Debian's chromium; it
# downloads no browser.
console_tests="$(cd "$(dirname "$0")/.." && pwd)/tests/console"
if [ ! -d "$console_tests/node_modules/playwright-core" ]; then
  echo "setup: installing playwright-core for the console test"
  (cd "$console_tests" && npm ci --silent --no-audit --no-fund)
fi
