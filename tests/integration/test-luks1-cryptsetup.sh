#!/usr/bin/env bash
# LUKS1 disks made by cryptsetup luksFormat --type luks1 (AES-256-XTS with
# sha256, the default AES-128-XTS key with sha1): data written through the
# filter reads back byte for byte through the filter, through qemu's luks
# driver, through nbdkit's luks filter and with an independent XTS under the
# volume key cryptsetup reveals; a key file from another keyslot opens too; check says a LUKS1
# disk cannot be unlocked with providers, and why.
. "$(dirname "$0")/lib-filter.sh"
need cryptsetup qemu-img nbdcopy nbdinfo cmp

MiB=$((1024 * 1024))
printf 'cryptsetup luks1 passphrase' >"$T/pass"

for variant in "512 sha256" "256 sha1"; do
  read -r bits hash <<<"$variant"
  img=$T/cs-$bits.img
  truncate -s 24M "$img"
  cryptsetup luksFormat --type luks1 -q --key-size "$bits" --hash "$hash" \
    --pbkdf-force-iterations 1000 --key-file "$T/pass" "$img"
  cryptsetup luksDump "$img" | grep -Eq "^Version:[[:space:]]+1$" || fail "not a LUKS1 disk"
  off=$(nbdcrypt info "$img" --json | "$PY" -c 'import json,sys; i = json.load(sys.stdin); print(i["data_offset"])')
  nbdcrypt info "$img" | grep -q "aes-xts-plain64, $bits-bit key" || fail "info: wrong key size"

  head -c $((8 * MiB)) /dev/urandom >"$T/plain"
  serve cs "$img" nbdcrypt-passphrase=+"$T/pass"
  size=$(nbdinfo --size "$(uri cs)")
  [ "$size" = $((24 * MiB - off)) ] || fail "export size $size, expected 24 MiB - $off"
  nbdcopy "$T/plain" "$(uri cs)"
  nbdcopy "$(uri cs)" "$T/back"
  server_stop cs
  cmp_range "$T/back" 0 "$T/plain" 0 $((8 * MiB)) || fail "$variant: reads back differently"
  rc=0
  cmp_range "$img" "$off" "$T/plain" 0 $((8 * MiB)) || rc=$?
  [ "$rc" = 1 ] || fail "$variant: the filter left the data in clear (cmp status $rc)"

  # qemu's luks driver decrypts it too.
  qemu-img convert --object "secret,id=s0,file=$T/pass" --image-opts \
    "driver=luks,key-secret=s0,file.filename=$img" -O raw "$T/qemu.raw"
  cmp_range "$T/qemu.raw" 0 "$T/plain" 0 $((8 * MiB)) ||
    fail "$variant: qemu reads the filter's writes differently"

  # nbdkit's own luks filter (a LUKS1 reader) decrypts it too.
  server_start nl --filter=luks file file="$img" passphrase=+"$T/pass"
  nbdcopy "$(uri nl)" "$T/nl.raw"
  server_stop nl
  cmp_range "$T/nl.raw" 0 "$T/plain" 0 $((8 * MiB)) ||
    fail "$variant: nbdkit's luks filter reads the filter's writes differently"

  # And an independent XTS under cryptsetup's volume key.
  cryptsetup_volume_key "$img" "$T/pass" | "$PY" -c \
    'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))' >"$T/vk"
  [ "$(stat -c %s "$T/vk")" = $((bits / 8)) ] || fail "cryptsetup gave no $bits-bit key"
  dd if="$img" bs=$MiB iflag=skip_bytes skip="$off" count=8 status=none |
    xts_py decrypt "$T/vk" 512 0 | cmp - "$T/plain" ||
    fail "$variant: the filter's writes do not decrypt with cryptsetup's volume key"
  pass "cryptsetup LUKS1 aes-xts-plain64 $bits-bit $hash: 8 MiB through the filter read back by the filter, qemu, nbdkit's luks filter and cryptsetup's key"
done

# A second keyslot (binary key file) opens with nbdcrypt-keyfile and nbdcrypt-keyslot.
head -c 48 /dev/urandom >"$T/binkey"
printf '\0\0' >>"$T/binkey"
cryptsetup luksAddKey -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$T/cs-256.img" "$T/binkey"
serve kf "$T/cs-256.img" nbdcrypt-keyfile="$T/binkey" nbdcrypt-keyslot=1
nbdcopy "$(uri kf)" "$T/back"
server_stop kf
log_has kf "keyslot 1" || fail "the key file did not open keyslot 1"
cmp_range "$T/back" 0 "$T/plain" 0 $((8 * MiB)) || fail "keyslot 1 reads back differently"
pass "a binary key file in keyslot 1 opens with nbdcrypt-keyfile, nbdcrypt-keyslot=1"

# check: providers cannot unlock a LUKS1 disk; the message says why.
must_refuse 1 "LUKS1 disk [0-9a-f-]+ has no nbdcrypt token .*passphrase or key file" \
  "$T/cs-256.img" -- nbdcrypt check "$T/cs-256.img"
pass "check on LUKS1: exit 1, says a passphrase or key file is needed"

# Commands that change a LUKS2 header refuse a LUKS1 disk and name the way out.
must_refuse 1 "disk [0-9a-f-]+ is LUKS1; convert it to LUKS2 first \(nbdcrypt enroll --convert\)" \
  "$T/cs-256.img" -- nbdcrypt rekey "$T/cs-256.img"
pass "rekey on LUKS1: refused, pointing to enroll --convert"
