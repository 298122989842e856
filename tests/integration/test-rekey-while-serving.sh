#!/usr/bin/env bash
# Rekey while the disk is served: a fio verify workload runs through the filter
# while the KEK is replaced twice; zero verify errors, and a server started
# afterwards unlocks with the new KEK and verifies the same data.
. "$(dirname "$0")/lib-filter.sh"
need fio
fio --enghelp=nbd >/dev/null 2>&1 || fail "this fio has no nbd engine"

img=$T/disk.img
old=$(new_disk "$img" 160M)

job() { # NAME [fio args...]
  timeout 300 fio --name=w --ioengine=nbd --uri="$(uri "$1")" --rw=randwrite \
    --bssplit=4k/50:64k/30:1m/20 --blockalign=4k --verify=crc32c \
    --numjobs=4 --iodepth=16 --size=32m --offset_increment=32m \
    --randrepeat=1 --randseed=77 --group_reporting=1 "${@:2}"
}

serve s1 "$img"
job s1 --loops=4 >"$T/fio1.log" 2>&1 &
fio_pid=$!
on_exit "kill $fio_pid 2>/dev/null"
sleep 0.5
kill -0 "$fio_pid" 2>/dev/null || fail "fio finished before the rekey started; make the job longer"
k1=$(nbdcrypt rekey "$img") || fail "first rekey while serving"
k2=$(nbdcrypt rekey "$img") || fail "second rekey while serving"
kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before both rekeys finished: nothing overlapped"
wait "$fio_pid" || { tail -20 "$T/fio1.log" >&2; fail "fio during rekey"; }
grep -q "err= 0" "$T/fio1.log" || fail "fio errors during rekey"
pass "fio write+verify across two rekeys ($old -> $k1 -> $k2, both while fio ran)"
server_stop s1

# The old KEKs are unbound; a new server unlocks through the new one.
info=$(nbdcrypt info "$img" --json)
grep -q "$k2" <<<"$info" || fail "header does not name $k2"
grep -q "$old" <<<"$info" && fail "header still names the first KEK"
serve s2 "$img"
job s2 --verify_only=1 >"$T/fio2.log" 2>&1 || { tail -20 "$T/fio2.log" >&2; fail "verify-only after rekey"; }
grep -q "err= 0" "$T/fio2.log" || fail "verify-only errors after rekey"
pass "restarted server unlocks with kek $k2; verify-only pass: zero errors"
server_stop s2
