#!/usr/bin/env bash
# Image locks are qemu's: qemu-io and qemu-img refuse to write an image the filter
# serves ('Failed to get "write" lock'), nbdcrypt recrypt and encrypt refuse an image
# qemu-nbd serves, and nbdkit with the filter refuses to start (exit 1) on an
# image qemu-nbd serves or a paused nbdcrypt recrypt holds.  The bytes held
# are qemu's layout, read from /proc/locks.
. "$(dirname "$0")/lib-filter.sh"
need qemu-io qemu-img qemu-nbd

img=$T/disk.img
new_disk "$img" 48M >/dev/null
ino=$(stat -c %i "$img")

# locks_of IMAGE-INODE: the byte ranges held on it, "START-END" sorted.
locks_of() { awk -v ino="$1" '$6 ~ ":" ino "$" {print $7 "-" $8}' /proc/locks | sort | tr '\n' ' '; }

serve s1 "$img"
got=$(locks_of "$ino")
# CONSISTENT_READ and WRITE used (100, 101: one range), WRITE and RESIZE
# unshared (201, 203); qemu-nbd over a qcow2 image holds the same plus 103
# (it grows the file), over a raw one 100-101 and 203 only
[ "$got" = "100-101 201-201 203-203 " ] || fail "the filter holds bytes '$got'"
pass "the filter holds qemu's bytes: $got"

must_refuse 1 'Failed to get "write" lock' "$img" -- qemu-io -f raw -c 'write -P 0x55 0 4096' "$img"
must_refuse 1 'Failed to get "write" lock' "$img" -- qemu-img resize -f raw "$img" 64M
pass "qemu-io and qemu-img refuse to write or resize the served image"
server_stop s1

# qemu-nbd serving a plaintext image and the LUKS2 disk
head -c 32M /dev/urandom >"$T/plain.img"
qnbd_start q1 raw "$T/plain.img"
qnbd_start q2 raw "$img"
qpid1=$(cat "$T/q1.qpid") qpid2=$(cat "$T/q2.qpid")
must_refuse 1 "in use by another process \\(pid $qpid2, qemu-nbd\\)" "$img" -- nbdcrypt recrypt "$img"
must_refuse 1 "in use by another process \\(pid $qpid1, qemu-nbd\\)" "$T/plain.img" -- \
  nbdcrypt encrypt "$T/plain.img"
pass "nbdcrypt recrypt and encrypt refuse images qemu-nbd serves"
must_refuse 1 "cannot serve $img: .*in use by another process \\(pid $qpid2, qemu-nbd\\)" "$img" -- \
  "${_nbdkit[@]}" -f -U "$T/no.sock" --filter="$NBDCRYPT_FILTER" file file="$img"
pass "nbdkit with the filter does not start on an image qemu-nbd serves"
qnbd_stop q2
qnbd_stop q1

# A recrypt paused after its first step holds the image (test hook: 20 s per step).
paused_after_first_step recrypt "$img"
re_pid=$PAUSED_PID
must_refuse 1 "cannot serve $img: .*in use by another process \\(pid $re_pid, nbdcrypt\\)" "$img" -- \
  "${_nbdkit[@]}" -f -U "$T/no.sock" --filter="$NBDCRYPT_FILTER" file file="$img"
must_refuse 1 'Failed to get "write" lock' "$img" -- qemu-io -f raw -c 'write 0 4096' "$img"
pass "nbdkit and qemu-io refuse an image a paused recrypt holds"
kill -KILL "$re_pid"
wait "$re_pid" 2>/dev/null || true

# The killed recrypt's lock went with it: the operation resumes and a server starts.
nbdcrypt recrypt "$img" >/dev/null 2>&1 || fail "resuming the killed recrypt"
serve s2 "$img"
nbdsh -u "$(uri s2)" -c 'h.pwrite(b"\x11" * 4096, 0); assert h.pread(4096, 0) == b"\x11" * 4096'
server_stop s2
pass "after the recrypt ended the image is served again"
