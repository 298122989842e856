#!/usr/bin/env bash
# fio's nbd engine with verify=crc32c: random writes of mixed sizes (512 B to
# 1 MiB, 512-aligned offsets), 4 jobs in their own regions, iodepth 16, with
# verification; then a verify-only pass of the same job after restarting
# nbdkit: zero verify errors.  The same verify-only pass against a freshly
# formatted disk must fail (the check can fail).
. "$(dirname "$0")/lib-filter.sh"
need fio
fio --enghelp=nbd >/dev/null 2>&1 || fail "this fio has no nbd engine"

img=$T/disk.img
new_disk "$img" 160M >/dev/null

job() { # NAME [fio args...]
  local name=$1
  shift
  # verify_fatal stays off: fio 3.33's nbd engine can spin after a verify
  # failure with it; fio still exits non-zero on a verify error.
  timeout 300 fio --name=w --ioengine=nbd --uri="$(uri "$name")" --rw=randwrite \
    --bssplit=512/10:4k/40:64k/30:1m/20 --blockalign=512 --verify=crc32c \
    --numjobs=4 --iodepth=16 --size=32m --offset_increment=32m \
    --randrepeat=1 --randseed=20240607 --group_reporting=1 "$@"
}

serve f1 "$img"
job f1 >"$T/fio1.log" 2>&1 || { tail -20 "$T/fio1.log" >&2; fail "fio write+verify"; }
grep -q "err= 0" "$T/fio1.log" || fail "fio reported errors: $(grep err= "$T/fio1.log")"
pass "fio randwrite 512 B..1 MiB, 4 jobs x iodepth 16, verify=crc32c: no errors ($(grep -o 'WRITE: bw=[^ ]*' "$T/fio1.log"))"
server_stop f1

serve f2 "$img"
job f2 --verify_only=1 >"$T/fio2.log" 2>&1 || { tail -20 "$T/fio2.log" >&2; fail "fio verify-only after restart"; }
grep -q "err= 0" "$T/fio2.log" || fail "verify-only reported errors"
pass "verify-only pass after restarting nbdkit: zero verify errors"
server_stop f2

other=$T/other.img
new_disk "$other" 160M >/dev/null
serve f3 "$other"
if job f3 --verify_only=1 >"$T/fio3.log" 2>&1; then
  fail "verify-only passed on a disk that was never written"
fi
pass "control: verify-only fails on a disk that was never written"
server_stop f3
