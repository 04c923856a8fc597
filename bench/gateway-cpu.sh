#!/usr/bin/env bash
# What a proxied request costs in CPU (BENCHMARKS.md, "Issue #13"): user and system time per
# request of nginx's proxy worker, of a bare hyper reverse proxy (the stack's ceiling: nothing
# checked, logged or counted) and of `lmts serve --policy --upstream`, each alone in front of
# the same one-worker nginx upstream, under wrk. On a machine where the load generator and the
# upstream share the cores, throughput follows this cost.
#
#   cargo build --release -p lmts-cli && cargo build --release -p lmts-server --example bare_proxy
#   bench/gateway-cpu.sh [SECONDS]
#
# Needs nginx, wrk and python3 (Debian packages of the same names); LMTS names the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
SECS=${1:-6}
CONNS=32
BARE=${BARE:-target/release/examples/bare_proxy}
for binary in "$LMTS" "$BARE"; do
  [ -x "$binary" ] || { echo "$binary is missing: build it (see the top of this script)" >&2; exit 2; }
done
nginx_conf upstream "$UPSTREAM_SERVER"
nginx_conf proxy "$PROXY_SERVER"
"$BARE" 127.0.0.1:19103 127.0.0.1:19100 & BARE_PID=$!
PIDS+=("$BARE_PID")
write_policy
start_lmts 127.0.0.1:19102 --policy "$DIR/policy.toml" --upstream http://127.0.0.1:19100
derive_token 127.0.0.1:19102
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
measure() { # name, pid, url, script
  local before after
  before=$(ticks "$2")
  wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$4" "$3" > "$DIR/wrk.txt"
  after=$(ticks "$2")
  python3 - "$1" "$before" "$after" "$(getconf CLK_TCK)" "$DIR/wrk.txt" <<'PY'
import re, sys
name, before, after, hz = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
out = open(sys.argv[5]).read()
n = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
user, sys_ = ((int(b) - int(a)) / hz / n * 1e6 for a, b in zip(before, after))
print(f"| {name} | {rps:,.0f} | {user:.1f} | {sys_:.1f} | {user + sys_:.1f} | {bad.group(1) if bad else 0} |")
PY
}
proxy_worker=$(pgrep -P "$(cat "$DIR/proxy.pid")")
echo "wrk -t1 -c$CONNS, ${SECS} s each; CPU of the process named, per request"
echo "| scenario | req/s | user µs | system µs | total µs | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|"
printf '' > "$DIR/plain.lua"
sign_get "/orders/1?depth=5" "$DIR/get.lua"
measure "nginx proxy_pass, GET (its worker)" "$proxy_worker" "http://127.0.0.1:19101/orders/1?depth=5" "$DIR/get.lua"
measure "bare hyper proxy, GET" "$BARE_PID" "http://127.0.0.1:19103/orders/1?depth=5" "$DIR/get.lua"
sign_get "/orders/1?depth=5" "$DIR/get.lua"
measure "lmts gateway, signed GET" "$LMTS_PID" "http://127.0.0.1:19102/orders/1?depth=5" "$DIR/get.lua"
measure "lmts gateway, public GET" "$LMTS_PID" "http://127.0.0.1:19102/public/1?depth=5" "$DIR/plain.lua"
sign_posts /orders/1 /orders/1 "$DIR/post.lua"
measure "nginx proxy_pass, signed 256-byte POST (its worker)" "$proxy_worker" http://127.0.0.1:19101 "$DIR/post.lua"
measure "bare hyper proxy, signed 256-byte POST" "$BARE_PID" http://127.0.0.1:19103 "$DIR/post.lua"
sign_posts /orders/1 /orders/1 "$DIR/post.lua"
measure "lmts gateway, signed 256-byte POST" "$LMTS_PID" http://127.0.0.1:19102 "$DIR/post.lua"
measure "lmts /health" "$LMTS_PID" http://127.0.0.1:19102/health "$DIR/plain.lua"
measure "nginx upstream, GET direct" "$(pgrep -P "$(cat "$DIR/upstream.pid")")" "http://127.0.0.1:19100/orders/1?depth=5" "$DIR/plain.lua"
