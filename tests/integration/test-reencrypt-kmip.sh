#!/bin/bash
# Deep recrypt of a disk whose keyslot secret is wrapped by a real
# pykmip-server (mode kms-wrapped): the new volume key is wrapped again under
# the same KMS key, a run killed half way is resumed (both keyslots unwrapped
# through the KMS), and the data is intact.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-reencrypt.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
kms_init
kms_start a
kms_config "$T/kms.json" alice "127.0.0.1:$(kms_port a)"
export NBDCRYPT_CONFIG=$T/kms.json

tokens() { # IMG: "provider/mode/kek" of each nbdcrypt token
  nbdcrypt info "$1" --json | "$PY" -c '
import json, sys
print(" ".join("%s/%s/%s" % (t["provider"], t["mode"], t["kek_id"])
               for t in json.load(sys.stdin)["tokens"] if t["type"] == "nbdcrypt"))'
}

make_plain 32M
img=$T/disk.img
cp "$T/plain.img" "$img"
nbdcrypt encrypt "$img" --provider kms --kms-wrapped 2>"$T/err" || { cat "$T/err"; fail "encrypt --kms-wrapped"; }
kek=$(kek_of "$img")
[ "$(tokens "$img")" = "kms/kms-wrapped/$kek" ] || fail "after encrypt: $(tokens "$img")"
vk0=$(nbdcrypt_volume_key "$img")

kill_after_first_step recrypt "$img"
[ "$(requirements "$img")" = nbdcrypt-reencrypt-v1 ] || fail "recrypt not caught half way"
nbdcrypt recrypt "$img" --resume 2>"$T/err" || { cat "$T/err"; fail "resume of the kms-wrapped recrypt"; }
[ -z "$(requirements "$img")" ] || fail "requirement flag left"
[ "$(tokens "$img")" = "kms/kms-wrapped/$kek" ] || fail "after recrypt: $(tokens "$img")"
[ "$(nbdcrypt_volume_key "$img")" != "$vk0" ] || fail "recrypt kept the volume key"
nbdcrypt check "$img" >/dev/null || fail "check after recrypt"
[ "$(plain_sha_of "$img")" = "$PLAIN_SHA" ] || fail "data differs after the kms-wrapped recrypt"
pass "kms-wrapped recrypt through pykmip-server, killed half way and resumed: new key, same KMS key, data intact"
