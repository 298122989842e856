#!/bin/bash
# rekey, enroll and format fetch from the KMS exactly the KEKs they need, each
# once (one volume session: the KEK a bind used also proves the new keyslot).
# Counted in pykmip-server's log ("Processing operation: Get").
#   format --provider kms          1 Get  (the new KEK, for its keyslot)
#   rekey --provider kms           2 Gets (the old KEK to unlock, the new one)
#   enroll --provider kms          1 Get  (the new KEK; the passphrase unlocks)
#   enroll --kms-wrapped           0 Gets (the KMS wraps a random secret)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
kms_init
kms_start a
kms_config "$T/kms.json" alice "127.0.0.1:$(kms_port a)"
export NBDCRYPT_CONFIG=$T/kms.json

gets() { grep -c "Processing operation: Get$" "$KMS_DIR/a/server.log" || true; }
expect_gets() { # WHAT N BEFORE
  local now
  now=$(gets)
  [ $((now - $3)) = "$2" ] || fail "$1 fetched $((now - $3)) KEKs, expected $2"
}

img=$T/disk.img
before=$(gets)
k0=$(nbdcrypt format "$img" --size 32M --provider kms 2>"$T/err") || { cat "$T/err"; fail "format"; }
expect_gets "format" 1 "$before"
vk=$(nbdcrypt_volume_key "$img")
pass "format --provider kms: 1 Get"

before=$(gets)
k1=$(nbdcrypt rekey "$img" --provider kms 2>"$T/err") || { cat "$T/err"; fail "rekey"; }
expect_gets "rekey" 2 "$before"
[ "$k1" != "$k0" ] || fail "rekey kept kek $k0"
[ "$(nbdcrypt_volume_key "$img")" = "$vk" ] || fail "rekey changed the volume key"
pass "rekey --provider kms: 2 Gets (old $k0, new $k1), volume key kept"

printf 'correct horse battery staple' >"$T/pass"
cs_disk "$T/cs.img" 32M "$T/pass"
cs_vk=$(cryptsetup_volume_key "$T/cs.img" "$T/pass")
before=$(gets)
k2=$(nbdcrypt enroll "$T/cs.img" --passphrase-file "$T/pass" --provider kms 2>"$T/err") ||
  { cat "$T/err"; fail "enroll"; }
expect_gets "enroll" 1 "$before"
[ "$(nbdcrypt_volume_key "$T/cs.img")" = "$cs_vk" ] || fail "enrolled keyslot opens another key"
pass "enroll --provider kms: 1 Get (kek $k2); the new keyslot opens the volume key"

cs_disk "$T/cs2.img" 32M "$T/pass"
before=$(gets)
nbdcrypt enroll "$T/cs2.img" --passphrase-file "$T/pass" --provider kms --kms-wrapped \
  >/dev/null 2>"$T/err" || { cat "$T/err"; fail "enroll --kms-wrapped"; }
expect_gets "enroll --kms-wrapped" 0 "$before"
pass "enroll --kms-wrapped: no Get"
