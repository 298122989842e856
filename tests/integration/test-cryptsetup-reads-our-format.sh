#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# nbdcrypt format -> cryptsetup: luksDump parses the header, the KEK opens the
# keyslot, and both tools unlock the same volume key (512 and 4096 sectors).
. "$(dirname "$0")/lib.sh"
need cryptsetup od

for ss in 512 4096; do
  img=$T/disk-$ss.img
  kek=$(nbdcrypt format "$img" --size 64M --sector-size "$ss" --label "interop-$ss")
  [[ $kek =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] ||
    fail "format printed '$kek', not a KEK id"
  [ "$(stat -c %s "$img")" = $((64 * 1024 * 1024)) ] || fail "image size"

  dump=$(cryptsetup luksDump "$img") || fail "cryptsetup luksDump refused our $ss header"
  grep -q "sector: $ss \[bytes\]" <<<"$dump" || fail "luksDump: sector size $ss missing"
  grep -q "cipher: aes-xts-plain64" <<<"$dump" || fail "luksDump: cipher"
  grep -q "Label:.*interop-$ss" <<<"$dump" || fail "luksDump: label"
  grep -q "nbdcrypt" <<<"$dump" || fail "luksDump: our token is not listed"
  grep -q "Key:        512 bits" <<<"$dump" || fail "luksDump: 512-bit keyslot"

  kek_bytes "$kek" "$T/kek.bin"
  cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" ||
    fail "cryptsetup cannot open our keyslot with the KEK ($ss)"
  head -c 32 /dev/urandom >"$T/wrong.bin"
  if cryptsetup open --test-passphrase --key-file "$T/wrong.bin" "$img" 2>/dev/null; then
    fail "cryptsetup opened the keyslot with a wrong key"
  fi

  theirs=$(cryptsetup_volume_key "$img" "$T/kek.bin")
  ours=$(nbdcrypt_volume_key "$img")
  [ ${#ours} = 128 ] || fail "nbdcrypt dumped ${#ours} hex digits, want 128"
  [ "$theirs" = "$ours" ] || fail "volume keys differ ($ss): cryptsetup $theirs nbdcrypt $ours"
  [ "$(stat -c %a "$T/vk.bin")" = 600 ] || fail "volume key file mode $(stat -c %a "$T/vk.bin")"

  nbdcrypt check "$img" >/dev/null || fail "nbdcrypt check ($ss)"
  info=$(nbdcrypt info "$img" --json)
  "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["sector_size"]==int(sys.argv[2]) and d["data_offset"]==16777216 and d["tokens"][0]["kek_id"]==sys.argv[3] and d["tokens"][0]["provider"]=="local", d' \
    "$info" "$ss" "$kek" || fail "info --json"
  pass "sector size $ss: cryptsetup and nbdcrypt agree on volume key $ours"
done
