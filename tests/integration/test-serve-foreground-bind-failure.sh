#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# serve --foreground on a port already taken: exit 1 with nbdkit's reason
# and never "serving ... on" (it is printed only once nbdkit listens).
. "$(dirname "$0")/lib.sh"
need nbdkit

nbdcrypt format "$T/disk.img" --size 32M >/dev/null
# hold a loopback port: a listening socket of our own python
"$PY" - "$T/port" <<'PYEOF' &
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1])); __import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
PYEOF
holder=$!
on_exit "kill $holder 2>/dev/null"
for ((i = 0; i < 100; i++)); do [ -s "$T/port" ] && break; sleep 0.1; done
port=$(cat "$T/port")
must_refuse 1 "cannot serve $T/disk.img: nbdkit exited with status 1 before listening" "$T/disk.img" \
  -- nbdcrypt serve "$T/disk.img" --port "$port" --foreground
grep -q "Address already in use" "$T/must_refuse.err" || fail "no bind reason: $(cat "$T/must_refuse.err")"
if grep -q "serving" "$T/must_refuse.out" "$T/must_refuse.err"; then fail "said serving before the bind failed"; fi
pass "serve --foreground reports the bind failure and never says serving"

# --json: the failure is an error event on stdout, and no ready event.
must_refuse 1 "before listening" "$T/disk.img" \
  -- nbdcrypt serve "$T/disk.img" --port "$port" --foreground --json
"$PY" - "$T/must_refuse.out" <<'PYEOF' || fail "serve --json: $(cat "$T/must_refuse.out")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
assert [e["event"] for e in ev] == ["error"], ev
assert "nbdkit exited with status 1 before listening" in ev[0]["message"], ev
PYEOF
pass "serve --foreground --json: an error event, no ready event"
