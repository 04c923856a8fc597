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
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$DIR/key.pem" -out "$DIR/cert.pem" 2>/dev/null
start_lmts 127.0.0.1:19200
start_lmts 127.0.0.1:19201 --tls-cert "$DIR/cert.pem" --tls-key "$DIR/key.pem"
derive_token 127.0.0.1:19200
sign_list() { sign_get /auth/api-tokens "$DIR/list.lua"; }
printf '' > "$DIR/plain.lua"
echo "wrk -t1 -c$CONNS, ${SECS} s each"
echo "| scenario | req/s | p50 | p99 | non-2xx |"
echo "|---|---:|---:|---:|---:|"
wrk_row "/health, plain HTTP" http://127.0.0.1:19200/health "$DIR/plain.lua"
wrk_row "/health, HTTPS" https://127.0.0.1:19201/health "$DIR/plain.lua"
sign_list; wrk_row "signed list, plain HTTP" http://127.0.0.1:19200/auth/api-tokens "$DIR/list.lua"
sign_list; wrk_row "signed list, HTTPS" https://127.0.0.1:19201/auth/api-tokens "$DIR/list.lua"
