#!/usr/bin/env bash
# Unaligned writes while the plugin fails half its reads (nbdkit's error
# filter beneath ours): qemu-io writes 513 bytes at offsets that are not
# sector-aligned, qemu sends them as they are (minimum block size 1) and the
# filter's read-modify-write fails a write whose read failed.  Every write
# either fails or lands whole, and no neighbouring byte changes.  (With a
# minimum of 512, qemu 7.2 pads on its own, ignores the error of its padding
# read and writes zeroes over the bytes it could not read.)
. "$(dirname "$0")/lib-filter.sh"
need qemu-io nbdcopy nbdsh

img=$T/disk.img
new_disk "$img" 48M >/dev/null
region=$((1024 * 1024))
head -c $region /dev/urandom >"$T/model"
serve rmw "$img" --filter=error error-pread-rate=50% error-file="$T/trigger"
# The first connection unlocks the disk, before any error is injected.
nbdcopy "$T/model" "$(uri rmw)"
touch "$T/trigger"

writes=40 ok=0 failed=0
: >"$T/landed"
for ((i = 0; i < writes; i++)); do
  # Offsets 1..4095 bytes past a sector start, half of them crossing into
  # the next sector; 24 KiB apart, so no two writes touch one sector.
  off=$((i * 24576 + 1 + (i * 997) % 4095))
  pat=$((i + 1))
  qemu-io -f raw -c "write -P $pat $off 513" "$(uri rmw)" >"$T/qio.out" 2>&1 && rc=0 || rc=$?
  if grep -q "wrote 513/513 bytes" "$T/qio.out"; then
    [ "$rc" = 0 ] || fail "write $i: qemu-io said it wrote and exited $rc"
    ok=$((ok + 1))
    echo "$off $pat" >>"$T/landed"
  elif grep -q "write failed: Input/output error" "$T/qio.out"; then
    failed=$((failed + 1))
  else
    fail "write $i at $off: qemu-io: $(cat "$T/qio.out")"
  fi
done
server_alive rmw || fail "server died"
[ "$ok" -gt 0 ] && [ "$failed" -gt 0 ] ||
  fail "$ok writes landed, $failed failed: the error filter did not fail about half the reads"
rm "$T/trigger"
log_has rmw "nbdcrypt: plugin read of [0-9]+ bytes at export offset" ||
  fail "no log line of ours for the failed reads"

nbdsh -u "$(uri rmw)" -c "import sys; sys.stdout.buffer.write(h.pread($region, 0))" >"$T/back"
server_stop rmw
"$PY" - "$T/model" "$T/landed" "$T/back" <<'PYEOF' || fail "the region differs from the model"
import sys
model = bytearray(open(sys.argv[1], "rb").read())
for line in open(sys.argv[2]):
    off, pat = map(int, line.split())
    model[off:off + 513] = bytes([pat]) * 513
back = open(sys.argv[3], "rb").read()
assert len(back) == len(model), (len(back), len(model))
bad = [i for i in range(len(model)) if model[i] != back[i]]
if bad:
    sys.exit("%d bytes differ, first at %d (0x%02x, expected 0x%02x)"
             % (len(bad), bad[0], back[bad[0]], model[bad[0]]))
PYEOF
pass "$writes writes of 513 bytes with 50% of plugin reads failing: $ok landed whole, $failed failed; no other byte changed"
