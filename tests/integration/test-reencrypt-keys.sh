#!/bin/bash
# Which keys a recrypt binds and drops: --kek ID binds the new volume key to
# that KEK (also when the run was killed and run again), --provider NAME to a
# new KEK of that provider; the old KEK no longer opens the disk.  Without
# --kek/--provider the new key stays bound to every KEK of the old one.  A
# keyslot bound to no KEK (an operator's passphrase) follows the new key with
# --passphrase-file (same KDF and costs); without it the disk is refused
# unless --drop-passphrase-keyslots accepts losing it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need cryptsetup

# A second native provider, "other", with its own keystore.
OTHER_KEYSTORE=$T/other/keystore.json
cat >"$CFG" <<JSON
{"providers": {"local": {"type": "native", "keystore": "$KEYSTORE"},
               "other": {"type": "native", "keystore": "$OTHER_KEYSTORE"}},
 "default_provider": "local"}
JSON

# token_field IMG FIELD: FIELD of the only nbdcrypt token (fails if not one).
token_field() {
  nbdcrypt info "$1" --json | "$PY" -c '
import json, sys
toks = [t for t in json.load(sys.stdin)["tokens"] if t["type"] == "nbdcrypt"]
assert len(toks) == 1, toks
print(toks[0][sys.argv[1]])' "$2"
}
slot_count() { nbdcrypt info "$1" --json | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["keyslots"]))'; }

make_plain 32M
img=$T/disk.img
cp "$T/plain.img" "$img"
nbdcrypt encrypt "$img" 2>/dev/null || fail "encrypt"
kek0=$(kek_of "$img")
kek_bytes "$kek0" "$T/kek0.bin"

# --kek ID, killed once after its first hotzone and run again
kek1=$(nbdcrypt kek create)
kek_bytes "$kek1" "$T/kek1.bin"
kill_after_first_step recrypt "$img" --kek "$kek1"
[ "$(requirements "$img")" = nbdcrypt-reencrypt-v1 ] || fail "recrypt --kek not caught half way"
nbdcrypt recrypt "$img" --kek "$kek1" 2>"$T/err" || { cat "$T/err"; fail "recrypt --kek rerun"; }
[ "$(token_field "$img" kek_id)" = "$kek1" ] || fail "token names $(token_field "$img" kek_id), want $kek1"
[ "$(slot_count "$img")" = 1 ] || fail "old keyslot left after recrypt --kek"
cryptsetup open --test-passphrase --key-file "$T/kek1.bin" "$img" || fail "--kek's KEK does not open the disk"
cryptsetup open --test-passphrase --key-file "$T/kek0.bin" "$img" 2>/dev/null && fail "the old KEK still opens the disk"
[ "$(plain_sha_of "$img")" = "$PLAIN_SHA" ] || fail "data differs after recrypt --kek"
pass "recrypt --kek ID (killed half way, run again): bound to ID only, old KEK refused, data intact"

# --provider NAME: a new KEK created in that provider
nbdcrypt recrypt "$img" --provider other 2>"$T/err" || { cat "$T/err"; fail "recrypt --provider other"; }
[ "$(token_field "$img" provider)" = other ] || fail "token provider $(token_field "$img" provider), want other"
kek2=$(token_field "$img" kek_id)
[ "$kek2" != "$kek1" ] || fail "recrypt --provider kept the KEK"
KEYSTORE=$OTHER_KEYSTORE kek_bytes "$kek2" "$T/kek2.bin"
cryptsetup open --test-passphrase --key-file "$T/kek2.bin" "$img" || fail "the other provider's KEK does not open the disk"
cryptsetup open --test-passphrase --key-file "$T/kek1.bin" "$img" 2>/dev/null && fail "the previous KEK still opens the disk"
nbdcrypt check "$img" >/dev/null || fail "check after recrypt --provider"
[ "$(plain_sha_of "$img")" = "$PLAIN_SHA" ] || fail "data differs after recrypt --provider"
pass "recrypt --provider other: new KEK $kek2 of provider other, data intact"

