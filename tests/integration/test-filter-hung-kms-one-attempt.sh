#!/bin/bash
# The retry limiter against a hung KMS (a listener that accepts TCP and never
# answers TLS): 50 connections at once to an export whose KEK lives there
# make exactly one unlock attempt (one TCP connection reaches the listener,
# one attempt in the filter's log); the connections that arrive while it runs
# wait for it, none starts another, and every client is refused within the
# attempt's time-out plus a little (asserted with a generous bound, 3x
# time-out + 1 s: the bug this guards against made the 50th wait 250 s).
# Connections after the attempt fail at once with its error.
# nbdcrypt-test: serial
. "$(dirname "${BASH_SOURCE[0]}")/lib-filter.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
need nbdinfo
kms_init
kms_start a
kms_config "$T/good.json" alice "127.0.0.1:$(kms_port a)"
nbdcrypt --config "$T/good.json" format "$T/disk.img" --size 24M --provider kms >/dev/null

# The hung KMS: accepts, counts, never answers; the count is in $T/accepted.
hung=$(kms_free_port)
$PY -c 'import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(128)
held = []
deadline = time.time() + 120
s.settimeout(1)
while time.time() < deadline:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    held.append(c)
    with open(sys.argv[2], "w") as f:
        f.write("%d\n" % len(held))' "$hung" "$T/accepted" &
listener=$!
on_exit "kill $listener 2>/dev/null"
kms_wait_port "$hung" || fail "hung listener did not start"
# kms_wait_port's own probe connection counts once: start the count after it
for ((i = 0; i < 50; i++)); do [ -s "$T/accepted" ] && break; sleep 0.1; done
probes=$(cat "$T/accepted" 2>/dev/null || echo 0)
timeout_ms=5000
KMS_TIMEOUT_MS=$timeout_ms kms_config "$T/hung.json" alice "127.0.0.1:$hung"

serve h "$T/disk.img" nbdcrypt-config="$T/hung.json"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
t0=$(now_ms)
pids=()
for ((i = 0; i < 50; i++)); do
  (
    s=$(now_ms)
    if nbdinfo --size "$(uri h)" >/dev/null 2>"$T/c$i.err"; then echo ok >"$T/c$i.rc"; else echo refused >"$T/c$i.rc"; fi
    echo $(($(now_ms) - s)) >"$T/c$i.ms"
  ) &
  pids+=($!)
done
on_exit 'for _p in "${pids[@]}"; do kill "$_p" 2>/dev/null; done'
# every client answered, waiting at most the bound (never 50 attempts in a row)
bound_ms=$((3 * (timeout_ms + 1000)))
while :; do
  done_count=$(ls "$T" | grep -c '^c[0-9]*\.ms$' || true)
  [ "$done_count" = 50 ] && break
  (($(now_ms) - t0 <= bound_ms)) ||
    fail "$((50 - done_count)) clients still waiting after $bound_ms ms; the hung KMS saw $(($(cat "$T/accepted") - probes)) connections"
  sleep 0.1
done
for p in "${pids[@]}"; do wait "$p"; done
total=$(($(now_ms) - t0))

max=0
for ((i = 0; i < 50; i++)); do
  [ "$(cat "$T/c$i.rc")" = refused ] || fail "client $i was served by a hung KMS"
  ms=$(cat "$T/c$i.ms")
  ((ms > max)) && max=$ms
done
server_alive h || fail "the server died"
accepted=$(($(cat "$T/accepted") - probes))
[ "$accepted" = 1 ] || fail "the hung KMS saw $accepted connections, expected 1"
attempts=$(grep -Ec "nbdcrypt: export '': cannot unlock: .*127\.0\.0\.1:$hung" "$T/h.log" || true)
repeats=$(grep -Ec "nbdcrypt: export '': cannot unlock: .*\(retrying at most every 5 s\)" "$T/h.log" || true)
[ $((attempts - repeats)) = 1 ] || fail "$((attempts - repeats)) unlock attempts in the log"
((max <= bound_ms)) || fail "slowest client took $max ms (time-out $timeout_ms ms)"
pass "50 clients against a hung KMS: 1 connection to it, 1 attempt, $repeats told its error; slowest $max ms, all in $total ms (time-out $timeout_ms ms)"

# right after: at once, the last attempt's error, no new connection
s=$(now_ms)
if nbdinfo --size "$(uri h)" >/dev/null 2>&1; then fail "served after the attempt"; fi
after=$(($(now_ms) - s))
[ $(($(cat "$T/accepted") - probes)) = 1 ] || fail "a connection inside the window reached the KMS"
((after < timeout_ms)) || fail "a connection inside the window took $after ms"
pass "a connection inside the window fails in $after ms with the last error"
server_stop h
