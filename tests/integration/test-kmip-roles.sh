#!/bin/bash
# Separated roles on a real pykmip-server with the operation policy of
# tests/kms/policy-nbdcrypt.json (groups from a SLUGS stand-in): keys are
# created by the admin identity (alice, "admin" in the provider's
# configuration) with Operation Policy Name "nbdcrypt"; the serving identity
# (bob, the provider's cert/key) can fetch them, format a disk in kek mode and
# serve it through the filter, and Decrypt, but its Revoke and Destroy are
# refused by the KMS; the admin identity can manage the keys.  The nbdcrypt
# command creates, lists, revokes and destroys KEKs, and formats with a new
# or kms-wrapped KEK, as the admin identity; the filter and check need only
# the serving identity (they work with the admin key file absent).
. "$(dirname "${BASH_SOURCE[0]}")/lib-filter.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
need nbdcopy cmp
kms_init
kms_slugs_start alice=nbdcrypt-admin bob=nbdcrypt-serving
KMS_POLICY=$NBDCRYPT_SRCDIR/tests/kms/policy-nbdcrypt.json kms_start a
S=127.0.0.1:$(kms_port a)
cat >"$T/kms.json" <<JSON
{
  "providers": {
    "kms": {"type": "kmip", "servers": ["$S"], "ca": "$KMS_DIR/ca.pem",
            "cert": "$KMS_DIR/bob.pem", "key": "$KMS_DIR/bob.key",
            "admin": {"cert": "$KMS_DIR/alice.pem", "key": "$KMS_DIR/alice.key"},
            "operation_policy": "nbdcrypt"}
  }
}
JSON
serving() { kms_keys "$T/kms.json" kms "$@"; }
admin() { kms_keys --admin "$T/kms.json" kms "$@"; }

id=$(admin create roles-kek) || fail "admin create"
[ "$(admin state "$id")" = active ] || fail "admin: new kek not active"
kms_tool alice -s "$S" info "$id" >/dev/null
key=$(admin get "$id")
pass "admin identity creates and activates a kek under policy nbdcrypt"

[ "$(serving get "$id")" = "$key" ] || fail "serving identity: get"
[ "$(serving state "$id")" = active ] || fail "serving identity: state"
pass "serving identity: get and state"

for op in revoke revoke-compromised destroy; do
  if serving "$op" "$id" 2>"$T/err"; then fail "serving identity could $op"; fi
  grep -q "failed: PermissionDenied" "$T/err" || fail "serving $op: $(cat "$T/err")"
done
[ "$(admin state "$id")" = active ] || fail "a refused revoke changed the state"
pass "serving identity: revoke, compromise and destroy refused by the KMS (PermissionDenied)"

# kms-wrapped: the admin wraps, the server unwraps.  (PyKMIP 0.10 checks
# Encrypt and Decrypt as Get, so it cannot refuse the serving identity an
# Encrypt: docs/kmip.md.)
plain=000102030405060708090a0b0c0d0e0f
read -r iv tag cipher < <(kms_tool alice -s "$S" encrypt "$id" "$plain")
[ "$(kms_tool bob -s "$S" decrypt "$id" "$iv" "$tag" "$cipher")" = "$plain" ] ||
  fail "serving identity: decrypt"
pass "serving identity: decrypt of what the admin identity encrypted"

# nbdcrypt itself with the serving identity: format (kek mode: Get) and serve
nbdcrypt --config "$T/kms.json" format "$T/disk.img" --size 24M --provider kms --kek "$id" \
  >/dev/null || fail "format with the serving identity"
head -c $((4 * 1024 * 1024)) /dev/urandom >"$T/plain"
serve roles "$T/disk.img" nbdcrypt-config="$T/kms.json"
nbdcopy "$T/plain" "$(uri roles)"
nbdcopy "$(uri roles)" "$T/back"
cmp_range "$T/back" 0 "$T/plain" 0 $((4 * 1024 * 1024)) || fail "read back through the filter"
server_stop roles
pass "serving identity: nbdcrypt format (kek mode) and serve, 4 MiB round trip"

admin revoke "$id"
[ "$(serving state "$id")" = deactivated ] || fail "after admin revoke"
admin destroy "$id"
if serving get "$id" 2>"$T/err"; then fail "get after destroy"; fi
grep -q "kek $id not found" "$T/err" || fail "after destroy: $(cat "$T/err")"
pass "admin identity: revoke and destroy"

