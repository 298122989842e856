#!/bin/bash
# nbdcrypt-test: sanitize
# KEK states are the same on both providers (native keystore and a real
# pykmip-server): a new KEK is active; revoke makes it deactivated, a second
# plain revoke is refused, a compromise makes it compromised (from active or
# deactivated); the states are read back by a new handle; a destroyed KEK
# reads as not found, as keys_kek_get says today.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
[ -x "$KMS_KEYS_TOOL" ] || fail "$KMS_KEYS_TOOL not built"
kms_init
kms_start a
S=127.0.0.1:$(kms_port a)
kms_config "$T/config.json" alice "$S"

for provider in local kms; do
  k() { kms_keys "$T/config.json" "$provider" "$@"; }
  state_is() { # ID STATE
    local got
    got=$(k state "$1" 2>"$T/err") || fail "$provider: state of $1: $(cat "$T/err")"
    [ "$got" = "$2" ] || fail "$provider: state of $1 is $got, expected $2"
  }
  retired=$(k create "retired-$provider")
  leaked=$(k create "leaked-$provider")
  [ -n "$retired" ] && [ -n "$leaked" ] || fail "$provider: create printed no id"
  state_is "$retired" active
  state_is "$leaked" active
  pass "$provider: a created kek is active"

  key_before=$(k get "$retired")
  k revoke "$retired"
  state_is "$retired" deactivated
  state_is "$leaked" active
  if k revoke "$retired" 2>"$T/err"; then fail "$provider: revoked a deactivated kek again"; fi
  case $provider in
    local) grep -q "is deactivated, not active: only a compromise can revoke it again" "$T/err" ;;
    kms) grep -q "Revoke failed: .*not active and cannot be revoked" "$T/err" ;;
  esac || fail "$provider: second revoke: $(cat "$T/err")"
  state_is "$retired" deactivated
  # a revoked kek still comes back: refusing it is the caller's decision
  [ "$(k get "$retired")" = "$key_before" ] || fail "$provider: get of a deactivated kek"
  pass "$provider: revoke: deactivated; a second plain revoke refused"

  k revoke-compromised "$leaked"
  state_is "$leaked" compromised
  k revoke-compromised "$retired"
  state_is "$retired" compromised
  list=$(k list)
  grep -q "^$leaked leaked-$provider compromised" <<<"$list" || fail "$provider: list: $list"
  pass "$provider: compromised from active and from deactivated; list shows it"

  k destroy "$leaked"
  if k state "$leaked" 2>"$T/err"; then fail "$provider: state of a destroyed kek"; fi
  grep -q "kek $leaked not found in" "$T/err" || fail "$provider: destroyed: $(cat "$T/err")"
  if k get "$leaked" 2>"$T/err2"; then fail "$provider: get of a destroyed kek"; fi
  grep -q "kek $leaked not found in" "$T/err2" || fail "$provider: get destroyed: $(cat "$T/err2")"
  state_is "$retired" compromised
  pass "$provider: destroyed kek: not found, for state as for get"
done

# the native keystore on disk says it in words, with the date
$PY - "$KMS_DIR/keystore-alice.json" <<'PY' || fail "keystore fields"
import json, re, sys
keys = json.load(open(sys.argv[1]))["keys"]
assert len(keys) == 1, keys
(entry,) = keys.values()
assert entry["state"] == "compromised", entry
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["revoked"]), entry
PY
# and pykmip-server agrees with what the provider read
kms_tool alice -s "$S" state "$retired" | grep -qx Compromised || fail "pykmip state"
pass "native keystore records state and date; the KMS agrees with the kmip provider"
