#!/usr/bin/env bash
# A real filesystem: the export mounted as a file with nbdfuse, mkfs.ext4 on
# it, files written with debugfs -w, e2fsck -fn clean, and after restarting
# nbdkit the files read back equal and the filesystem is still clean.
. "$(dirname "$0")/lib-filter.sh"
need mkfs.ext4 debugfs e2fsck cmp

fuse_setup

img=$T/disk.img
new_disk "$img" 80M >/dev/null
serve fs "$img"
fuse_mount "$(uri fs)"
mkfs.ext4 -q -F -b 4096 "$mnt/disk" || fail "mkfs.ext4"

head -c $((3 * 1024 * 1024 + 123)) /dev/urandom >"$T/big"
seq 1 20000 >"$T/numbers"
printf 'hello, encrypted world\n' >"$T/small"
debugfs -w "$mnt/disk" -f - >"$T/debugfs.log" 2>&1 <<EOF || fail "debugfs -w"
mkdir dir
write $T/big dir/big
write $T/numbers numbers
write $T/small dir/small
EOF
e2fsck -fn "$mnt/disk" >"$T/fsck.log" 2>&1 || { cat "$T/fsck.log" >&2; fail "e2fsck -fn before restart"; }
pass "mkfs.ext4 + debugfs -w through nbdfuse; e2fsck -fn clean"
fuse_umount
server_stop fs

serve fs2 "$img"
fuse_mount "$(uri fs2)"
e2fsck -fn "$mnt/disk" >"$T/fsck.log" 2>&1 || { cat "$T/fsck.log" >&2; fail "e2fsck -fn after restart"; }
for f in dir/big numbers dir/small; do
  debugfs -R "dump $f $T/out" "$mnt/disk" >/dev/null 2>&1 || fail "debugfs dump $f"
  cmp "$T/out" "$T/$(basename "$f")" || fail "$f differs after restart"
done
fuse_umount
server_stop fs2
no_plaintext_blocks "$T/numbers" "$img"
pass "after restarting nbdkit: e2fsck -fn clean, 3 files read back equal, no plaintext in the image"
