#!/usr/bin/env bash
# nbdcrypt enroll --convert on LUKS1 disks (qemu-img, cryptsetup): LUKS2 in
# place with the same uuid and data offset as cryptsetup convert gives, the
# data untouched on disk and read back byte for byte through the filter with
# the KEK (native provider); cryptsetup sees our token and opens the disk
# with the passphrase and with the KEK.  Without --convert, while served, and with no room
# to keep the passphrase during the conversion, it is refused and nothing
# changes.
. "$(dirname "$0")/lib-filter.sh"
. "$(dirname "$0")/lib-luks1.sh"
need cryptsetup qemu-img qemu-nbd nbdcopy cmp

MiB=$((1024 * 1024))
printf 'luks1 to luks2' >"$T/pass"

# tail_sha IMG OFF: SHA-256 of IMG from byte OFF to its end.
tail_sha() { tail -c +$(($2 + 1)) "$1" | sha256sum | cut -d' ' -f1; }
# dump_offset IMG: the data segment offset luksDump shows.
dump_offset() { cryptsetup luksDump "$1" | awk '/^Data segments:/ {s=1} s && /offset:/ {print $2; exit}'; }

for maker in qemu cryptsetup; do
  img=$T/$maker.img
  if [ $maker = qemu ]; then
    qemu_luks1 "$img" 12M "$T/pass"
  else
    truncate -s 14M "$img"
    cryptsetup luksFormat --type luks1 -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$img"
  fi
  off=$(nbdcrypt info "$img" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data_offset"])')
  uuid=$(cryptsetup luksUUID "$img")
  head -c $((8 * MiB)) /dev/urandom >"$T/plain"
  serve w "$img" nbdcrypt-keyfile="$T/pass"
  nbdcopy "$T/plain" "$(uri w)"
  server_stop w

  # Without --convert: refused, nothing written.
  must_refuse 1 "is LUKS1; convert it to LUKS2 first \(nbdcrypt enroll --convert\)" "$img" -- \
    nbdcrypt enroll "$img" --passphrase-file "$T/pass"

  # While the filter serves it, the conversion is refused (the image's writer lock).
  serve busy "$img" nbdcrypt-keyfile="$T/pass"
  must_refuse 1 "is in use by another process \(pid $(cat "$T/busy.pid"), nbdkit\)" "$img" -- \
    nbdcrypt enroll "$img" --passphrase-file "$T/pass" --convert
  server_stop busy

  # cryptsetup's own conversion of a copy, the oracle for the layout.  It
  # shifts all eight LUKS1 keyslot areas by 28 KiB and so refuses qemu's
  # disks, whose keyslot areas reach the payload; we rebuild the keyslots
  # area instead (docs/luks1.md) and convert those too.
  cp "$img" "$T/oracle.img"
  if [ $maker = qemu ]; then
    must_refuse 1 "Cannot convert to LUKS2 format" "$T/oracle.img" -- \
      cryptsetup convert --type luks2 -q "$T/oracle.img"
    cp "$img" "$T/oracle.img"
  else
    cryptsetup convert --type luks2 -q "$T/oracle.img"
  fi

  data_before=$(tail_sha "$img" "$off")
  kek=$(nbdcrypt enroll "$img" --passphrase-file "$T/pass" --convert 2>"$T/enroll.err") ||
    { cat "$T/enroll.err" >&2; fail "$maker: enroll --convert failed"; }
  grep -q "converted from LUKS1 to LUKS2" "$T/enroll.err" || fail "enroll does not say it converted"
  [ "$(tail_sha "$img" "$off")" = "$data_before" ] || fail "$maker: the conversion changed the data area"

  cryptsetup luksDump "$img" >"$T/dump"
  grep -Eq "^Version:[[:space:]]+2$" "$T/dump" || fail "$maker: not LUKS2 after the conversion"
  grep -Eq "^[[:space:]]+[0-9]+: nbdcrypt$" "$T/dump" || fail "$maker: luksDump shows no nbdcrypt token"
  [ "$(cryptsetup luksUUID "$img")" = "$uuid" ] || fail "$maker: the uuid changed"
  if [ $maker = cryptsetup ]; then
    [ "$(dump_offset "$img")" = "$(dump_offset "$T/oracle.img")" ] ||
      fail "$maker: data offset $(dump_offset "$img"), cryptsetup convert gives $(dump_offset "$T/oracle.img")"
    grep "^Keyslots area:" "$T/dump" | cmp - <(cryptsetup luksDump "$T/oracle.img" | grep "^Keyslots area:") ||
      fail "$maker: keyslots area size differs from cryptsetup convert's"
  fi
  [ "$(dump_offset "$img")" = "$off" ] || fail "$maker: the data offset moved from $off"
  grep -E "sector: 512 \[bytes\]" "$T/dump" >/dev/null || fail "$maker: not 512-byte sectors"

  # Served with the KEK (no passphrase): the data reads back byte for byte.
  serve k "$img" nbdcrypt-config="$CFG"
  nbdcopy "$(uri k)" "$T/back"
  server_stop k
  log_has k "kek $kek" || fail "$maker: the filter did not unlock with kek $kek"
  cmp_range "$T/back" 0 "$T/plain" 0 $((8 * MiB)) || fail "$maker: data reads back differently"

  # cryptsetup opens it with the passphrase and with the KEK.
  cryptsetup open --test-passphrase --key-file "$T/pass" "$img" ||
    fail "$maker: cryptsetup does not open the converted disk with the passphrase"
  kek_bytes "$kek" "$T/kek.bin"
  cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" ||
    fail "$maker: cryptsetup does not open the converted disk with the KEK"
  [ "$(cryptsetup_volume_key "$img" "$T/kek.bin")" = "$(cryptsetup_volume_key "$T/oracle.img" "$T/pass")" ] ||
    fail "$maker: the volume key differs from the LUKS1 disk's"
  pass "$maker LUKS1 disk: enroll --convert gives LUKS2 at data offset $off, data read back byte for byte with kek $kek; cryptsetup opens it with passphrase and KEK"
done

# A second LUKS1 keyslot is dropped, and enroll says so: its key no longer opens.
img=$T/two.img
truncate -s 12M "$img"
cryptsetup luksFormat --type luks1 -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$img"
printf 'second key' >"$T/second"
cryptsetup luksAddKey -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$img" "$T/second"
nbdcrypt enroll "$img" --passphrase-file "$T/pass" --convert >/dev/null 2>"$T/enroll.err"
grep -q "1 other LUKS1 keyslot dropped: only the passphrase given is kept" "$T/enroll.err" ||
  fail "enroll does not say the second LUKS1 keyslot was dropped"
if cryptsetup open --test-passphrase --key-file "$T/second" "$img" 2>/dev/null; then
  fail "the dropped keyslot's key still opens the converted disk"
fi
cryptsetup open --test-passphrase --key-file "$T/pass" "$img" || fail "the passphrase given was not kept"
pass "a second LUKS1 keyslot: dropped, said so, its key no longer opens; the passphrase given does"

# --json: one result object with the conversion's fields; the KEK it names opens the disk.
img=$T/json.img
truncate -s 12M "$img"
cryptsetup luksFormat --type luks1 -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$img"
cryptsetup luksAddKey -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$img" "$T/second"
nbdcrypt enroll "$img" --passphrase-file "$T/pass" --convert --json >"$T/enroll.json" 2>"$T/enroll.err" ||
  { cat "$T/enroll.err" >&2; fail "enroll --convert --json failed"; }
kek=$("$PY" - "$T/enroll.json" "$img" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["target"] == sys.argv[2] and j["ok"] is True, j
assert j["converted"] is True and j["luks1_keyslots_dropped"] == 1, j
assert j["kek_created"] is True and j["mode"] == "kek" and isinstance(j["keyslot"], int), j
print(j["kek_id"])
PYEOF
) || fail "enroll --convert --json: $(cat "$T/enroll.json")"
kek_bytes "$kek" "$T/kek.bin"
cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" ||
  fail "the kek enroll --convert --json names does not open the converted disk"
pass "enroll --convert --json: converted, one LUKS1 keyslot dropped, and its kek_id opens the disk"

# A failure while building the LUKS2 header (the native keystore cannot wrap
# for --kms-wrapped): nothing written, the KEK made for it destroyed.
img=$T/wrapped.img
truncate -s 12M "$img"
cryptsetup luksFormat --type luks1 -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$img"
must_refuse 1 "building the LUKS2 header: .*cannot wrap" \
  "$img" -- nbdcrypt enroll "$img" --passphrase-file "$T/pass" --convert --kms-wrapped
grep -q "created for this enrollment was destroyed" "$T/must_refuse.err" ||
  fail "--kms-wrapped failure: the new KEK was not destroyed"
nbdcrypt info "$img" | grep -q ": LUKS1$" || fail "--kms-wrapped failure: no longer LUKS1"
pass "a conversion that fails before writing leaves the LUKS1 disk unchanged and destroys its new KEK"

# Every LUKS1 keyslot in use: the passphrase cannot be kept beyond the LUKS2
# metadata during the conversion, so it is refused before anything is written.
img=$T/full.img
truncate -s 8M "$img"
cryptsetup luksFormat --type luks1 -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$img"
for i in 1 2 3 4 5 6 7; do
  printf 'key %s' "$i" >"$T/k$i"
  cryptsetup luksAddKey -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$img" "$T/k$i"
done
must_refuse 1 "no inactive LUKS1 keyslot .* remove a keyslot first" "$img" -- \
  nbdcrypt enroll "$img" --passphrase-file "$T/pass" --convert
pass "all eight LUKS1 keyslots in use: enroll --convert refused, the image unchanged"

# A wrong passphrase: refused, nothing written.
printf 'wrong' >"$T/wrong"
must_refuse 1 "no keyslot matches the passphrase" "$img" -- \
  nbdcrypt enroll "$img" --passphrase-file "$T/wrong" --convert
pass "wrong passphrase: enroll --convert refused, the image unchanged"
