#!/usr/bin/env bash
# Starts or stops a local multi-process dmpstore cluster on 127.0.0.1.
#
#   deploy/local-cluster.sh up DIR [--nodes N] [--gateways N] [--repair-delay SECONDS]
#                                  [--repair-rate MIB_PER_S] [--replaced-data-grace SECONDS]
#                                  [--orphan-gc SECONDS] [--tombstone-grace SECONDS]
#                                  [--tls | --tls-gateways N] [--gateway-toml TOML]
#                                  [--plaintext-rpc]
#   deploy/local-cluster.sh add DIR
#   deploy/local-cluster.sh renew-cert DIR
#   deploy/local-cluster.sh down DIR
#
# `up` makes a cluster CA and a certificate per process under DIR/rpc-tls (the internal RPC
# is mutual TLS), writes one config per process under DIR, starts N storage nodes (default 6) and N
# gateways (default 2) as separate processes on free ports, waits until every one serves, and
# writes DIR/cluster.json (endpoints, credentials, and every process's pid, address, data dir
# and config, and `rpc_tls`: an operator's certificate for admin calls and the nodes'
# /metrics). `down` stops the processes listed there (SIGTERM, then SIGKILL after 20 s).
# --repair-delay sets how long a node must stay Down before its chunks are rebuilt elsewhere
# (default 300 s) and switches heartbeats to short test timings (200 ms beats, Suspect after
# 600 ms, Down after 1.5 s), so a failure heals in seconds; --repair-rate caps each node's
# rebuild rate (default 64 MiB/s). --replaced-data-grace sets how long
# gateways keep the chunks of overwritten or deleted data, and nodes the chunks repair or
# rebalance moved off them (default 30 s). --orphan-gc sets how old unreferenced chunks must be
# before the orphan scan drops them, and how often it runs (default 6 h; it must exceed the
# longest PUT). --tombstone-grace sets the age at which anti-entropy may purge a tombstone
# that every replica holds (default 1 day).
# --tls makes a test CA and a certificate for 127.0.0.1 and localhost under DIR/tls (openssl),
# serves S3 over HTTPS only on every gateway, and writes https:// endpoints and the CA's path
# (`ca_bundle`) into cluster.json; --tls-gateways N does so for the first N gateways only,
# the others stay on plain HTTP. --gateway-toml appends TOML tables (such as
# '[limits]\nmax_connections = 64') to every gateway config.
# --plaintext-rpc runs the internal RPC over plain HTTP (insecure_plaintext_rpc), for
# measuring what its TLS costs.
# `add` starts one more storage node (settings as node 1's, next id, zones in turn), adds it
# to the running cluster with `gateway admin add`, and lists it in DIR/cluster.json; the
# cluster then moves to it the chunks whose placement moved.
# `renew-cert` issues a new key and certificate from the cluster's test CA in place of the old
# ones; the gateways serve it within seconds, without a restart.
# Binaries come from $DMPSTORE_BIN_DIR, else target/release of this repository.
set -euo pipefail

usage() { sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=${DMPSTORE_BIN_DIR:-$repo/target/release}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || usage
shift 2
n_nodes=6; n_gateways=2; plaintext_rpc=0; gateway_extra=""; detector_toml=""; repair_toml=""; tls_gateways=0
gateway_tables=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) n_nodes=$2; shift 2 ;;
    --gateways) n_gateways=$2; shift 2 ;;
    --repair-delay)
      detector_toml=$'\n'"[failure_detector]"$'\n'"heartbeat_interval_ms = 200"$'\n'"suspect_after_ms = 600"$'\n'"down_after_ms = 1500"$'\n'
      repair_toml+="delay_secs = $2"$'\n'"scan_interval_secs = 30"$'\n'
      shift 2 ;;
    --repair-rate) repair_toml+="max_rate_mib_per_s = $2"$'\n'; shift 2 ;;
    --tombstone-grace) repair_toml+="tombstone_grace_secs = $2"$'\n'; shift 2 ;;
    --orphan-gc)
      repair_toml+="orphan_grace_secs = $2"$'\n'"orphan_scan_interval_secs = $2"$'\n'
      shift 2 ;;
    --replaced-data-grace)
      gateway_extra+="replaced_data_grace_secs = $2"$'\n'
      repair_toml+="replaced_data_grace_secs = $2"$'\n'
      shift 2 ;;
    --tls) tls_gateways=all; shift ;;
    --tls-gateways) tls_gateways=$2; shift 2 ;;
    --plaintext-rpc) plaintext_rpc=1; shift ;;
    --gateway-toml) gateway_tables+=$'\n'"$2"$'\n'; shift 2 ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done

