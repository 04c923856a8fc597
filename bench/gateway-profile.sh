#!/usr/bin/env bash
# Where `lmts serve --upstream` spends a signed GET through the gateway (BENCHMARKS.md, "Issue
# #13"): wrk drives it in front of a one-worker nginx upstream while `perf record -g` samples
# lmts for 6 s, or, with `strace`, while `strace -c` counts its system calls.
#
#   cargo build --release -p lmts-cli && bench/gateway-profile.sh [perf|strace]
#
# perf writes /tmp/lmts-gateway.perf.data (read it with `perf report -i … --no-children
# --sort dso` and `--sort sym`); strace prints its table, and wrk's request count beside it.
# Needs nginx, wrk, python3 and perf or strace (Debian packages of the same names).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-perf}
case "$MODE" in perf|strace) ;; *) echo "mode: perf or strace" >&2; exit 2 ;; esac
source bench/common.sh
nginx_conf upstream "$UPSTREAM_SERVER"
write_policy
start_lmts 127.0.0.1:19102 --policy "$DIR/policy.toml" --upstream http://127.0.0.1:19100
derive_token 127.0.0.1:19102
sign_get "/orders/1?depth=5" "$DIR/get.lua"
wrk -t1 -c32 -d10s -s "$DIR/get.lua" "http://127.0.0.1:19102/orders/1?depth=5" > "$DIR/wrk.txt" &
WRK_PID=$!
PIDS+=("$WRK_PID")
sleep 2
case "$MODE" in
  perf) perf record -q -F 999 -g -p "$LMTS_PID" -o /tmp/lmts-gateway.perf.data -- sleep 6 ;;
  strace) timeout -s INT 6 strace -c -f -p "$LMTS_PID" || true ;;
esac
wait "$WRK_PID"
grep -E "Requests/sec|requests in" "$DIR/wrk.txt"
