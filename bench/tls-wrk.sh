#!/usr/bin/env bash
# What TLS costs the service (BENCHMARKS.md, "TLS"): `lmts serve` with and without
# --tls-cert in one run, wrk on keep-alive connections to /health and to a signed list.
#
#   cargo build --release -p lmts-cli && bench/tls-wrk.sh [SECONDS] [CONNECTIONS]
#
# Needs wrk, openssl and python3 (Debian: apt-get install wrk openssl python3).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
SECS=${1:-6}
CONNS=${2:-32}
LMTS=${LMTS:-target/release/lmts}
DIR=$(mktemp -d /tmp/lmts-tls-bench.XXXXXX)
trap 'kill $PLAIN_PID $TLS_PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null
start_lmts 127.0.0.1:19200; PLAIN_PID=$LMTS_PID
start_lmts 127.0.0.1:19201 --tls-cert "$DIR/cert.pem" --tls-key "$DIR/key.pem"; TLS_PID=$LMTS_PID
derive_token 127.0.0.1:19200
sign_list() { sign_get /auth/api-tokens "$DIR/list.lua"; }
printf '' > "$DIR/plain.lua"
run() { # name, url, script
  local out; out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$3" "$2")
  printf '| %s | %s | %s | %s | %s |\n' "$1" \
    "$(awk '/Requests\/sec/ {print $2}' <<< "$out")" "$(awk '$1 == "50%" {print $2}' <<< "$out")" \
    "$(awk '$1 == "99%" {print $2}' <<< "$out")" "$(awk '/Non-2xx/ {print $5} END {}' <<< "$out" | grep . || echo 0)"
}
echo "wrk -t1 -c$CONNS, ${SECS} s each"
echo "| scenario | req/s | p50 | p99 | non-2xx |"
echo "|---|---:|---:|---:|---:|"
run "/health, plain HTTP" http://127.0.0.1:19200/health "$DIR/plain.lua"
run "/health, HTTPS" https://127.0.0.1:19201/health "$DIR/plain.lua"
sign_list; run "signed list, plain HTTP" http://127.0.0.1:19200/auth/api-tokens "$DIR/list.lua"
sign_list; run "signed list, HTTPS" https://127.0.0.1:19201/auth/api-tokens "$DIR/list.lua"