# Free ports below the kernel's ephemeral range: a port from that range can be taken as the
# source port of some outgoing connection while its node is down, and the node could then not
# listen on it again after a restart. Clusters starting at the same time pick under one lock.
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
ports = []
while len(ports) < int(sys.argv[1]):
    p = random.randrange(15000, low)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        if p not in ports:
            ports.append(p)
    except OSError:
        pass
    finally:
        s.close()
print(" ".join(map(str, ports)))
PY
}

wait_for_port() { # port pid name
  local deadline=$((SECONDS + 60))
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.5)" "$1" 2>/dev/null; do
    if ! kill -0 "$2" 2>/dev/null; then echo "$3 exited during start-up; see its log" >&2; return 1; fi
    if [ $SECONDS -ge $deadline ]; then echo "$3 did not start listening within 60 s" >&2; return 1; fi
    sleep 0.1
  done
}

# A CA for 127.0.0.1 and localhost, valid for a year, under $1.
make_ca() {
  mkdir -p "$1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=dmpstore test CA" -keyout "$1/ca.key" -out "$1/ca.pem" 2>/dev/null
}

# A new key and server certificate (127.0.0.1, localhost, *.localhost for virtual-hosted-style
# requests) signed by the CA under $1, moved into place as server.key and server.pem (each
# file replaced at once, so a gateway never reads half of one).
make_server_cert() {
  local d=$1 tmp
  tmp=$(mktemp -d "$d/new.XXXXXX")
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:*.localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tmp/server.ext"
  openssl x509 -req -in "$tmp/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 365 -extfile "$tmp/server.ext" -out "$tmp/server.pem" 2>/dev/null
  mv "$tmp/server.key" "$d/server.key"
  mv "$tmp/server.pem" "$d/server.pem"
  rm -rf "$tmp"
}

# The [rpc_tls] table of the process whose certificate files are $dir/rpc-tls/$1.{pem,key}.
rpc_tls_toml() {
  if [ "$plaintext_rpc" = 1 ]; then printf 'insecure_plaintext_rpc = true\n'; return; fi
  printf '[rpc_tls]\nca_cert = "%s"\ncert = "%s"\nkey = "%s"\n' \
    "$dir/rpc-tls/ca.pem" "$dir/rpc-tls/$1.pem" "$dir/rpc-tls/$1.key"
}

