#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# format refuses an image that holds anything libblkid knows (ext4, LUKS1,
# LUKS2 of cryptsetup and of nbdcrypt, an MBR or GPT partition table, swap):
# exit 1, the message names what it found, the image is unchanged.  With
# --force it formats; an all-zero image formats without --force.
. "$(dirname "$0")/lib.sh"
need mkfs.ext4 mkswap sfdisk cryptsetup

printf 'test passphrase' >"$T/pass"
mk() { truncate -s 64M "$T/$1.img"; }
mk ext4 && mkfs.ext4 -q -L precious "$T/ext4.img"
mk luks1 && cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 \
  --key-file "$T/pass" "$T/luks1.img"
cs_disk "$T/luks2.img" 64M "$T/pass"
nbdcrypt format "$T/ours.img" --size 64M >/dev/null
mk mbr && printf 'label: dos\n,32M,L\n' | sfdisk -q "$T/mbr.img"
mk gpt && printf 'label: gpt\n,32M,L\n' | sfdisk -q "$T/gpt.img"
mk swap && mkswap -q "$T/swap.img"

declare -A said=(
  [ext4]="holds an ext4 filesystem \(use --force to overwrite\)"
  [luks1]="holds a LUKS1 header"
  [luks2]="holds a LUKS2 header"
  [ours]="holds a LUKS2 header \(uuid $(nbdcrypt info "$T/ours.img" --json |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')\)"
  [mbr]="holds a dos partition table"
  [gpt]="holds a gpt partition table"
  [swap]="holds a swap area"
)
for kind in ext4 luks1 luks2 ours mbr gpt swap; do
  img=$T/$kind.img
  must_refuse 1 "^nbdcrypt: $img ${said[$kind]}" "$img" -- nbdcrypt format "$img"
  # the same with a matching --size and the other options: still refused
  must_refuse 1 "${said[$kind]}" "$img" -- nbdcrypt format "$img" --size 64M --sector-size 512
done
pass "refused without --force, named, unchanged: ${!said[*]}"

for kind in ext4 luks1 mbr swap; do
  img=$T/$kind.img
  kek=$(nbdcrypt format "$img" --force) || fail "$kind: format --force failed"
  out=$(nbdcrypt check "$img") || fail "$kind: check after format --force"
  grep -q "kek $kek" <<<"$out" || fail "$kind: check does not name kek $kek: $out"
  cryptsetup isLuks --type luks2 "$img" || fail "$kind: cryptsetup sees no LUKS2 after --force"
done
pass "format --force formats over ext4, LUKS1, MBR, swap"

truncate -s 64M "$T/zero.img"
kek=$(nbdcrypt format "$T/zero.img") || fail "an all-zero image was refused"
nbdcrypt check "$T/zero.img" | grep -q "kek $kek" || fail "zero image: check"
pass "an all-zero image formats without --force"
