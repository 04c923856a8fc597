#!/usr/bin/env bash
# The gateway under wrk, next to nginx, in one run (BENCHMARKS.md, "The gateway under load"):
# a trivial upstream (nginx answering 200), nginx proxy_pass in front of it, and
# `lmts serve --policy --upstream` (token service and gateway in one process) in front of it.
# Signed POSTs are distinct (each is recorded for replay), so their signatures are made
# beforehand by bench/presign.py (nginx is sent the same ones too: wrk's cost is then the same
# on both sides), just before each run; a signed GET may be repeated within the window.
#
#   cargo build --release -p lmts-cli && bench/gateway-wrk.sh [SECONDS] [CONNECTIONS]
#
# NGINX_WORKERS (default auto: one per core) sets nginx's worker processes; LMTS the binary.
#
# Needs nginx, wrk and python3 (Debian: apt-get install nginx wrk python3).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
SECS=${1:-8}
CONNS=${2:-32}
nginx_conf nginx "$UPSTREAM_SERVER $PROXY_SERVER" "${NGINX_WORKERS:-auto}"
write_policy
start_lmts 127.0.0.1:19102 --policy "$DIR/policy.toml" --upstream http://127.0.0.1:19100
derive_token 127.0.0.1:19102

printf 'wrk.method = "POST"\nwrk.body = string.rep("x", 256)\n' > "$DIR/unsigned.lua"
printf '' > "$DIR/plain.lua"
echo "wrk -t1 -c$CONNS, ${SECS} s each, nginx workers: ${NGINX_WORKERS:-auto}"
echo "| scenario | req/s | p50 | p99 | non-2xx |"
echo "|---|---:|---:|---:|---:|"
wrk_row "nginx proxy_pass, unsigned 256-byte POST" http://127.0.0.1:19101/orders/1 "$DIR/unsigned.lua"
sign_posts /orders/1 /orders/1 "$DIR/post.lua"
wrk_row "nginx proxy_pass, the signed POSTs" http://127.0.0.1:19101 "$DIR/post.lua"
sign_posts /orders/1 /orders/1 "$DIR/post.lua"
wrk_row "lmts gateway, signed 256-byte POST" http://127.0.0.1:19102 "$DIR/post.lua"
wrk_row "nginx proxy_pass, GET" "http://127.0.0.1:19101/orders/1?depth=5" "$DIR/plain.lua"
sign_get "/orders/1?depth=5" "$DIR/get.lua"
wrk_row "lmts gateway, signed GET" "http://127.0.0.1:19102/orders/1?depth=5" "$DIR/get.lua"
wrk_row "upstream direct, GET" "http://127.0.0.1:19100/orders/1?depth=5" "$DIR/plain.lua"
wrk_row "lmts /health" http://127.0.0.1:19102/health "$DIR/plain.lua"
sign_posts /ext-authz/orders/1 /orders/1 "$DIR/authz.lua"
wrk_row "lmts /ext-authz, signed 256-byte POST" http://127.0.0.1:19102 "$DIR/authz.lua"