up() {
  for b in storage-node gateway; do
    [ -x "$bin_dir/$b" ] || { echo "missing $bin_dir/$b: run 'cargo build --release' first" >&2; exit 1; }
  done
  mkdir -p "$dir/logs"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/cluster.json" ]; then echo "$dir/cluster.json exists: run 'down' first" >&2; exit 1; fi
  local secret access_key secret_key region=us-east-1 ca_bundle=""
  [ "$tls_gateways" = all ] && tls_gateways=$n_gateways
  local tls_toml=""
  if [ "$tls_gateways" -gt 0 ]; then
    command -v openssl >/dev/null || { echo "--tls needs openssl (scripts/setup.sh installs it)" >&2; exit 1; }
    make_ca "$dir/tls"
    make_server_cert "$dir/tls"
    ca_bundle="$dir/tls/ca.pem"
    tls_toml=$'\n'"[tls]"$'\n'"cert_path = \"$dir/tls/server.pem\""$'\n'"key_path = \"$dir/tls/server.key\""$'\n'
  fi
  # The internal RPC's mutual TLS: a cluster CA, a certificate per process, and one for the
  # operator (admin commands, scraping the nodes' /metrics) listed in cluster.json.
  "$bin_dir/gateway" admin certs init --dir "$dir/rpc-tls" --nodes "$n_nodes" \
    --gateways "$n_gateways" >/dev/null
  "$bin_dir/gateway" admin certs issue --dir "$dir/rpc-tls" --gateway operator >/dev/null
  secret=$(python3 -c "import secrets; print(secrets.token_hex(16))")
  access_key=dmpstore-local
  secret_key=$(python3 -c "import secrets; print(secrets.token_hex(16))")
  # Held until every process listens, so a concurrent 'up' cannot pick the same ports.
  exec 9>"${TMPDIR:-/tmp}/dmpstore-local-cluster.lock"
  flock 9
  read -r -a ports <<<"$(free_ports $((2 * n_nodes + 2 * n_gateways)))"

  local nodes_toml="" procs=() i
  for ((i = 1; i <= n_nodes; i++)); do
    nodes_toml+=$'\n'"[[nodes]]"$'\n'"id = $i"$'\n'"addr = \"127.0.0.1:${ports[i-1]}\""$'\n'"zone = \"zone-$(( (i - 1) % 3 + 1 ))\""$'\n'
  done
  for ((i = 1; i <= n_nodes; i++)); do
    local cfg="$dir/node-$i.toml" port=${ports[i-1]} health=${ports[n_nodes + n_gateways + i - 1]}
    cat >"$cfg" <<TOML
node_id = $i
listen_addr = "127.0.0.1:$port"
health_listen_addr = "127.0.0.1:$health"
data_dir = "$dir/node-$i"
cluster_secret = "$secret"
zone = "zone-$(( (i - 1) % 3 + 1 ))"
$(rpc_tls_toml "node-$i")
$detector_toml
${repair_toml:+[repair]
$repair_toml}
$nodes_toml
TOML
    "$bin_dir/storage-node" --config "$cfg" >>"$dir/logs/node-$i.log" 2>&1 9>&- &
    procs+=("storage-node n$i $! 127.0.0.1:$port $dir/node-$i $cfg 127.0.0.1:$health -")
  done
  for ((i = 1; i <= n_gateways; i++)); do
    local cfg="$dir/gateway-$i.toml" port=${ports[n_nodes + i - 1]}
    local console=${ports[2 * n_nodes + n_gateways + i - 1]}
    cat >"$cfg" <<TOML
s3_listen_addr = "127.0.0.1:$port"
console_listen_addr = "127.0.0.1:$console"
region = "$region"
virtual_host_domains = ["localhost"]
cluster_secret = "$secret"
$gateway_extra
$(rpc_tls_toml "gateway-$i")
[[credentials]]
access_key = "$access_key"
secret_key = "$secret_key"
$nodes_toml
$gateway_tables
$( [ "$i" -le "$tls_gateways" ] && printf '%s' "$tls_toml" )
TOML
    "$bin_dir/gateway" serve --config "$cfg" >>"$dir/logs/gateway-$i.log" 2>&1 9>&- &
    procs+=("gateway g$i $! 127.0.0.1:$port - $cfg - 127.0.0.1:$console")
  done
  # Record the pids before waiting, so 'down' can stop a half-started cluster.
  write_json "$access_key" "$secret_key" "$region" "$ca_bundle" "$tls_gateways" "${procs[@]}"
  local p role id pid addr
  for p in "${procs[@]}"; do
    read -r role id pid addr _ <<<"$p"
    wait_for_port "${addr##*:}" "$pid" "$role $id" || { down; exit 1; }
  done
  flock -u 9
  exec 9>&-
  echo "cluster up: $n_nodes storage nodes, $n_gateways gateways; see $dir/cluster.json"
}

write_json() {
  python3 - "$dir/cluster.json" "$@" <<'PY'
import json, os, sys
path, access_key, secret_key, region, ca_bundle, tls_gateways, *procs = sys.argv[1:]
processes = []
for p in procs:
    role, pid_id, pid, addr, data_dir, config, health, console = p.split(" ")
    processes.append({"role": role, "id": pid_id, "pid": int(pid), "addr": addr,
                      "data_dir": None if data_dir == "-" else data_dir, "config": config,
                      "health_addr": None if health == "-" else health,
                      "console_addr": None if console == "-" else console})
gateways = [p for p in processes if p["role"] == "gateway"]
endpoints = [("https://" if i < int(tls_gateways) else "http://") + p["addr"] for i, p in enumerate(gateways)]
rpc = os.path.join(os.path.dirname(os.path.abspath(path)), "rpc-tls")
info = {"s3_endpoints": endpoints, "access_key": access_key, "secret_key": secret_key,
        "region": region, "processes": processes,
        "rpc_tls": {"ca_cert": f"{rpc}/ca.pem", "cert": f"{rpc}/gateway-operator.pem",
                    "key": f"{rpc}/gateway-operator.key"}}
if ca_bundle:
    info["ca_bundle"] = ca_bundle
json.dump(info, open(path, "w"), indent=2)
PY
}