# A passphrase keyslot (cryptsetup disk enrolled to a KEK) is not dropped silently.
pimg=$T/pass.img
printf 'operator passphrase' >"$T/pass"
cs_disk "$pimg" 48M "$T/pass"
nbdcrypt enroll "$pimg" --passphrase-file "$T/pass" >/dev/null || fail "enroll"
[ "$(slot_count "$pimg")" = 2 ] || fail "enrolled disk: $(slot_count "$pimg") keyslots"
psha=$(plain_sha_of "$pimg")
before=$(sha_of "$pimg")
rc=0
nbdcrypt recrypt "$pimg" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "recrypt of a disk with a passphrase keyslot: exit $rc, want 1"
grep -q "has keyslot 0 bound to no KEK (a passphrase or key file); a recrypt would remove it with the old key: give its secret with --passphrase-file to keep it for the new key, pass --drop-passphrase-keyslots to accept the removal" "$T/err" ||
  fail "refusal message: $(cat "$T/err")"
[ "$(sha_of "$pimg")" = "$before" ] || fail "the refused recrypt changed the disk"
cryptsetup open --test-passphrase --key-file "$T/pass" "$pimg" || fail "passphrase lost by a refused recrypt"
pass "recrypt refuses a disk with a passphrase keyslot, disk unchanged"

# A wrong --passphrase-file: refused before anything is written.
printf 'not the passphrase' >"$T/wrong"
rc=0
nbdcrypt recrypt "$pimg" --passphrase-file "$T/wrong" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "recrypt with a wrong passphrase: exit $rc, want 1"
grep -q "the passphrase in $T/wrong opens no keyslot of disk .* that is bound to no KEK" "$T/err" ||
  fail "wrong passphrase message: $(cat "$T/err")"
[ "$(sha_of "$pimg")" = "$before" ] || fail "the refused recrypt (wrong passphrase) changed the disk"
pass "recrypt --passphrase-file with a wrong passphrase: refused, disk unchanged"

# --passphrase-file: the passphrase opens the new key, with the same KDF.
cp "$pimg" "$T/pass2.img"
old_vk=$(nbdcrypt_volume_key "$T/pass2.img")
nbdcrypt recrypt "$T/pass2.img" --passphrase-file "$T/pass" 2>"$T/err" || { cat "$T/err"; fail "recrypt --passphrase-file"; }
[ "$(slot_count "$T/pass2.img")" = 2 ] || fail "after --passphrase-file: $(slot_count "$T/pass2.img") keyslots, want 2"
new_vk=$(nbdcrypt_volume_key "$T/pass2.img")
[ "$new_vk" != "$old_vk" ] || fail "recrypt --passphrase-file kept the volume key"
[ "$(cryptsetup_volume_key "$T/pass2.img" "$T/pass")" = "$new_vk" ] || fail "the passphrase does not open the new volume key"
cryptsetup luksDump "$T/pass2.img" | grep -q "Iterations: *1000$" || fail "passphrase keyslot lost its KDF cost"
[ "$(plain_sha_of "$T/pass2.img")" = "$psha" ] || fail "data differs after recrypt --passphrase-file"
pass "recrypt --passphrase-file: passphrase and KEK open the new key (pbkdf2, 1000 iterations kept), data intact"

nbdcrypt recrypt "$pimg" --drop-passphrase-keyslots 2>"$T/err" || { cat "$T/err"; fail "recrypt --drop-passphrase-keyslots"; }
[ "$(slot_count "$pimg")" = 1 ] || fail "after --drop-passphrase-keyslots: $(slot_count "$pimg") keyslots"
cryptsetup open --test-passphrase --key-file "$T/pass" "$pimg" 2>/dev/null && fail "the passphrase still opens the disk"
kek_bytes "$(kek_of "$pimg")" "$T/kekp.bin"
cryptsetup open --test-passphrase --key-file "$T/kekp.bin" "$pimg" || fail "the KEK does not open the recrypted disk"
[ "$(cryptsetup_volume_key "$pimg" "$T/kekp.bin")" = "$(nbdcrypt_volume_key "$pimg")" ] || fail "volume keys differ"
[ "$(plain_sha_of "$pimg")" = "$psha" ] || fail "data differs after recrypt --drop-passphrase-keyslots"
pass "recrypt --drop-passphrase-keyslots: passphrase keyslot gone, KEK opens, data intact"

