#!/bin/sh
# Makes the Secrets of dmpstore on Kubernetes and prints them as YAML:
#   deploy/kubernetes/make-secrets.sh CERT_DIR > dmpstore-secrets.yaml
#   kubectl apply -n NAMESPACE -f dmpstore-secrets.yaml
# CERT_DIR is the cluster CA's directory: without ca.pem there, the CA and the certificates
# are made with `gateway admin certs init` (GATEWAY_BIN: the gateway binary, default
# `gateway` on PATH); missing node or Prometheus certificates are issued. Keep CERT_DIR
# (ca.key) off the cluster: ca.key goes into no Secret.
#   dmpstore-cluster             cluster-secret, s3-access-key, s3-secret-key
#   dmpstore-rpc-tls-nodes       ca.pem, node-1..N.pem/.key (N = NODES, default 6)
#   dmpstore-rpc-tls-gateway     ca.pem, gateway.pem, gateway.key (from gateway-1)
#   dmpstore-rpc-tls-prometheus  ca.pem, prometheus.pem, prometheus.key (operator
#                                certificate to scrape the nodes' /metrics)
# CLUSTER_SECRET and S3_SECRET_KEY default to random values (openssl rand), S3_ACCESS_KEY
# to dmpstore-admin; read them back with kubectl get secret dmpstore-cluster.
set -eu

dir=${1:?usage: make-secrets.sh CERT_DIR > dmpstore-secrets.yaml}
nodes=${NODES:-6}
gateway=${GATEWAY_BIN:-gateway}

if [ ! -f "$dir/ca.pem" ]; then
  "$gateway" admin certs init --dir "$dir" --nodes "$nodes" --gateways 1 >&2
fi
i=1
while [ "$i" -le "$nodes" ]; do
  [ -f "$dir/node-$i.pem" ] || "$gateway" admin certs issue --dir "$dir" --node "$i" >&2
  i=$((i + 1))
done
[ -f "$dir/gateway-1.pem" ] || "$gateway" admin certs issue --dir "$dir" --gateway 1 >&2
[ -f "$dir/gateway-prometheus.pem" ] \
  || "$gateway" admin certs issue --dir "$dir" --gateway prometheus >&2

cluster_secret=${CLUSTER_SECRET:-$(openssl rand -hex 24)}
access_key=${S3_ACCESS_KEY:-dmpstore-admin}
secret_key=${S3_SECRET_KEY:-$(openssl rand -hex 20)}
if [ "${#cluster_secret}" -lt 16 ]; then
  echo "make-secrets.sh: CLUSTER_SECRET must be at least 16 characters" >&2
  exit 1
fi

b64() { base64 < "$1" | tr -d '\n'; }
b64s() { printf '%s' "$1" | base64 | tr -d '\n'; }
header() {
  printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n' "$1"
  printf '  labels:\n    app.kubernetes.io/name: dmpstore\ntype: Opaque\ndata:\n'
}
entry() { printf '  %s: %s\n' "$1" "$(b64 "$2")"; }

header dmpstore-cluster
printf '  cluster-secret: %s\n' "$(b64s "$cluster_secret")"
printf '  s3-access-key: %s\n' "$(b64s "$access_key")"
printf '  s3-secret-key: %s\n' "$(b64s "$secret_key")"

header dmpstore-rpc-tls-nodes
entry ca.pem "$dir/ca.pem"
i=1
while [ "$i" -le "$nodes" ]; do
  entry "node-$i.pem" "$dir/node-$i.pem"
  entry "node-$i.key" "$dir/node-$i.key"
  i=$((i + 1))
done

header dmpstore-rpc-tls-gateway
entry ca.pem "$dir/ca.pem"
entry gateway.pem "$dir/gateway-1.pem"
entry gateway.key "$dir/gateway-1.key"

header dmpstore-rpc-tls-prometheus
entry ca.pem "$dir/ca.pem"
entry prometheus.pem "$dir/gateway-prometheus.pem"
entry prometheus.key "$dir/gateway-prometheus.key"
