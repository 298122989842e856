#!/usr/bin/env bash
# The kernel client: where /dev/nbd0 exists, attach the export with
# nbd-client, write and read through the block device, detach, and check the
# data through nbdkit again.  Where it does not, say why and report SKIPPED.
. "$(dirname "$0")/lib-filter.sh"
need nbdsh

if [ ! -b /dev/nbd0 ]; then
  modprobe nbd 2>/dev/null || true
  sleep 0.5
fi
if [ ! -b /dev/nbd0 ]; then
  echo "SKIP: /dev/nbd0 does not exist (the nbd kernel module is not loaded and cannot be loaded here)"
  exit 77
fi
command -v nbd-client >/dev/null || { echo "SKIP: nbd-client is not installed"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: attaching /dev/nbd0 needs root"; exit 77; }
if [ "$(cat /sys/block/nbd0/size 2>/dev/null || echo 0)" != 0 ]; then
  echo "SKIP: /dev/nbd0 is in use"
  exit 77
fi

img=$T/disk.img
new_disk "$img" 64M >/dev/null
serve k "$img"
nbd-client -unix "$T/k.sock" /dev/nbd0 -b 4096 >/dev/null || fail "nbd-client attach"
on_exit 'nbd-client -d /dev/nbd0 >/dev/null 2>&1'
head -c $((8 * 1024 * 1024)) /dev/urandom >"$T/plain"
dd if="$T/plain" of=/dev/nbd0 bs=1M oflag=direct status=none || fail "write to /dev/nbd0"
sync
dd if=/dev/nbd0 of="$T/back" bs=1M count=8 iflag=direct status=none || fail "read /dev/nbd0"
cmp "$T/back" "$T/plain" || fail "read back through /dev/nbd0 differs"
nbd-client -d /dev/nbd0 >/dev/null || fail "nbd-client detach"
nbdsh -u "$(uri k)" -c "
d = h.pread(8 * 1024 * 1024, 0)
assert d == open('$T/plain', 'rb').read()
"
no_plaintext_blocks "$T/plain" "$img"
pass "nbd-client: 8 MiB written and read through /dev/nbd0, equal through nbdkit, encrypted in the image"
