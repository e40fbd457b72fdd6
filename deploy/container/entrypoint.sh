#!/bin/sh
# Entrypoint of the dmpstore image: renders a config template if one is given, then runs the
# command (storage-node --config ..., gateway serve --config ..., gateway admin ...).
#
#   DMPSTORE_CONFIG_TEMPLATE  a TOML template; every @NAME@ in it becomes the value of the
#                             environment variable NAME, or, if NAME is unset, the content of
#                             the file named by NAME_FILE (a mounted secret). A placeholder
#                             with neither is an error. Values are escaped for TOML strings.
#   DMPSTORE_CONFIG           where the rendered config goes (default /tmp/dmpstore.toml,
#                             mode 0600: it holds the cluster secret).
#   NODE_ID_FROM_HOSTNAME=1   sets NODE_ID (if unset) to the ordinal that ends the host name
#                             plus 1: StatefulSet pod dmpstore-node-0 is node 1, since node
#                             ids start at 1.
#   NODE_ORDINAL              set to NODE_ID - 1 alongside, for templates that name pods.
set -eu

if [ "${NODE_ID_FROM_HOSTNAME:-0}" = 1 ] && [ -z "${NODE_ID:-}" ]; then
  # HOSTNAME is set by the container runtime (the pod name on Kubernetes).
  # shellcheck disable=SC3028
  host=${HOSTNAME:-$(hostname)}
  ordinal=${host##*-}
  case $ordinal in
    '' | *[!0-9]*)
      echo "dmpstore-entrypoint: host name '$host' does not end in -ORDINAL" >&2
      exit 64
      ;;
  esac
  NODE_ID=$((ordinal + 1))
  export NODE_ID
fi
if [ -n "${NODE_ID:-}" ] && [ -z "${NODE_ORDINAL:-}" ]; then
  NODE_ORDINAL=$((NODE_ID - 1))
  export NODE_ORDINAL
fi

if [ -n "${DMPSTORE_CONFIG_TEMPLATE:-}" ]; then
  out=${DMPSTORE_CONFIG:-/tmp/dmpstore.toml}
  umask 077
  awk '
    function value(name,   v, file, line, n) {
      if (name in ENVIRON && ENVIRON[name] != "") return ENVIRON[name]
      file = ENVIRON[name "_FILE"]
      if (file == "") {
        printf "dmpstore-entrypoint: %s: @%s@ needs $%s or $%s_FILE\n", FILENAME, name, name, name > "/dev/stderr"
        failed = 1
        return ""
      }
      v = ""; n = 0
      while ((getline line < file) > 0) { v = (n++ ? v "\n" : "") line }
      close(file)
      if (n == 0) {
        printf "dmpstore-entrypoint: %s is empty or unreadable (for @%s@)\n", file, name > "/dev/stderr"
        failed = 1
      }
      return v
    }
    function escape(s,   r, i, c) {
      r = ""
      for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "\\" || c == "\"") r = r "\\"
        r = r c
      }
      return r
    }
    {
      line = $0; out = ""
      while (match(line, /@[A-Z][A-Z0-9_]*@/)) {
        name = substr(line, RSTART + 1, RLENGTH - 2)
        out = out substr(line, 1, RSTART - 1) escape(value(name))
        line = substr(line, RSTART + RLENGTH)
      }
      print out line
    }
    END { exit failed }
  ' "$DMPSTORE_CONFIG_TEMPLATE" > "$out.tmp" || {
    rm -f "$out.tmp"
    exit 78
  }
  mv "$out.tmp" "$out"
fi

exec "$@"
