#!/bin/bash
# nbdcrypt-test: sanitize
# Version negotiation against a real pykmip-server (which speaks 1.0 to 2.0):
# the client offers 1.4 down to 1.0 with Discover Versions and uses the
# highest the server shares; "kmip_version" in the provider's configuration
# caps it.  At 1.4 and 1.2 every request the server sees is of that version
# and the same KEK comes back; 1.0 has no Discover Versions and is used as
# is; 2.0 is refused in the configuration with a reason.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
kms_init
kms_start a
S=127.0.0.1:$(kms_port a)
LOG=$KMS_DIR/a/server.log

# versions seen by the server since line $1 of its log, sorted and unique
versions_since() {
  tail -n +"$(($1 + 1))" "$LOG" | sed -n 's/.*Request specified KMIP version: //p' | sort -u |
    tr '\n' ' '
}
log_lines() { wc -l <"$LOG"; }

for v in 1.4 1.3 1.2 1.1 1.0; do
  got=$(kms_tool alice -s "$S" --protocol "$v" negotiate) || fail "negotiate up to $v"
  [ "$got" = "$v" ] || fail "offered up to $v, negotiated $got"
done
pass "kmip-tool: the highest shared version is used, 1.0 to 1.4"

id=$(kms_tool alice -s "$S" create kek-versions)
kms_tool alice -s "$S" activate "$id"
key=$(kms_tool alice -s "$S" get "$id")
for v in 1.4 1.2; do
  KMS_VERSION=$v kms_config "$T/config-$v.json" alice "$S"
  grep -q "\"kmip_version\": \"$v\"" "$T/config-$v.json" || fail "config lacks kmip_version $v"
  before=$(log_lines)
  [ "$(kms_keys "$T/config-$v.json" kms get "$id")" = "$key" ] || fail "get at $v: another key"
  [ "$(kms_keys "$T/config-$v.json" kms state "$id")" = active ] || fail "state at $v"
  seen=$(versions_since "$before")
  [ "$seen" = "$v " ] || fail "kmip_version $v: the server saw requests of versions: $seen"
  pass "kmip_version $v: Discover Versions, Get and Get Attributes all at $v, same kek"
done

# without kmip_version: 1.4, the best both speak (pykmip also has 2.0)
kms_config "$T/config-default.json" alice "$S"
before=$(log_lines)
[ "$(kms_keys "$T/config-default.json" kms get "$id")" = "$key" ] || fail "get at default"
[ "$(versions_since "$before")" = "1.4 " ] || fail "default saw: $(versions_since "$before")"
pass "default: 1.4"

# 1.0: no Discover Versions (it came with 1.1); Get and Get Attributes work
before=$(log_lines)
[ "$(kms_tool alice -s "$S" --protocol 1.0 get "$id")" = "$key" ] || fail "get at 1.0"
[ "$(kms_tool alice -s "$S" --protocol 1.0 state "$id")" = Active ] || fail "state at 1.0"
[ "$(versions_since "$before")" = "1.0 " ] || fail "1.0 saw: $(versions_since "$before")"
! tail -n +"$((before + 1))" "$LOG" | grep -q "Processing operation: DiscoverVersions" ||
  fail "Discover Versions sent at 1.0"
pass "1.0: no Discover Versions, Get and Get Attributes at 1.0"

# AES-GCM in the KMS needs 1.4: refused below, before anything is sent
if kms_tool alice -s "$S" --protocol 1.2 encrypt "$id" 00 2>"$T/err"; then fail "encrypt at 1.2"; fi
grep -q "needs protocol 1.4 (configured for at most 1.2)" "$T/err" || fail "$(cat "$T/err")"
pass "encrypt below 1.4 refused with the reason"

for bad in 2.0 1.5 1 x; do
  sed "s/\"kmip_version\": \"1.4\"/\"kmip_version\": \"$bad\"/" "$T/config-1.4.json" >"$T/bad.json"
  if kms_keys "$T/bad.json" kms get "$id" 2>"$T/err"; then fail "kmip_version $bad accepted"; fi
  grep -q "kmip_version \"$bad\" (use \"1.0\" to \"1.4\"; 2.0 is not supported)" "$T/err" ||
    fail "kmip_version $bad: $(cat "$T/err")"
done
pass "kmip_version 2.0, 1.5, 1, x refused, naming the field"
