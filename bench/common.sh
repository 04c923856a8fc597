# Sourced by the bench scripts: starting lmts, deriving a token, signing a GET for wrk.
# Expects LMTS (the binary) and DIR (a scratch directory) to be set.

# `lmts serve --dev` on LISTEN with the data directory $DIR/data, limits off, and OPTIONS;
# waits for /health (over HTTPS when the options name a certificate) and sets LMTS_PID.
start_lmts() { # listen, options...
  local listen=$1; shift
  LMTS_LOG=warn "$LMTS" serve --dev --listen "$listen" --data-dir "$DIR/data" \
    --rate-limit-per-minute 0 --auth-failures-per-minute 0 "$@" 2>> "$DIR/lmts.log" &
  LMTS_PID=$!
  local url="http://$listen/health" curl_options=()
  if [[ " $* " == *" --tls-cert "* ]]; then
    url="https://$listen/health"; curl_options=(--cacert "$DIR/cert.pem")
  fi
  for _ in $(seq 100); do curl -sf "${curl_options[@]}" "$url" >/dev/null && return; sleep 0.1; done
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