# The nbdcrypt command: key management speaks as the admin identity, the
# rest as the serving one; the filter never opens the admin identity.
cli() { nbdcrypt --config "$T/kms.json" "$@"; }
sed "s|$KMS_DIR/alice.key|$T/no-such-admin.key|" "$T/kms.json" >"$T/serving-only.json"
sed '/"admin"/d' "$T/kms.json" >"$T/bob-only.json"
cli_id=$(cli kek create --provider kms --name cli-kek) || fail "cli: kek create"
[ "$(serving state "$cli_id")" = active ] || fail "cli: created kek not active"
cli kek list --provider kms --prefix cli- | grep -q "^$cli_id " || fail "cli: kek list"
must_refuse 1 "PermissionDenied" - -- nbdcrypt --config "$T/bob-only.json" kek revoke --provider kms "$cli_id"
cli kek revoke --provider kms "$cli_id" || fail "cli: kek revoke with the admin identity"
[ "$(serving state "$cli_id")" = deactivated ] || fail "cli: revoke did not deactivate"
cli kek destroy --force --provider kms "$cli_id" || fail "cli: kek destroy"
if serving get "$cli_id" 2>"$T/err"; then fail "cli: kek survived destroy"; fi
pass "nbdcrypt kek create, list, revoke and destroy use the admin identity (the serving one is refused)"

# format creating its KEK (Create: admin), kms-wrapped (Encrypt: admin); the
# filter serves both with the serving identity alone (admin key absent)
new_kek=$(cli format "$T/new.img" --size 24M --provider kms) || fail "cli: format with a new kek"
wrapped_kek=$(cli kek create --provider kms)
cli format "$T/wrapped.img" --size 24M --provider kms --kek "$wrapped_kek" --kms-wrapped \
  >/dev/null || fail "cli: format --kms-wrapped"
for img in new wrapped; do
  serve "s-$img" "$T/$img.img" nbdcrypt-config="$T/serving-only.json"
  nbdcopy "$T/plain" "$(uri "s-$img")"
  rm -f "$T/back"
  nbdcopy "$(uri "s-$img")" "$T/back"
  cmp_range "$T/back" 0 "$T/plain" 0 $((4 * 1024 * 1024)) || fail "$img: read back"
  server_stop "s-$img"
done
nbdcrypt --config "$T/serving-only.json" check "$T/wrapped.img" >/dev/null ||
  fail "check with the serving identity alone"
# recrypt of the kms-wrapped disk wraps its new key (Encrypt: admin; PyKMIP
# 0.10 checks Encrypt as Get, so what shows the role is that recrypt needs the
# admin identity's key file)
must_refuse 1 "no-such-admin.key" "$T/wrapped.img" -- \
  nbdcrypt --config "$T/serving-only.json" recrypt "$T/wrapped.img"
cli recrypt "$T/wrapped.img" >/dev/null 2>"$T/err" || fail "cli: recrypt as admin: $(cat "$T/err")"
serve s-recrypted "$T/wrapped.img" nbdcrypt-config="$T/serving-only.json"
rm -f "$T/back"
nbdcopy "$(uri s-recrypted)" "$T/back"
cmp_range "$T/back" 0 "$T/plain" 0 $((4 * 1024 * 1024)) || fail "recrypted: read back"
server_stop s-recrypted
pass "recrypt of a kms-wrapped disk wraps as admin (fails without the admin key); served after"
cli kek revoke --compromised --provider kms "$new_kek"
[ "$(serving state "$new_kek")" = compromised ] || fail "cli: revoke --compromised"
must_refuse 1 "kek $new_kek of provider kms is compromised, not active" "$T/new.img" -- \
  nbdcrypt --config "$T/serving-only.json" check "$T/new.img"
pass "format (new kek, kms-wrapped) as admin; filter and check serve with no admin key; revoke --compromised"

# a key created without the policy gets PyKMIP's default one, which has no
# groups: the serving identity gets nothing (Get works in any state)
other=$(kms_tool alice -s "$S" create no-policy)
if serving get "$other" 2>"$T/err"; then fail "serving identity got a key outside the policy"; fi
grep -q "PermissionDenied" "$T/err" || fail "default policy: $(cat "$T/err")"
pass "a key without the nbdcrypt policy: the serving identity cannot get it"
