#!/usr/bin/env bash
# serve --socket PATH: a socket left at PATH by a server that is gone
# (connect() refused) is removed and served on; a socket a server listens on
# is refused naming it (exit 1, that server untouched); a file at PATH that
# is not a socket is refused and left as it was.
. "$(dirname "$0")/lib-filter.sh"
need nbdinfo

nbdcrypt format "$T/disk.img" --size 32M >/dev/null
sock=$T/disk.sock
uri="nbd+unix:///?socket=$sock"

# A stale socket: bound by a process that then exited (nobody listens).
"$PY" -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$sock"
[ -S "$sock" ] || fail "no stale socket made"
nbdcrypt serve "$T/disk.img" --socket "$sock" --pidfile "$T/a.pid" >"$T/out" 2>"$T/err" ||
  fail "serve over a stale socket: $(cat "$T/err")"
on_exit "kill \$(cat $T/a.pid) 2>/dev/null"
grep -qx "nbdcrypt: removed the stale socket $sock (no server listens on it)" "$T/err" ||
  fail "no word of the stale socket: $(cat "$T/err")"
nbdinfo --size "$uri" >/dev/null || fail "not served after replacing the stale socket"
pass "a stale socket is replaced"

# A live one: the server just started listens there.
must_refuse 1 "^nbdcrypt: cannot serve on $sock: a server is listening on that socket; stop it first or choose another --socket$" \
  "$T/disk.img" -- nbdcrypt serve "$T/disk.img" --socket "$sock" --readonly
kill -0 "$(cat "$T/a.pid")" || fail "the live server died"
# the look at the socket takes the server's greeting: no failed handshake logged
if grep -q "handshake" "$T/err"; then fail "the live server logged: $(grep handshake "$T/err")"; fi
nbdinfo --size "$uri" >/dev/null || fail "the live server no longer serves"
stop_pid "$(cat "$T/a.pid")"
pass "a socket a server listens on is refused"

# Not a socket.
rm -f "$sock"
echo "keep me" >"$sock"
must_refuse 1 "^nbdcrypt: cannot serve on $sock: it exists and is not a socket; refusing to replace it$" \
  "$sock" -- nbdcrypt serve "$T/disk.img" --socket "$sock"
[ "$(cat "$sock")" = "keep me" ] || fail "the file at the socket path changed"
pass "a file that is not a socket is refused and kept"
