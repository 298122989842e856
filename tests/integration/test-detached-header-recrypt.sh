#!/usr/bin/env bash
# recrypt --header: a disk whose header is detached gets a new volume key and
# its data re-encrypted in place, also when the run is killed after its first
# hotzone and run again: the header file holds the progress (requirement flag
# while half way), the data device keeps its size, the new volume key (as
# cryptsetup reveals it with --header) decrypts the data independently, and
# the filter serves it with nbdcrypt-header= byte for byte.
. "$(dirname "$0")/lib-filter.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need cryptsetup nbdcopy cmp

MiB=$((1024 * 1024))
make_plain 48M
img=$T/data.img
hdr=$T/hdr.img
cp "$T/plain.img" "$img"
nbdcrypt encrypt "$img" --header "$hdr" >/dev/null 2>&1 || fail "encrypt --header failed"
kek=$(kek_of "$hdr")
kek_bytes "$kek" "$T/kek.bin"
nbdcrypt info "$img" --header "$hdr" --dump-volume-key "$T/vk0" >/dev/null

kill_after_first_step recrypt "$img" --header "$hdr"
[ "$(requirements "$hdr")" = nbdcrypt-reencrypt-v1 ] || fail "recrypt --header not caught half way"
must_refuse 1 "in the middle of a re-encryption" "$hdr" -- nbdcrypt check "$img" --header "$hdr"
nbdcrypt recrypt "$img" --header "$hdr" >/dev/null 2>"$T/err" || fail "recrypt --header rerun: $(cat "$T/err")"
[ -z "$(requirements "$hdr")" ] || fail "requirement flag left after recrypt --header"
[ "$(stat -c %s "$img")" = $((48 * MiB)) ] || fail "recrypt --header changed the data device's size"
pass "recrypt --header, killed after its first hotzone and run again, completes"

nbdcrypt info "$img" --header "$hdr" --dump-volume-key "$T/vk1" >/dev/null
! cmp -s "$T/vk0" "$T/vk1" || fail "recrypt --header kept the volume key"
cryptsetup_volume_key "$hdr" "$T/kek.bin" --header "$hdr" | "$PY" -c \
  'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))' >"$T/csvk"
cmp "$T/csvk" "$T/vk1" || fail "cryptsetup's volume key differs from nbdcrypt's after recrypt --header"
ss=$(nbdcrypt info "$img" --header "$hdr" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["sector_size"])')
xts_py decrypt "$T/vk1" "$ss" 0 <"$img" | cmp - "$T/plain.img" ||
  fail "the data does not decrypt independently with the new volume key"
pass "a new volume key, which cryptsetup --header reveals too, decrypts the data independently"

serve r "$img" nbdcrypt-header="$hdr"
nbdcopy "$(uri r)" "$T/back.img"
cmp "$T/back.img" "$T/plain.img" || fail "the filter reads the recrypted disk back differently"
server_stop r
pass "nbdcrypt-header= serves the recrypted disk byte for byte"