nbdcrypt encrypt "$img" --drop-passphrase-keyslots 2>/dev/null && fail "encrypt accepted --drop-passphrase-keyslots"
nbdcrypt encrypt "$img" --passphrase-file "$T/pass" 2>/dev/null && fail "encrypt accepted --passphrase-file"
pass "--drop-passphrase-keyslots and --passphrase-file are for recrypt only"

# A disk bound to two KEKs of two providers plus an argon2id passphrase:
# recrypt (killed once, run again) keeps all three for the new key.
mimg=$T/multi.img
truncate -s 48M "$mimg"
printf 'second operator passphrase' >"$T/pass3"
cryptsetup luksFormat --type luks2 -q --pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory 32 \
  --pbkdf-parallel 1 --key-file "$T/pass3" "$mimg"
kekA=$(nbdcrypt enroll "$mimg" --passphrase-file "$T/pass3" 2>/dev/null) || fail "enroll A"
kekB=$(nbdcrypt enroll "$mimg" --passphrase-file "$T/pass3" --provider other 2>/dev/null) || fail "enroll B"
kek_bytes "$kekA" "$T/kekA.bin"
KEYSTORE=$OTHER_KEYSTORE kek_bytes "$kekB" "$T/kekB.bin"
msha=$(plain_sha_of "$mimg")
mvk=$(nbdcrypt_volume_key "$mimg")
kill_after_first_step recrypt "$mimg" --passphrase-file "$T/pass3"
[ "$(requirements "$mimg")" = nbdcrypt-reencrypt-v1 ] || fail "multi-KEK recrypt not caught half way"
# the rerun needs no passphrase: the new keyslots were made before the first commit
nbdcrypt recrypt "$mimg" 2>"$T/err" || { cat "$T/err"; fail "multi-KEK recrypt rerun"; }
[ "$(slot_count "$mimg")" = 3 ] || fail "multi-KEK disk: $(slot_count "$mimg") keyslots after recrypt, want 3"
nvk=$(nbdcrypt_volume_key "$mimg")
[ "$nvk" != "$mvk" ] || fail "multi-KEK recrypt kept the volume key"
for key in "$T/kekA.bin" "$T/kekB.bin" "$T/pass3"; do
  [ "$(cryptsetup_volume_key "$mimg" "$key")" = "$nvk" ] || fail "$(basename "$key") does not open the new key"
done
cryptsetup luksDump "$mimg" | grep -A4 "PBKDF: *argon2id" | grep -q "Time cost: *4" || fail "argon2id costs not kept"
nbdcrypt info "$mimg" --json | "$PY" -c '
import json, sys
toks = sorted((t["provider"], t["kek_id"]) for t in json.load(sys.stdin)["tokens"] if t["type"] == "nbdcrypt")
assert toks == sorted([("local", sys.argv[1]), ("other", sys.argv[2])]), toks' "$kekA" "$kekB" ||
  fail "multi-KEK tokens after recrypt"
[ "$(plain_sha_of "$mimg")" = "$msha" ] || fail "data differs after multi-KEK recrypt"
pass "recrypt of a disk bound to two KEKs and a passphrase (killed, run again): all three open the new key"

# --kek moves the key to one KEK (as rekey does); the passphrase still follows.
kekC=$(nbdcrypt kek create)
kek_bytes "$kekC" "$T/kekC.bin"
nbdcrypt recrypt "$mimg" --kek "$kekC" --passphrase-file "$T/pass3" 2>"$T/err" || { cat "$T/err"; fail "recrypt --kek of the multi-KEK disk"; }
[ "$(slot_count "$mimg")" = 2 ] || fail "after recrypt --kek: $(slot_count "$mimg") keyslots, want 2"
[ "$(token_field "$mimg" kek_id)" = "$kekC" ] || fail "after recrypt --kek the token names $(token_field "$mimg" kek_id)"
for key in "$T/kekA.bin" "$T/kekB.bin"; do
  cryptsetup open --test-passphrase --key-file "$key" "$mimg" 2>/dev/null && fail "$(basename "$key") still opens after recrypt --kek"
done
cryptsetup open --test-passphrase --key-file "$T/pass3" "$mimg" || fail "passphrase lost by recrypt --kek"
[ "$(plain_sha_of "$mimg")" = "$msha" ] || fail "data differs after recrypt --kek"
pass "recrypt --kek of a two-KEK disk: bound to that KEK only, passphrase kept, data intact"
