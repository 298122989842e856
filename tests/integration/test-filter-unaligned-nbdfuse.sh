#!/usr/bin/env bash
# The export advertises a minimum block size of 1, so byte-granular writes
# reach the filter's read-modify-write: dd bs=100 through nbdfuse (at offsets
# that are not multiples of 512) succeeds (with a minimum of 512 nbdfuse
# failed it with EINVAL), reads back through the mount, and after a restart
# of the server the bytes around every write are unchanged.
. "$(dirname "$0")/lib-filter.sh"
need nbdsh dd cmp

fuse_setup

img=$T/disk.img
new_disk "$img" 48M >/dev/null
region=$((1024 * 1024))
head -c $region /dev/urandom >"$T/model"
serve fu "$img"
nbdcopy "$T/model" "$(uri fu)"
min=$(nbdsh -u "$(uri fu)" -c 'print(h.get_block_size(nbd.SIZE_MINIMUM))')
[ "$min" = 1 ] || fail "minimum block size $min, expected 1"
fuse_mount "$(uri fu)"

# 100-byte blocks: 37 at byte 3700 (seek=37), 5 at byte 409500, 1 at byte 999900.
head -c 4200 /dev/urandom >"$T/new"
for w in "37 37" "4095 5" "9999 1"; do
  set -- $w
  dd if="$T/new" of="$mnt/disk" bs=100 seek="$1" count="$2" conv=notrunc status=none 2>"$T/dd.err" ||
    fail "dd bs=100 seek=$1 count=$2 through nbdfuse: $(cat "$T/dd.err")"
  dd if="$T/new" of="$T/model" bs=100 seek="$1" count="$2" conv=notrunc status=none
done
sync "$mnt/disk"
cmp_range "$mnt/disk" 0 "$T/model" 0 $region || fail "read back through the mount differs"
pass "dd bs=100 at unaligned offsets through nbdfuse: written, read back through the mount"
fuse_umount
server_stop fu

# Past every cache: a new server, every byte of the region as the model says.
serve fu2 "$img"
nbdsh -u "$(uri fu2)" -c "import sys; sys.stdout.buffer.write(h.pread($region, 0))" >"$T/back"
server_stop fu2
cmp_range "$T/back" 0 "$T/model" 0 $region || fail "after a restart the region differs from the model"
pass "after a restart: the written bytes and every neighbouring byte as expected"