add() {
  [ -f "$dir/cluster.json" ] || { echo "no cluster.json in $dir: run 'up' first" >&2; exit 1; }
  dir=$(cd "$dir" && pwd)
  exec 9>"${TMPDIR:-/tmp}/dmpstore-local-cluster.lock"
  flock 9
  local port id cfg zone pid
  read -r port health <<<"$(free_ports 2)"
  # The new node's config: node 1's settings, its own id, address, data dir and zone, and
  # itself in the node list (it learns nodes added before it from the cluster map).
  read -r id zone cfg < <(python3 - "$dir" "$port" "$health" <<'PY'
import json, re, sys
d, port, health = sys.argv[1], sys.argv[2], sys.argv[3]
info = json.load(open(f"{d}/cluster.json"))
nodes = [p for p in info["processes"] if p["role"] == "storage-node"]
new_id = max(int(p["id"].lstrip("n")) for p in nodes) + 1
zone = f"zone-{(new_id - 1) % 3 + 1}"
text = open(f"{d}/node-1.toml").read()
text = re.sub(r"(?m)^node_id = .*$", f"node_id = {new_id}", text)
text = re.sub(r'(?m)^listen_addr = .*$', f'listen_addr = "127.0.0.1:{port}"', text)
text = re.sub(r'(?m)^health_listen_addr = .*$', f'health_listen_addr = "127.0.0.1:{health}"', text)
text = re.sub(r'(?m)^data_dir = .*$', f'data_dir = "{d}/node-{new_id}"', text)
text = re.sub(r'(?m)^zone = .*$', f'zone = "{zone}"', text, count=1)
text = re.sub(r'(?m)^cert = .*$', f'cert = "{d}/rpc-tls/node-{new_id}.pem"', text)
text = re.sub(r'(?m)^key = .*$', f'key = "{d}/rpc-tls/node-{new_id}.key"', text)
text += f'\n[[nodes]]\nid = {new_id}\naddr = "127.0.0.1:{port}"\nzone = "{zone}"\n'
cfg = f"{d}/node-{new_id}.toml"
open(cfg, "w").write(text)
print(new_id, zone, cfg)
PY
)
  "$bin_dir/gateway" admin certs issue --dir "$dir/rpc-tls" --node "$id" >/dev/null
  "$bin_dir/storage-node" --config "$cfg" >>"$dir/logs/node-$id.log" 2>&1 9>&- &
  pid=$!
  python3 - "$dir/cluster.json" "$id" "$pid" "$port" "$dir/node-$id" "$cfg" "$health" <<'PY'
import json, sys
path, new_id, pid, port, data_dir, cfg, health = sys.argv[1:]
info = json.load(open(path))
procs = info["processes"]
last = max(i for i, p in enumerate(procs) if p["role"] == "storage-node")
procs.insert(last + 1, {"role": "storage-node", "id": f"n{new_id}", "pid": int(pid),
                        "addr": f"127.0.0.1:{port}", "data_dir": data_dir, "config": cfg,
                        "health_addr": f"127.0.0.1:{health}"})
json.dump(info, open(path, "w"), indent=2)
PY
  wait_for_port "$port" "$pid" "storage-node n$id" || exit 1
  flock -u 9
  exec 9>&-
  "$bin_dir/gateway" admin add --config "$dir/gateway-1.toml" --node "$id" \
    --addr "127.0.0.1:$port" --zone "$zone"
  echo "n$id added; see $dir/cluster.json"
}

down() {
  [ -f "$dir/cluster.json" ] || { echo "no cluster.json in $dir" >&2; return 0; }
  local pids
  pids=$(python3 -c "import json,sys; print(' '.join(str(p['pid']) for p in json.load(open(sys.argv[1]))['processes']))" "$dir/cluster.json")
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 20))
  for pid in $pids; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$dir/cluster.json"
  echo "cluster down"
}

case "$cmd" in
  up) up ;;
  add) add ;;
  renew-cert)
    [ -f "$dir/tls/ca.pem" ] || { echo "no test CA in $dir/tls: start the cluster with --tls" >&2; exit 1; }
    make_server_cert "$dir/tls"; echo "certificate renewed: $dir/tls/server.pem" ;;
  down) down ;;
  *) usage ;;
esac
