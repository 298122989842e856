#!/bin/bash
# nbdcrypt-test: sanitize
# Files that decide who gets keys are refused when others could read or
# change them: a TLS client key that group or others can access (kmip-tool
# and nbdcrypt through the kmip provider), and a configuration file group or
# others can write.  The owner-only modes work.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
kms_init
kms_start a
S=127.0.0.1:$(kms_port a)
key=$KMS_DIR/alice.key

id=$(kms_tool alice -s "$S" create kek-modes)
kms_config "$T/config.json" alice "$S"
chmod 600 "$T/config.json"
nbdcrypt --config "$T/config.json" kek list >"$T/list" || fail "kek list with mode 0600 files"
grep -q "$id" "$T/list" || fail "kek list: $(cat "$T/list")"

for mode in 0644 0640 0604 0660; do
  chmod "$mode" "$key"
  if kms_tool alice -s "$S" get "$id" 2>"$T/err"; then fail "client key mode $mode accepted"; fi
  grep -q "client key $key has mode $mode: group or others can read or change it; refusing it (fix with: chmod 600 $key)" \
    "$T/err" || fail "client key $mode: $(cat "$T/err")"
  if nbdcrypt --config "$T/config.json" kek list 2>"$T/err"; then fail "nbdcrypt: key $mode"; fi
  grep -q "client key $key has mode $mode" "$T/err" || fail "nbdcrypt, key $mode: $(cat "$T/err")"
done
chmod 400 "$key"
kms_tool alice -s "$S" get "$id" >/dev/null || fail "client key mode 0400 refused"
chmod 600 "$key"
pass "client key readable by group or others refused (kmip-tool, nbdcrypt); 0600 and 0400 work"

for mode in 0666 0664 0646 0622; do
  chmod "$mode" "$T/config.json"
  if nbdcrypt --config "$T/config.json" kek list 2>"$T/err"; then fail "config $mode accepted"; fi
  grep -q "configuration file $T/config.json has mode $mode: group or others can change it" \
    "$T/err" || fail "config $mode: $(cat "$T/err")"
  if NBDCRYPT_CONFIG=$T/config.json nbdcrypt kek list 2>"$T/err"; then fail "env config $mode"; fi
  grep -q "has mode $mode" "$T/err" || fail "config from the environment, $mode: $(cat "$T/err")"
done
chmod 644 "$T/config.json"
nbdcrypt --config "$T/config.json" kek list >/dev/null || fail "config mode 0644 refused"
pass "configuration writable by group or others refused (--config and \$NBDCRYPT_CONFIG); 0644 works"
