#!/bin/bash
# A recrypt of a disk bound to a KMS KEK (mode kek) fetches the KEK from the
# KMS once: it opens the old key with it and binds the new key to the same
# KEK with the bytes it already holds (the KEK's state is still checked).
# Counted in pykmip-server's log ("Processing operation: Get").
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-reencrypt.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
kms_init
kms_start a
kms_config "$T/kms.json" alice "127.0.0.1:$(kms_port a)"
export NBDCRYPT_CONFIG=$T/kms.json

gets() { grep -c "Processing operation: Get$" "$KMS_DIR/a/server.log" || true; }

make_plain 20M
img=$T/disk.img
cp "$T/plain.img" "$img"
nbdcrypt encrypt "$img" --provider kms 2>"$T/err" || { cat "$T/err"; fail "encrypt --provider kms"; }
kek=$(kek_of "$img")
vk0=$(nbdcrypt_volume_key "$img")
before=$(gets)
nbdcrypt recrypt "$img" 2>"$T/err" || { cat "$T/err"; fail "recrypt"; }
after=$(gets)
[ $((after - before)) = 1 ] || fail "recrypt fetched the KEK $((after - before)) times"
[ "$(kek_of "$img")" = "$kek" ] || fail "recrypt moved the key to another KEK"
[ "$(nbdcrypt_volume_key "$img")" != "$vk0" ] || fail "recrypt kept the volume key"
[ "$(plain_sha_of "$img")" = "$PLAIN_SHA" ] || fail "data differs after the recrypt"
pass "recrypt of a KMS-bound disk fetches its KEK once; new key bound to the same KEK, data intact"
