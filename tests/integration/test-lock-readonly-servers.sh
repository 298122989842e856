#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# Read-only servers of one image coexist (nbdcrypt serve --readonly passes
# nbdcrypt-lock=readonly to the filter), but still exclude writers: recrypt
# and qemu-io are refused while they serve, and a read-write server does not
# start beside them.  A read-only server does not start beside a read-write one.
. "$(dirname "$0")/lib-filter.sh"
need nbdsh qemu-io

img=$T/disk.img
new_disk "$img" 32M >/dev/null
serve w "$img"
nbdsh -u "$(uri w)" -c 'h.pwrite(b"\x3c" * 65536, 0)'
wpid=$(cat "$T/w.pid")
must_refuse 1 "in use by another process \\(pid $wpid, nbdkit\\)" "$img" -- \
  "$NBDCRYPT" serve "$img" --readonly --socket "$T/ro0.sock" --pidfile "$T/ro0.pid"
pass "a read-only serve does not start beside a read-write server"
server_stop w

u1=$("$NBDCRYPT" serve "$img" --readonly --socket "$T/ro1.sock" --pidfile "$T/ro1.pid" -- -v 2>>"$T/ro1.log")
_servers+=(ro1)
u2=$("$NBDCRYPT" serve "$img" --readonly --socket "$T/ro2.sock" --pidfile "$T/ro2.pid" -- -v 2>>"$T/ro2.log") ||
  fail "a second read-only serve of the image was refused: $(cat "$T/ro2.log")"
_servers+=(ro2)
for u in "$u1" "$u2"; do
  nbdsh -u "$u" -c 'assert h.is_read_only(); assert h.pread(65536, 0) == b"\x3c" * 65536'
done
pass "two read-only serves of one image run side by side and read the data"

rpid=$(cat "$T/ro2.pid")
must_refuse 1 "in use by another process \\(pid [0-9]+, nbdkit\\)" "$img" -- nbdcrypt recrypt "$img"
must_refuse 1 'Failed to get "write" lock' "$img" -- qemu-io -f raw -c 'write 0 4096' "$img"
must_refuse 1 "cannot serve $img: .*in use by another process" "$img" -- \
  "${_nbdkit[@]}" -f -U "$T/no.sock" --filter="$NBDCRYPT_FILTER" file file="$img"
kill -0 "$rpid" || fail "a read-only server died"
pass "read-only servers still exclude recrypt, qemu-io writes and a read-write server"
