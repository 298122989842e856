#!/usr/bin/env bash
# Disks whose detached header cryptsetup made, served with nbdcrypt-header=:
# 1. `cryptsetup luksFormat --header`: data written through the filter (key
#    file) decrypts with the volume key cryptsetup reveals and an independent
#    XTS (python3-cryptography); the export is the whole data device;
# 2. `cryptsetup reencrypt --encrypt --header`: the data cryptsetup encrypted
#    in place reads back through the filter as the original plaintext;
# 3. `nbdcrypt enroll --header` binds a KEK to such a header: `check --header`
#    then exits 0 and the disk serves with the KEK alone, and cryptsetup still
#    opens it with its key file.
. "$(dirname "$0")/lib-filter.sh"
need cryptsetup nbdcopy nbdinfo cmp

MiB=$((1024 * 1024))
printf 'correct horse battery staple' >"$T/key"
cs_opts=(--type luks2 -q --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$T/key")

# ---- 1: luksFormat --header, written through the filter.
data=$T/fmt.data
hdr=$T/fmt.hdr
truncate -s $((24 * MiB)) "$data"
cryptsetup luksFormat "${cs_opts[@]}" --header "$hdr" "$data"
serve f "$data" nbdcrypt-header="$hdr" nbdcrypt-keyfile="$T/key"
[ "$(nbdinfo --size "$(uri f)")" = $((24 * MiB)) ] || fail "export size is not the data device's"
head -c $((4 * MiB)) /dev/urandom >"$T/plain4"
nbdcopy "$T/plain4" "$(uri f)"
server_stop f
cryptsetup_volume_key "$hdr" "$T/key" | "$PY" -c \
  'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))' >"$T/vk"
[ "$(stat -c %s "$T/vk")" = 64 ] || fail "cryptsetup gave no 64-byte volume key"
ss=$(cryptsetup luksDump "$hdr" | awk '/sector:/ {print $2; exit}')
[ -n "$ss" ] || fail "no sector size in luksDump"
head -c $((4 * MiB)) "$data" >"$T/cipher4"
xts_py decrypt "$T/vk" "$ss" 0 <"$T/cipher4" | cmp - "$T/plain4" ||
  fail "data written through nbdcrypt-header= does not decrypt with cryptsetup's key"
pass "luksFormat --header: data written through the filter decrypts with cryptsetup's volume key"

# ---- 2: reencrypt --encrypt --header: cryptsetup's ciphertext reads back.
head -c $((16 * MiB)) /dev/urandom >"$T/plain16"
data=$T/enc.data
hdr=$T/enc.hdr
cp "$T/plain16" "$data"
cryptsetup reencrypt --encrypt "${cs_opts[@]}" --force-offline-reencrypt --header "$hdr" "$data"
rc=0
cmp -s "$data" "$T/plain16" || rc=$?
[ "$rc" = 1 ] || fail "cryptsetup left the data in clear (cmp status $rc)"
serve e "$data" nbdcrypt-header="$hdr" nbdcrypt-passphrase=+"$T/key"
nbdcopy "$(uri e)" "$T/back"
cmp "$T/back" "$T/plain16" || fail "cryptsetup-encrypted data reads back differently"
server_stop e
pass "reencrypt --encrypt --header: cryptsetup's data reads back through the filter"

# ---- 3: enroll --header, then check and serve with the KEK.
must_refuse 1 "no nbdcrypt token; unlock it with a passphrase" "$hdr" -- \
  nbdcrypt check "$data" --header "$hdr"
kek=$(nbdcrypt enroll "$data" --header "$hdr" --passphrase-file "$T/key" 2>/dev/null) ||
  fail "enroll --header failed"
nbdcrypt check "$data" --header "$hdr" >"$T/check.out" || fail "check --header after enroll: $(cat "$T/check.out")"
grep -q "unlocks with provider local, kek $kek" "$T/check.out" || fail "check --header: $(cat "$T/check.out")"
serve k "$data" nbdcrypt-header="$hdr"
nbdcopy "$(uri k)" "$T/back"
log_has k "kek $kek" || fail "the server did not unlock with the enrolled KEK"
cmp "$T/back" "$T/plain16" || fail "after enroll --header the disk reads back differently"
server_stop k
cryptsetup open --test-passphrase --header "$hdr" --key-file "$T/key" "$data" ||
  fail "cryptsetup's key file no longer opens the header after enroll"
pass "enroll --header: check --header exits 0, the KEK serves it, cryptsetup's key still opens it"
