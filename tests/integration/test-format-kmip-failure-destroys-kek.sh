#!/bin/bash
# A --kms-wrapped format over the kmip provider that fails after creating its
# KEK (the target's writes fail) destroys that KEK on pykmip-server: the KMS
# holds the same keys before and after, and the message says so.
. "$(dirname "${BASH_SOURCE[0]}")/lib-filter.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
kms_init
kms_start a
S=127.0.0.1:$(kms_port a)
kms_config "$T/kms.json" alice "$S"
export NBDCRYPT_CONFIG=$T/kms.json

# every key the KMS holds, whatever its state (Locate of all)
kms_keys() { kms_tool alice -s "$S" locate | sort; }
keep=$(nbdcrypt kek create --provider kms --name keep)
before=$(kms_keys)
[ "$before" = "$keep" ] || fail "the KMS holds '$before', expected only $keep"

server_start eio --filter=error memory 64M error-pwrite-rate=100% error=EIO
for mode in kek kms-wrapped; do
  extra=()
  [ "$mode" = kms-wrapped ] && extra=(--kms-wrapped)
  must_refuse 1 "Input/output error; destroyed the new kek [^ ]+ in provider kms$" - \
    -- nbdcrypt format "$(uri eio)" --provider kms "${extra[@]}"
  [ "$(kms_keys)" = "$before" ] || fail "$mode: the KMS holds '$(kms_keys)' after the failed format"
done
pass "failed kmip formats (kek and kms-wrapped) destroyed the KEKs they created"

# a successful one keeps its KEK
truncate -s 32M "$T/ok.img"
kek=$(nbdcrypt format "$T/ok.img" --provider kms --kms-wrapped)
grep -qx -- "$kek" <<<"$(kms_keys)" || fail "the KEK of a good format is not in the KMS"
nbdcrypt check "$T/ok.img" | grep -q "kek $kek" || fail "check of the good format"
pass "a good kmip format keeps its KEK"
