#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# Data encrypted in place by cryptsetup reencrypt --encrypt (4096-byte sectors;
# detached header, and --reduce-device-size) decrypts with libnbdcrypt's XTS
# engine to the original plaintext.
. "$(dirname "$0")/lib.sh"
need cryptsetup od cmp
xts=$NBDCRYPT_TOOLS/xts-tool
[ -x "$xts" ] || fail "test tool $xts not built"

head -c 32 /dev/urandom >"$T/key"
plain=$T/plain.bin
head -c $((8 * 1024 * 1024)) /dev/urandom >"$plain"
cs_args=(--type luks2 --force-offline-reencrypt --sector-size 4096 -q --key-file "$T/key"
         --pbkdf pbkdf2 --pbkdf-force-iterations 1000)

check_decrypts() { # IMG HEADER-IMG LABEL
  local img=$1 hdr=$2 label=$3 off
  cryptsetup luksDump --dump-volume-key --key-file "$T/key" -q "$hdr" |
    sed -n '/MK dump:/,$p' | sed 's/MK dump://' | tr -d ' \t\n' |
    "$PY" -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))' >"$T/vk"
  [ "$(stat -c %s "$T/vk")" = 64 ] || fail "$label: no 64-byte volume key"
  off=$(nbdcrypt info "$hdr" --json | "$PY" -c 'import json,sys; d=json.load(sys.stdin); assert d["sector_size"]==4096; print(d["data_offset"])')
  dd if="$img" bs=1M iflag=skip_bytes,count_bytes skip="$off" count=$((8 * 1024 * 1024)) \
     status=none >"$T/cipher"
  # cmp status 1: the data area differs from the plaintext (0 would be clear
  # data; cmp_range fails by itself if the image is too short to compare).
  local rc=0
  cmp_range "$img" "$off" "$plain" 0 $((8 * 1024 * 1024)) || rc=$?
  [ "$rc" = 1 ] || fail "$label: data was not encrypted (cmp status $rc)"
  "$xts" decrypt "$T/vk" 4096 0 <"$T/cipher" >"$T/decrypted"
  cmp "$T/decrypted" "$plain" || fail "$label: libnbdcrypt decrypts to other bytes"
  pass "$label: data offset $off, 8 MiB decrypt to the plaintext"
}

# Detached header: the data stays at offset 0 of the image.
img=$T/detached.img
cp "$plain" "$img"
truncate -s 16M "$img"
cryptsetup reencrypt --encrypt "${cs_args[@]}" --header "$T/detached.hdr" "$img"
check_decrypts "$img" "$T/detached.hdr" "detached header"

# Header in place: the data moves behind a 16 MiB header.
img=$T/inplace.img
cp "$plain" "$img"
truncate -s 48M "$img"
cryptsetup reencrypt --encrypt "${cs_args[@]}" --reduce-device-size 32M "$img"
check_decrypts "$img" "$img" "reduce-device-size"
