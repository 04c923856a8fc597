#!/usr/bin/env bash
# The gateway under wrk, next to nginx, in one run (BENCHMARKS.md, "The gateway under load"):
# a trivial upstream (nginx answering 200), nginx proxy_pass in front of it, and
# `lmts serve --policy --upstream` (token service and gateway in one process) in front of it.
# Signed POSTs are distinct (each is recorded for replay), so their signatures are made
# beforehand by bench/presign.py (nginx is sent the same ones too: wrk's cost is then the same
# on both sides); a signed GET may be repeated within the window.
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
LMTS=${LMTS:-target/release/lmts}
DIR=$(mktemp -d /tmp/lmts-gateway-bench.XXXXXX)
trap 'kill $(cat "$DIR"/nginx.pid) "$LMTS_PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT
user=""; [ "$(id -u)" = 0 ] && user="user root;"
cat > "$DIR/nginx.conf" <<CONF
daemon on; $user worker_processes ${NGINX_WORKERS:-auto}; pid $DIR/nginx.pid; error_log $DIR/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $DIR/cb; proxy_temp_path $DIR/pt;
  fastcgi_temp_path $DIR/ft; uwsgi_temp_path $DIR/ut; scgi_temp_path $DIR/st;
  server { listen 127.0.0.1:19100; keepalive_requests 1000000; location / { return 200 "ok\n"; } }
  upstream api { server 127.0.0.1:19100; keepalive 64; }
  server { listen 127.0.0.1:19101; keepalive_requests 1000000;
    location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
nginx -p "$DIR" -c "$DIR/nginx.conf"
printf 'default = "deny"\n[[route]]\nmethod = "*"\npath = "/orders/**"\nscopes = ["trading"]\n' > "$DIR/policy.toml"
start_lmts 127.0.0.1:19102 --policy "$DIR/policy.toml" --upstream http://127.0.0.1:19100
derive_token 127.0.0.1:19102

printf 'wrk.method = "POST"\nwrk.body = string.rep("x", 256)\n' > "$DIR/unsigned.lua"
run() { # name, url, script
  local out; out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$3" "$2")
  local rps p50 p99 bad
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  p50=$(awk '$1 == "50%" {print $2}' <<< "$out")
  p99=$(awk '$1 == "99%" {print $2}' <<< "$out")
  bad=$(awk '/Non-2xx/ {print $5}' <<< "$out")
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$rps" "$p50" "$p99" "${bad:-0}"
}
signed() { # url target, signed target, script
  python3 bench/presign.py "$token" "$secret" "$1" "$2" 400000 "$DIR/$3"
}
echo "wrk -t1 -c$CONNS, ${SECS} s each, nginx workers: ${NGINX_WORKERS:-auto}"
echo "| scenario | req/s | p50 | p99 | non-2xx |"
echo "|---|---:|---:|---:|---:|"
run "nginx proxy_pass, unsigned 256-byte POST" http://127.0.0.1:19101/orders/1 "$DIR/unsigned.lua"
signed /orders/1 /orders/1 post.lua
run "nginx proxy_pass, the signed POSTs" http://127.0.0.1:19101 "$DIR/post.lua"
run "lmts gateway, signed 256-byte POST" http://127.0.0.1:19102 "$DIR/post.lua"
printf '' > "$DIR/plain.lua"
run "nginx proxy_pass, GET" "http://127.0.0.1:19101/orders/1?depth=5" "$DIR/plain.lua"
sign_get "/orders/1?depth=5" "$DIR/get.lua"
run "lmts gateway, signed GET" "http://127.0.0.1:19102/orders/1?depth=5" "$DIR/get.lua"
run "upstream direct, GET" "http://127.0.0.1:19100/orders/1?depth=5" "$DIR/plain.lua"
run "lmts /health" http://127.0.0.1:19102/health "$DIR/plain.lua"
signed /ext-authz/orders/1 /orders/1 authz.lua
run "lmts /ext-authz, signed 256-byte POST" http://127.0.0.1:19102 "$DIR/authz.lua"
