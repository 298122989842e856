#!/usr/bin/env bash
# Online deep recrypt under load: a 256 MiB disk served with
# nbdcrypt-reencrypt=recrypt is recrypted while fio (nbd engine, 2 jobs,
# random sizes 512 B..1 MiB, verify=crc32c) writes and verifies it, run
# after run, until the recrypt has finished.  Then: fio never reported a
# verify error, the volume key changed (cryptsetup --dump-volume-key with
# the KEK), cryptsetup opens the result, a verify-only pass after a restart
# finds everything, and an independent AES-XTS decryption of the data area
# with the new key equals what the filter serves.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib-filter.sh"
need fio cryptsetup nbdcopy
fio --enghelp=nbd >/dev/null 2>&1 || fail "this fio has no nbd engine"

img=$T/disk.img
kek=$(new_disk "$img" 256M)
kek_bytes "$kek" "$T/kek.bin"
vk_old=$(cryptsetup_volume_key "$img" "$T/kek.bin")
[ -n "$vk_old" ] || fail "no volume key from cryptsetup"

job() { # NAME [fio args...]
  timeout 120 fio --name=w --ioengine=nbd --uri="$(uri "$1")" --rw=randwrite \
    --bsrange=512-1m --blockalign=512 --verify=crc32c --numjobs=2 --iodepth=4 \
    --size=64m --offset_increment=112m --randrepeat=1 --randseed=20261202 \
    --group_reporting=1 "${@:2}"
}

# held 300 ms after each of its 15 hotzones: fio runs while it works
export NBDCRYPT_TEST_HOTZONE_DELAY_MS=300
serve r "$img" nbdcrypt-reencrypt=recrypt
unset NBDCRYPT_TEST_HOTZONE_DELAY_MS
runs=0 start=$SECONDS
while ! log_has r "recrypt of disk .* finished"; do
  ((SECONDS < start + 90)) || { grep -v debug "$T/r.log" | grep nbdcrypt: >&2 || true; fail "the recrypt did not finish within 90 s of fio runs"; }
  [ "$runs" -gt 0 ] || ! log_has r "finished" || fail "the recrypt finished before fio started"
  job r >"$T/fio$runs.log" 2>&1 || { tail -20 "$T/fio$runs.log" >&2; fail "fio run $runs"; }
  grep -q "err= 0" "$T/fio$runs.log" || fail "fio run $runs reported errors"
  runs=$((runs + 1))
done
log_has r "recrypt of disk .* started at 0%" || fail "no start in the log"
log_has r "recrypt 50% done" || fail "no progress line in the log"
pass "recrypted online to the end during $runs fio write+verify runs (2 jobs, 512 B..1 MiB): no verify error"
server_stop r

[ -z "$(requirements "$img")" ] || fail "requirement flag left: $(requirements "$img")"
vk_new=$(cryptsetup_volume_key "$img" "$T/kek.bin")
[ -n "$vk_new" ] && [ "$vk_new" != "$vk_old" ] || fail "the volume key did not change"
cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" || fail "cryptsetup cannot open it"
cryptsetup luksDump "$img" | grep -q "Keyslots:" || fail "luksDump"
pass "the volume key changed; cryptsetup opens the result with the KEK"

serve v "$img"
job v --verify_only=1 >"$T/fiov.log" 2>&1 || { tail -20 "$T/fiov.log" >&2; fail "fio verify-only"; }
grep -q "err= 0" "$T/fiov.log" || fail "verify-only reported errors"
nbdcopy "$(uri v)" "$T/served.bin"
server_stop v
pass "verify-only pass after a restart: everything fio wrote is there"

off=$(data_offset "$img")
echo "$vk_new" | "$PY" -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read().strip()))' >"$T/vk.bin"
tail -c +$((off + 1)) "$img" | xts_py decrypt "$T/vk.bin" 4096 0 >"$T/indep.bin"
cmp "$T/indep.bin" "$T/served.bin" || fail "independent decryption differs from the served data"
pass "an independent decryption of the data area with the new key equals the served data"
