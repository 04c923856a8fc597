#!/usr/bin/env python3
# Writes, for wrk, N signatures of distinct 256-byte POSTs (SPEC A4) and a script that sends them in turn.
import sys, hmac, hashlib, base64, datetime
tok, sec, target, signed_target, n, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
key = base64.b64decode(sec)
now = datetime.datetime.now(datetime.timezone.utc)
ts = now.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (now.microsecond // 1000)
def body(i):
    head = '{"n":%d,"market":"btc-usd","side":"buy","pad":"' % i
    return head + 'x' * (254 - len(head)) + '"}'
with open(out + '.sigs', 'w') as f:
    for i in range(n):
        msg = f"{ts}\nPOST\n{signed_target}\n{body(i)}"
        f.write(base64.b64encode(hmac.new(key, msg.encode(), hashlib.sha256).digest()).decode() + '\n')
with open(out, 'w') as f:
    f.write('''local r, i = {}, 0
local n = 0
for sig in io.lines("%s.sigs") do
  local head = '{"n":' .. n .. ',"market":"btc-usd","side":"buy","pad":"'
  local body = head .. string.rep("x", 254 - #head) .. '"}'
  n = n + 1
  r[n] = wrk.format("POST", "%s", {["lmts-api-key"]="%s",["lmts-timestamp"]="%s",["lmts-signature"]=sig,["content-type"]="application/json"}, body)
end
request = function() i = i %% n + 1 return r[i] end
''' % (out, target, tok, ts))
