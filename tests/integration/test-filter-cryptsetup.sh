#!/usr/bin/env bash
# Cross-check with cryptsetup, both ways:
# 1. data written through the filter decrypts, with the volume key cryptsetup
#    reveals and an independent XTS (python3-cryptography), to the plaintext;
# 2. data encrypted in place by cryptsetup reencrypt --encrypt reads back
#    through the filter (nbdcrypt-passphrase / nbdcrypt-keyfile), for 4096-
#    and 512-byte sectors; and the filter's writes to such a disk decrypt
#    with cryptsetup's key too.
. "$(dirname "$0")/lib-filter.sh"
need cryptsetup nbdcopy nbdsh cmp

MiB=$((1024 * 1024))

# ---- 1: our disk, written through the filter, decrypted independently.
img=$T/ours.img
kek=$(new_disk "$img" 64M)
off=$(data_offset "$img")
head -c $((8 * MiB)) /dev/urandom >"$T/plain8"
serve ours "$img"
nbdcopy "$T/plain8" "$(uri ours)"
# A few unaligned writes on top (read-modify-write).
nbdsh -u "$(uri ours)" -c '
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
h.pwrite(b"\x5a" * 1, 4097)
h.pwrite(b"\xa5" * 513, 1234567)
h.flush()
'
server_stop ours
"$PY" - "$T/plain8" <<'PYEOF'
import sys
p = bytearray(open(sys.argv[1], "rb").read())
p[4097:4098] = b"\x5a"
p[1234567:1234567 + 513] = b"\xa5" * 513
open(sys.argv[1], "wb").write(p)
PYEOF
kek_bytes "$kek" "$T/kek.bin"
cryptsetup_volume_key "$img" "$T/kek.bin" | "$PY" -c \
  'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))' >"$T/vk"
[ "$(stat -c %s "$T/vk")" = 64 ] || fail "cryptsetup gave no 64-byte volume key"
dd if="$img" bs=$MiB iflag=skip_bytes skip="$off" count=8 status=none >"$T/cipher8"
xts_py decrypt "$T/vk" 4096 0 <"$T/cipher8" >"$T/dec8"
cmp "$T/dec8" "$T/plain8" || fail "filter-written data does not decrypt with cryptsetup's key"
pass "8 MiB written through the filter (plus 1- and 513-byte writes) decrypt with cryptsetup's volume key"

# The emergency path: cryptsetup opens our disk with the KEK as key file.
cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" ||
  fail "cryptsetup cannot open our disk with the KEK"
pass "cryptsetup accepts the KEK as the keyslot secret"

# ---- 2: cryptsetup's disk, data encrypted by cryptsetup, read through the filter.
printf 'correct horse battery staple' >"$T/pass"
for ss in 4096 512; do
  img=$T/cs-$ss.img
  head -c $((16 * MiB)) /dev/urandom >"$T/plain16"
  cp "$T/plain16" "$img"
  truncate -s 48M "$img"
  cryptsetup reencrypt --encrypt --type luks2 --force-offline-reencrypt -q --sector-size "$ss" \
    --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$T/pass" --reduce-device-size 32M \
    "$img"
  csoff=$(cryptsetup luksDump "$img" | awk '/offset:/ && /bytes/ {print $2; exit}')
  [ -n "$csoff" ] || fail "no data offset in luksDump"
  # The data area's first 16 MiB must now differ from the plaintext (cmp
  # status 1; 0 would be clear data, 2 a compare that did not happen).
  rc=0
  cmp_range "$img" "$csoff" "$T/plain16" 0 $((16 * MiB)) || rc=$?
  [ "$rc" = 1 ] || fail "cryptsetup left the data in clear at offset $csoff (cmp status $rc)"
  serve cs$ss "$img" nbdcrypt-passphrase=+"$T/pass"
  nbdcopy "$(uri cs$ss)" "$T/back"
  cmp <(head -c $((16 * MiB)) "$T/back") "$T/plain16" ||
    fail "cryptsetup-encrypted data ($ss-byte sectors) reads back differently"
  size=$(nbdinfo --size "$(uri cs$ss)")
  [ "$size" = $((48 * MiB - csoff)) ] || fail "export size $size, expected 48 MiB - $csoff"
  # Our writes to cryptsetup's disk decrypt with cryptsetup's key.
  head -c $((2 * MiB)) /dev/urandom >"$T/plain2"
  nbdcopy "$T/plain2" "$(uri cs$ss)"
  server_stop cs$ss
  cryptsetup_volume_key "$img" "$T/pass" | "$PY" -c \
    'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))' >"$T/vk"
  dd if="$img" bs=$MiB iflag=skip_bytes skip="$csoff" count=2 status=none >"$T/cipher2"
  xts_py decrypt "$T/vk" "$ss" 0 <"$T/cipher2" | cmp - "$T/plain2" ||
    fail "our writes to cryptsetup's disk ($ss) do not decrypt with its key"
  pass "cryptsetup reencrypt --encrypt, $ss-byte sectors: 16 MiB read back through the filter; our writes decrypt with its key"
done

# A binary key file (NUL bytes allowed) unlocks with nbdcrypt-keyfile.
img=$T/keyfile.img
head -c 64 /dev/urandom >"$T/binkey"
printf '\0\0' >>"$T/binkey"
cs_disk "$img" 32M "$T/binkey"
serve kf "$img" nbdcrypt-keyfile="$T/binkey" nbdcrypt-keyslot=0
nbdsh -u "$(uri kf)" -c 'h.pwrite(b"hello" * 1024, 0); assert h.pread(5120, 0) == b"hello" * 1024'
server_stop kf
pass "binary key file with NUL bytes unlocks with nbdcrypt-keyfile"
