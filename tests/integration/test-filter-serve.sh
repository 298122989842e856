#!/usr/bin/env bash
# nbdcrypt serve: runs nbdkit with the filter over the file plugin (a path) or
# the nbd plugin (an NBD URI), passes --config on, finds the filter beside the
# binary in a build tree, and prints the URI clients use.
. "$(dirname "$0")/lib-filter.sh"
need nbdinfo nbdsh

img=$T/disk.img
new_disk "$img" 64M >/dev/null

# --dry-run shows the command line.
out=$(nbdcrypt --config "$CFG" serve "$img" --socket "$T/a.sock" --readonly --dry-run)
cmd=$(head -1 <<<"$out")
for want in "-r" "-U $T/a.sock" "--filter=$NBDCRYPT_FILTER" "file file=$img" "nbdcrypt-config=$CFG"; do
  grep -qF -- "$want" <<<"$cmd" || fail "dry-run command lacks '$want': $cmd"
done
[ "$(tail -1 <<<"$out")" = "nbd+unix:///?socket=$T/a.sock" ] || fail "dry-run URI: $out"
out=$(nbdcrypt serve "nbd+unix:///?socket=$T/x.sock" --port 10999 --dry-run -- --threads=4)
grep -qF -- "-i 127.0.0.1 -p 10999" <<<"$out" || fail "TCP dry run: $out"
grep -qF -- "nbd 'uri=nbd+unix:///?socket=$T/x.sock' --threads=4" <<<"$out" || fail "nbd plugin dry run: $out"
[ "$(tail -1 <<<"$out")" = "nbd://127.0.0.1:10999" ] || fail "TCP URI: $out"
# Without NBDCRYPT_FILTER the build tree's filter is found beside the binary.
out=$(env -u NBDCRYPT_FILTER "$NBDCRYPT" serve "$img" --socket "$T/a.sock" --dry-run)
grep -q -- "--filter=/.*/plugins/nbdkit-nbdcrypt-filter.so" <<<"$out" || fail "filter not found: $out"
pass "dry runs: file and nbd plugins, socket and TCP, config passed, filter found"

# Bad usage: exit status 2.
set +e
nbdcrypt serve "$img" --socket a --port 1 >/dev/null 2>&1; rc1=$?
nbdcrypt serve >/dev/null 2>&1; rc2=$?
nbdcrypt serve "$img" extra >/dev/null 2>&1; rc3=$?
set -e
[ "$rc1$rc2$rc3" = 222 ] || fail "bad usage exit statuses: $rc1 $rc2 $rc3"
pass "bad usage exits 2"

# In the background: prints the URI once nbdkit listens.  nbdkit's own
# options after "--"; -v logs each handle's open and close, which server_stop
# waits for.
u=$(nbdcrypt serve "$img" --socket "$T/bg.sock" --pidfile "$T/bg.pid" -- -v --log=stderr 2>>"$T/bg.log")
_servers+=(bg)
[ "$u" = "nbd+unix:///?socket=$T/bg.sock" ] || fail "printed URI: $u"
nbdsh -u "$u" -c 'h.pwrite(b"\x42" * 4096, 0); assert h.pread(4096, 0) == b"\x42" * 4096'
server_stop bg
pass "serve in the background: $u works"

# In the foreground, read-only: nbdkit runs as serve's child, serve prints
# the URI once the disk unlocks and exits 0 when nbdkit is stopped.
"$NBDCRYPT" serve "$img" --socket "$T/fg.sock" --pidfile "$T/fg.pid" --readonly --foreground \
  -- -v >"$T/fg.out" 2>"$T/fg.log" &
serve_pid=$!
_servers+=(fg)
for ((i = 0; i < 100; i++)); do grep -qF "$T/fg.sock" "$T/fg.out" && break; sleep 0.1; done
grep -qF "serving $img on nbd+unix:///?socket=$T/fg.sock" "$T/fg.out" ||
  fail "foreground URI not printed: $(cat "$T/fg.out" "$T/fg.log")"
[ -S "$T/fg.sock" ] || fail "foreground server did not start: $(cat "$T/fg.log")"
[ "$(ps -o ppid= -p "$(cat "$T/fg.pid")" | tr -d ' ')" = "$serve_pid" ] ||
  fail "foreground serve is not the parent of nbdkit $(cat "$T/fg.pid")"
nbdsh -u "nbd+unix:///?socket=$T/fg.sock" -c '
assert h.is_read_only()
assert h.pread(4096, 0) == b"\x42" * 4096
'
server_stop fg
rc=0
wait "$serve_pid" || rc=$?
[ "$rc" = 0 ] || fail "foreground serve exited $rc after nbdkit was stopped"
pass "serve --foreground --readonly: nbdkit as its child, read-only export, exit 0 on stop"
