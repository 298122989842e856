#!/usr/bin/env bash
# format refuses an NBD URI whose disk holds a signature, as it refuses a file
# (libblkid probes a memory copy of the disk's head and tail): an ext4
# filesystem and an MBR partition table served by nbdkit are named, left
# unchanged, and --force formats; an all-zero export formats without --force.
. "$(dirname "$0")/lib-filter.sh"
need mkfs.ext4 sfdisk

truncate -s 64M "$T/ext4.img"
mkfs.ext4 -q "$T/ext4.img"
truncate -s 64M "$T/mbr.img"
printf 'label: dos\n,32M,L\n' | sfdisk -q "$T/mbr.img"
truncate -s 64M "$T/zero.img"
server_start ext4 file file="$T/ext4.img"
server_start mbr file file="$T/mbr.img"
server_start zero file file="$T/zero.img"

must_refuse 1 "^nbdcrypt: nbd\+unix:///\?socket=$T/ext4.sock holds an ext4 filesystem \(use --force to overwrite\)" \
  "$T/ext4.img" -- nbdcrypt format "$(uri ext4)"
must_refuse 1 "^nbdcrypt: nbd\+unix:///\?socket=$T/mbr.sock holds a dos partition table" \
  "$T/mbr.img" -- nbdcrypt format "$(uri mbr)"
pass "over NBD: ext4 and MBR refused, named, unchanged"

kek=$(nbdcrypt format "$(uri ext4)" --force) || fail "format --force over NBD"
nbdcrypt check "$(uri ext4)" | grep -q "kek $kek" || fail "check after format --force over NBD"
kek=$(nbdcrypt format "$(uri zero)") || fail "an all-zero export was refused"
nbdcrypt check "$(uri zero)" | grep -q "kek $kek" || fail "check of the zero export"
pass "over NBD: --force formats, an all-zero export formats without it"
