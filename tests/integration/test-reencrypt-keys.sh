#!/bin/bash
# Which keys a recrypt binds and drops: --kek ID binds the new volume key to
# that KEK (also when the run was killed and run again), --provider NAME to a
# new KEK of that provider; the old KEK no longer opens the disk.  A disk with
# a keyslot bound to no KEK (an operator's passphrase) is refused unless
# --drop-passphrase-keyslots accepts losing it.
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
NBDCRYPT_TEST_HOTZONE_DELAY_MS=3000 "$NBDCRYPT" recrypt "$img" --kek "$kek1" --hotzone 16M --json >"$T/ev" 2>/dev/null &
pid=$!
for ((i = 0; i < 200; i++)); do
  grep -q '"done":[1-9]' "$T/ev" && break
  sleep 0.05
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
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
truncate -s 48M "$pimg"
printf 'operator passphrase' >"$T/pass"
cryptsetup luksFormat --type luks2 -q --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --key-file "$T/pass" "$pimg"
nbdcrypt enroll "$pimg" --passphrase-file "$T/pass" >/dev/null || fail "enroll"
[ "$(slot_count "$pimg")" = 2 ] || fail "enrolled disk: $(slot_count "$pimg") keyslots"
psha=$(plain_sha_of "$pimg")
before=$(sha_of "$pimg")
rc=0
nbdcrypt recrypt "$pimg" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "recrypt of a disk with a passphrase keyslot: exit $rc, want 1"
grep -q "has keyslot 0 bound to no KEK (a passphrase or key file); a recrypt would remove it with the old key: pass --drop-passphrase-keyslots" "$T/err" ||
  fail "refusal message: $(cat "$T/err")"
[ "$(sha_of "$pimg")" = "$before" ] || fail "the refused recrypt changed the disk"
cryptsetup open --test-passphrase --key-file "$T/pass" "$pimg" || fail "passphrase lost by a refused recrypt"
pass "recrypt refuses a disk with a passphrase keyslot, disk unchanged"

nbdcrypt recrypt "$pimg" --drop-passphrase-keyslots 2>"$T/err" || { cat "$T/err"; fail "recrypt --drop-passphrase-keyslots"; }
[ "$(slot_count "$pimg")" = 1 ] || fail "after --drop-passphrase-keyslots: $(slot_count "$pimg") keyslots"
cryptsetup open --test-passphrase --key-file "$T/pass" "$pimg" 2>/dev/null && fail "the passphrase still opens the disk"
kek_bytes "$(kek_of "$pimg")" "$T/kekp.bin"
cryptsetup open --test-passphrase --key-file "$T/kekp.bin" "$pimg" || fail "the KEK does not open the recrypted disk"
[ "$(cryptsetup_volume_key "$pimg" "$T/kekp.bin")" = "$(nbdcrypt_volume_key "$pimg")" ] || fail "volume keys differ"
[ "$(plain_sha_of "$pimg")" = "$psha" ] || fail "data differs after recrypt --drop-passphrase-keyslots"
pass "recrypt --drop-passphrase-keyslots: passphrase keyslot gone, KEK opens, data intact"

nbdcrypt encrypt "$img" --drop-passphrase-keyslots 2>/dev/null && fail "encrypt accepted --drop-passphrase-keyslots"
pass "--drop-passphrase-keyslots is for recrypt only"
