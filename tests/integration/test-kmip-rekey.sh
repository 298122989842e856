#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# Shallow rekey across providers and token modes against a real pykmip-server:
# native -> kmip (mode kek) -> kmip (kms-wrapped); the volume key never
# changes, each step leaves exactly one KEK binding, and retiring an old KEK
# on the KMS does not affect the disk.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
need od
kms_init
kms_start a
A=127.0.0.1:$(kms_port a)
kms_config "$T/kms.json" alice "$A"
export NBDCRYPT_CONFIG=$T/kms.json

tokens() { # IMG: "provider/mode/kek" of each nbdcrypt token
  nbdcrypt info "$1" --json | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join("%s/%s/%s" % (t["provider"], t["mode"], t["kek_id"]) for t in d["tokens"]))'
}

img=$T/disk.img
native=$(nbdcrypt format "$img" --size 32M --provider local)
vk=$(nbdcrypt_volume_key "$img")

k1=$(nbdcrypt rekey "$img" --provider kms)
[ "$(tokens "$img")" = "kms/kek/$k1" ] || fail "after rekey to kms: $(tokens "$img")"
[ "$(nbdcrypt_volume_key "$img")" = "$vk" ] || fail "volume key changed (native -> kms)"
pass "native kek $native -> kmip kek $k1"

k2=$(nbdcrypt rekey "$img" --provider kms --kms-wrapped)
[ "$(tokens "$img")" = "kms/kms-wrapped/$k2" ] || fail "after kms-wrapped rekey: $(tokens "$img")"
[ "$(nbdcrypt_volume_key "$img")" = "$vk" ] || fail "volume key changed (kms-wrapped)"
pass "kmip kek $k1 -> kms-wrapped under $k2"

# The first KMS key is retired; the disk does not need it any more.
nbdcrypt kek revoke --provider kms "$k1"
nbdcrypt kek destroy --force --provider kms "$k1"
out=$(nbdcrypt check "$img") || fail "check after retiring the old KEK"
grep -q "kek $k2" <<<"$out" || fail "check: $out"
pass "old KMS key revoked and destroyed; disk unlocks through the KMS ($out)"

# Retiring the bound key makes the disk fail with a clear reason.
nbdcrypt kek revoke --provider kms "$k2"
if out=$(nbdcrypt check "$img" 2>&1); then fail "check succeeded with a revoked wrapping key"; fi
grep -q "$k2" <<<"$out" || fail "error does not name the KEK: $out"
pass "revoked wrapping key reported: $out"
