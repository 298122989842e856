#!/usr/bin/env bash
# No key in a core dump with the kmip provider (a real pykmip-server): gcore
# of a serving nbdkit with the filter after I/O, for a disk in kek mode (the
# KEK is fetched with Get and is the keyslot secret) and one in kms-wrapped
# mode (the KMS decrypts a random slot secret), and of the CLI paused in the
# middle of a recrypt of the kms-wrapped disk, holds none of the 16-byte
# quarters of the volume key, the KEK or the slot secret, in memory or in
# any thread's registers (TLS record buffers, TTLV answers and the KMIP
# client's copies included).  Both backends (CI runs it in the OpenSSL build
# too).  The test reads the KEK and the slot secret with the test KMIP tool.
. "$(dirname "${BASH_SOURCE[0]}")/lib-filter.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-core.sh"
kms_skip_unless_available
need nbdcopy cmp cryptsetup xxd
core_search_works
kms_init
kms_start a
A=127.0.0.1:$(kms_port a)
kms_config "$T/kms.json" alice "$A"
export NBDCRYPT_CONFIG=$T/kms.json

id=$(nbdcrypt kek create --provider kms --name core-kek)
kek_hex=$(kms_tool alice -s "$A" get "$id")
[ ${#kek_hex} = 64 ] || fail "KEK from the KMS: ${#kek_hex} hex digits"

# slot_secret IMAGE: the kms-wrapped token's slot secret, as hex, decrypted by
# the KMS with the test tool.
slot_secret() {
  local iv tag wrapped
  cryptsetup luksDump --dump-json-metadata "$1" >"$T/meta.json" || fail "luksDump of $1"
  read -r iv tag wrapped < <("$PY" - "$T/meta.json" <<'PYEOF'
import base64, json, sys
t = [t for t in json.load(open(sys.argv[1]))["tokens"].values() if t["type"] == "nbdcrypt"]
assert len(t) == 1 and t[0]["mode"] == "kms-wrapped", t
print(*(base64.b64decode(t[0][k]).hex() for k in ("iv", "tag", "wrapped")))
PYEOF
  )
  kms_tool alice -s "$A" decrypt "$id" "$iv" "$tag" "$wrapped"
}

head -c 8M /dev/urandom >"$T/plain"
secret=""
for mode in kek kms-wrapped; do
  img=$T/$mode.img
  extra=()
  [ "$mode" = kms-wrapped ] && extra=(--kms-wrapped)
  nbdcrypt format "$img" --size 48M --provider kms --kek "$id" "${extra[@]}" >/dev/null
  dek=$(nbdcrypt_volume_key "$img")
  keys=("$dek" "$kek_hex")
  if [ "$mode" = kms-wrapped ]; then
    secret=$(slot_secret "$img")
    [ ${#secret} = 64 ] || [ ${#secret} = 128 ] || fail "slot secret: ${#secret} hex digits"
    keys+=("$secret")
  fi
  [ ${#dek} = 128 ] || fail "volume key: ${#dek} hex digits"
  server_start "$mode" --threads=4 --filter="$NBDCRYPT_FILTER" file file="$img" \
    nbdcrypt-config="$T/kms.json"
  nbdcopy "$T/plain" "$(uri "$mode")"
  nbdcopy "$(uri "$mode")" "$T/back"
  cmp -n $((8 * 1024 * 1024)) "$T/plain" "$T/back" || fail "$mode: read back differs"
  dump "$mode" "$(cat "$T/$mode.pid")"
  core_has_no_key "serving nbdkit ($mode)" "$T/$mode.core" "${keys[@]}"
  server_stop "$mode"
  rm -f "$T/$mode.core"
  pass "kmip $mode: gcore of a serving nbdkit after I/O holds no quarter of the volume key, KEK${secret:+ or slot secret}"
done

# The CLI in the middle of a recrypt of the kms-wrapped disk.
img=$T/kms-wrapped.img
recrypt_paused_core recrypt "$img"
new_dek=$(nbdcrypt_volume_key "$img")
[ "$new_dek" != "$dek" ] || fail "recrypt did not change the volume key"
new_secret=$(slot_secret "$img")
core_has_no_key "recrypt (kms-wrapped)" "$T/recrypt.core" "$dek" "$new_dek" "$kek_hex" "$secret" "$new_secret"
pass "kmip kms-wrapped: gcore of the CLI mid-recrypt holds no quarter of the old or new volume key, KEK or slot secret"
