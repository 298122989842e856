#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# enroll: a disk made by cryptsetup with a passphrase gets a KEK-bound keyslot
# and token; nbdcrypt check then unlocks it through the keystore, the volume
# key is unchanged, and the passphrase keyslot still works.
. "$(dirname "$0")/lib.sh"
need cryptsetup od

img=$T/cs.img
printf 'correct horse battery staple' >"$T/pass"
cs_disk "$img" 32M "$T/pass"
vk=$(cryptsetup_volume_key "$img" "$T/pass")

printf 'wrong' >"$T/wrong"
if out=$(nbdcrypt enroll "$img" --passphrase-file "$T/wrong" 2>&1); then
  fail "enroll with a wrong passphrase succeeded"
fi
grep -q "passphrase" <<<"$out" || fail "wrong passphrase error: $out"
rc=0
nbdcrypt enroll "$img" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "enroll without a passphrase source: exit $rc, want 2 (usage)"

kek=$(nbdcrypt enroll "$img" --passphrase-fd 3 3<"$T/pass")
out=$(nbdcrypt check "$img") || fail "check after enroll"
grep -q "kek $kek" <<<"$out" || fail "check: $out"
[ "$(nbdcrypt_volume_key "$img")" = "$vk" ] || fail "enroll changed the volume key"
kek_bytes "$kek" "$T/kek.bin"
cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" || fail "cryptsetup: KEK slot"
cryptsetup open --test-passphrase --key-file "$T/pass" "$img" || fail "cryptsetup: passphrase slot"
pass "enrolled kek $kek; both keyslots open with cryptsetup"
