#!/usr/bin/env bash
# nbdcrypt serve exits 1 when nbdkit cannot start (its socket or port is
# taken by a server that is already running: a socket is refused before
# nbdkit runs), names why, and leaves the running server, its socket and its
# pidfile alone.
. "$(dirname "$0")/lib-filter.sh"
need nbdsh

new_disk "$T/a.img" 32M >/dev/null
new_disk "$T/b.img" 32M >/dev/null
new_disk "$T/c.img" 32M >/dev/null
u=$("$NBDCRYPT" serve "$T/a.img" --socket "$T/a.sock" --pidfile "$T/a.pid" -- -v 2>>"$T/a.log")
_servers+=(a)
first=$(cat "$T/a.pid")
_servers+=(b tcp2) # stopped at exit should a refused serve wrongly start

# (refused before nbdkit starts: serve sees a server listening on the socket)
must_refuse 1 "^nbdcrypt: cannot serve on $T/a.sock: a server is listening on that socket; stop it first or choose another --socket$" \
  "$T/b.img" -- timeout 60 "$NBDCRYPT" serve "$T/b.img" --socket "$T/a.sock" --pidfile "$T/b.pid"
[ ! -e "$T/b.pid" ] || fail "the refused serve started nbdkit"
[ -S "$T/a.sock" ] || fail "the refused serve removed the running server's socket"
[ "$(cat "$T/a.pid")" = "$first" ] && kill -0 "$first" || fail "the running server is gone"
nbdsh -u "$u" -c 'assert h.get_size() > 0'
pass "a second serve on a taken socket: exit 1, the socket named, the first one untouched"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
u2=$("$NBDCRYPT" serve "$T/c.img" --port "$port" --pidfile "$T/tcp.pid" --readonly -- -v 2>>"$T/tcp.log")
_servers+=(tcp)
[ "$u2" = "nbd://127.0.0.1:$port" ] || fail "TCP serve printed '$u2'"
must_refuse 1 "cannot serve $T/b.img: nbdkit exited with status 1 before listening" "$T/b.img" \
  -- timeout 60 "$NBDCRYPT" serve "$T/b.img" --port "$port" --pidfile "$T/tcp2.pid"
nbdsh -u "$u2" -c 'assert h.is_read_only()'
pass "a second serve on a taken TCP port: exit 1, the first one untouched"
