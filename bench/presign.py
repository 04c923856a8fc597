#!/usr/bin/env python3
# Writes, for wrk, N signatures of distinct 256-byte POSTs (SPEC A4) and a script that sends them in turn.
import sys, hmac, hashlib, base64, datetime
tok, sec, target, signed_target, n, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
key = base64.b64decode(sec)
start = datetime.datetime.now(datetime.timezone.utc)
def stamp(i):
    # Twenty requests a millisecond from now on, as clients that sign as they send would.
    at = start + datetime.timedelta(milliseconds=i // 20)
    return at.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (at.microsecond // 1000)
def body(i):
    head = '{"n":%d,"market":"btc-usd","side":"buy","pad":"' % i
    return head + 'x' * (254 - len(head)) + '"}'
with open(out + '.sigs', 'w') as f:
    for i in range(n):
        msg = f"{stamp(i)}\nPOST\n{signed_target}\n{body(i)}"
        sig = base64.b64encode(hmac.new(key, msg.encode(), hashlib.sha256).digest()).decode()
        f.write(f"{stamp(i)} {sig}\n")
with open(out, 'w') as f:
    f.write('''local r, i = {}, 0
local n = 0
for line in io.lines("%s.sigs") do
  local ts, sig = line:match("(%%S+) (%%S+)")
  local head = '{"n":' .. n .. ',"market":"btc-usd","side":"buy","pad":"'
  local body = head .. string.rep("x", 254 - #head) .. '"}'
  n = n + 1
  r[n] = wrk.format("POST", "%s", {["lmts-api-key"]="%s",["lmts-timestamp"]=ts,["lmts-signature"]=sig,["content-type"]="application/json",["host"]="127.0.0.1"}, body)
end
request = function() i = i %% n + 1 return r[i] end
''' % (out, target, tok))
