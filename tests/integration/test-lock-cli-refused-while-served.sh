#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# One writer per disk: recrypt, decrypt, format --force and encrypt refuse an
# image that nbdkit with the filter (file plugin) or "nbdcrypt serve" is
# serving: exit 1, "in use by another process (pid PID, nbdkit)" (recrypt:
# pointing to the filter key nbdcrypt-reencrypt=recrypt), the image
# byte for byte unchanged, and the server still serves what was written
# through it.  A second "nbdcrypt serve" of the image is refused as well.
. "$(dirname "$0")/lib-filter.sh"

img=$T/disk.img
new_disk "$img" 48M >/dev/null
head -c 1M /dev/urandom >"$T/data"

refuse_all() { # SERVER-PID WHAT
  local pid=$1 what=$2 re
  re="$img is in use by another process \\(pid $pid, nbdkit\\)"
  must_refuse 1 "$re.*; to recrypt a disk while it is served, let its server do it: filter key nbdcrypt-reencrypt=recrypt \\(nbdcrypt serve --recrypt\\)$" \
    "$img" -- nbdcrypt recrypt "$img"
  must_refuse 1 "$re" "$img" -- nbdcrypt decrypt "$img"
  must_refuse 1 "$re" "$img" -- nbdcrypt format --force "$img"
  must_refuse 1 "$re" "$img" -- nbdcrypt encrypt "$img"
  pass "$what: recrypt, decrypt, format --force, encrypt refused (image unchanged)"
}

# nbdkit --filter=nbdcrypt file file=IMAGE
serve s1 "$img"
nbdcopy "$T/data" "$(uri s1)"
refuse_all "$(cat "$T/s1.pid")" "nbdkit --filter=nbdcrypt file"
nbdsh -u "$(uri s1)" -c "open('$T/back1', 'wb').write(h.pread(1048576, 0))"
cmp_range "$T/data" 0 "$T/back1" 0 1048576 || fail "data read back through nbdkit after the refusals"
pass "nbdkit still serves the data written before the refusals"
server_stop s1

# nbdcrypt serve IMAGE (nbdkit in the background: the lock moved with it)
u=$(nbdcrypt serve "$img" --socket "$T/bg.sock" --pidfile "$T/bg.pid" -- -v --log=stderr 2>>"$T/bg.log")
_servers+=(bg)
nbdsh -u "$u" -c 'h.pwrite(b"\x5a" * 65536, 1048576)'
refuse_all "$(cat "$T/bg.pid")" "nbdcrypt serve"

# A second server of the same image does not start.
must_refuse 1 "in use by another process \\(pid $(cat "$T/bg.pid"), nbdkit\\)" "$img" -- \
  nbdcrypt serve "$img" --socket "$T/second.sock" --pidfile "$T/second.pid"
[ ! -e "$T/second.pid" ] || fail "the second nbdcrypt serve left a server running"
pass "a second nbdcrypt serve of the image is refused"

nbdsh -u "$u" -c "
data = open('$T/data', 'rb').read()
assert h.pread(1048576, 0) == data, 'data written through the first server'
assert h.pread(65536, 1048576) == b'\x5a' * 65536, 'data written through nbdcrypt serve'
"
pass "nbdcrypt serve still serves both writes after the refusals"
server_stop bg

# Once the server is gone, the same command goes through.
nbdcrypt recrypt "$img" >/dev/null 2>&1 || fail "recrypt after the server stopped"
pass "recrypt runs once the image is no longer served"
