# Sourced by the bench scripts (after `set -euo pipefail` and `cd` to the repository): a
# scratch directory cleaned up on exit with every process started, nginx, lmts, a token,
# signed requests for wrk, and wrk's row of a Markdown table.
#
# Sets DIR (the scratch directory), LMTS (the binary: $LMTS, else target/release/lmts) and
# PIDS (processes to stop on exit; nginx ones are found by their pid files in DIR).
LMTS=${LMTS:-target/release/lmts}
DIR=$(mktemp -d "/tmp/lmts-$(basename "$0" .sh).XXXXXX")
PIDS=()
cleanup() {
  local pidfile
  for pidfile in "$DIR"/*.pid; do
    if [ -e "$pidfile" ]; then PIDS+=("$(cat "$pidfile")"); fi
  done
  if [ ${#PIDS[@]} -gt 0 ]; then kill "${PIDS[@]}" 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT

# An nginx of one worker (or $2) named NAME, serving the `http` block's BODY, daemonised with
# its pid in $DIR/NAME.pid.
nginx_conf() { # name, body, [workers]
  local user=""; [ "$(id -u)" = 0 ] && user="user root;"
  cat > "$DIR/$1.conf" <<CONF
daemon on; $user worker_processes ${3:-1}; pid $DIR/$1.pid; error_log $DIR/$1.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $DIR/cb; proxy_temp_path $DIR/pt;
  fastcgi_temp_path $DIR/ft; uwsgi_temp_path $DIR/ut; scgi_temp_path $DIR/st; $2 }
CONF
  nginx -p "$DIR" -c "$DIR/$1.conf"
}

# The trivial upstream every gateway bench fronts: 200 "ok" on 127.0.0.1:19100.
UPSTREAM_SERVER='server { listen 127.0.0.1:19100; keepalive_requests 1000000; location / { return 200 "ok\n"; } }'

# nginx proxy_pass on 127.0.0.1:19101 in front of that upstream, with pooled connections.
PROXY_SERVER='upstream api { server 127.0.0.1:19100; keepalive 64; }
  server { listen 127.0.0.1:19101; keepalive_requests 1000000;
    location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; } }'

# The route policy of the gateway benches ($DIR/policy.toml): /orders/** needs `trading`,
# GET /public/** is public.
write_policy() {
  printf 'default = "deny"\n[[route]]\nmethod = "*"\npath = "/orders/**"\nscopes = ["trading"]\n[[route]]\nmethod = "GET"\npath = "/public/**"\npublic = true\n' > "$DIR/policy.toml"
}

# `lmts serve --dev` on LISTEN with the data directory $DIR/data, limits off, and OPTIONS;
# waits for /health (over HTTPS, trusting the --tls-cert file, when the options name one) and
# sets LMTS_PID.
start_lmts() { # listen, options...
  local listen=$1; shift
  LMTS_LOG=warn "$LMTS" serve --dev --listen "$listen" --data-dir "$DIR/data" \
    --rate-limit-per-minute 0 --auth-failures-per-minute 0 "$@" 2>> "$DIR/lmts.log" &
  LMTS_PID=$!
  PIDS+=("$LMTS_PID")
  local url="http://$listen/health" curl_options=() previous=""
  for option in "$@"; do
    if [ "$previous" = --tls-cert ]; then url="https://$listen/health"; curl_options=(--cacert "$option"); fi
    previous=$option
  done
  for _ in $(seq 100); do
    curl -sf "${curl_options[@]}" "$url" >/dev/null && return
    kill -0 "$LMTS_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "lmts on $listen did not start: $(tail -3 "$DIR/lmts.log")" >&2; return 1
}

# Derives a token through the plain listener LISTEN; sets token and secret.
derive_token() { # listen
  local identity
  identity=$("$LMTS" dev identity-token --account 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed --data-dir "$DIR/data")
  curl -sf -X POST "http://$1/auth/api-tokens/derive" -H "identity: Bearer $identity" -d '{}' > "$DIR/token.json"
  token=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tokenId'])" "$DIR/token.json")
  secret=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['secret'])" "$DIR/token.json")
}

# Writes a wrk script whose every request is a GET of TARGET signed now (SPEC A4): sign just
# before each run, since the signature's time must stay within the window.
sign_get() { # target, script
  python3 - "$token" "$secret" "$1" > "$2" <<'PY'
import base64, datetime, hashlib, hmac, sys
token, secret, target = sys.argv[1:4]
now = datetime.datetime.now(datetime.timezone.utc)
ts = now.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (now.microsecond // 1000)
sig = base64.b64encode(hmac.new(base64.b64decode(secret), f"{ts}\nGET\n{target}\n".encode(), hashlib.sha256).digest()).decode()
print(f'wrk.headers["lmts-api-key"] = "{token}"\nwrk.headers["lmts-timestamp"] = "{ts}"\nwrk.headers["lmts-signature"] = "{sig}"')
PY
}

# Writes a wrk script of distinct 256-byte POSTs to URL_TARGET whose signatures (over
# SIGNED_TARGET) are made now: sign just before each run, as for GETs.
sign_posts() { # url target, signed target, script
  python3 bench/presign.py "$token" "$secret" "$1" "$2" 400000 "$3"
}

# Runs wrk (one thread, CONNS connections, SECS seconds) on URL with SCRIPT and prints the
# row `| NAME | req/s | p50 | p99 | non-2xx |`.
wrk_row() { # name, url, script
  local out; out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$3" "$2")
  local rps p50 p99 bad
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  p50=$(awk '$1 == "50%" {print $2}' <<< "$out")
  p99=$(awk '$1 == "99%" {print $2}' <<< "$out")
  bad=$(awk '/Non-2xx/ {print $5}' <<< "$out")
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$rps" "$p50" "$p99" "${bad:-0}"
}
