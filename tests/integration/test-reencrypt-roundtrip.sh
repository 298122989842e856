#!/bin/bash
# encrypt in place -> recrypt -> decrypt gives back the plaintext byte for
# byte; sizes, keys and cryptsetup's view are checked at each stage, and the
# detached-header variants, --json events and SIGINT stop/resume as well.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need cryptsetup

make_plain 64M
img=$T/disk.img
cp "$T/plain.img" "$img"

# encrypt: the file grows by the 16 MiB header; a standard LUKS2 disk
nbdcrypt encrypt "$img" 2>"$T/err" || { cat "$T/err"; fail "encrypt"; }
[ "$(stat -c %s "$img")" = $((64 * 1048576 + 16777216)) ] || fail "encrypted size $(stat -c %s "$img")"
[ -z "$(requirements "$img")" ] || fail "requirement flag left after encrypt"
nbdcrypt check "$img" >/dev/null || fail "check after encrypt"
kek=$(kek_of "$img")
kek_bytes "$kek" "$T/kek.bin"
cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" || fail "cryptsetup refuses the encrypted disk"
grep -q "10%\|complete" "$T/err" || fail "no progress lines on a non-terminal: $(cat "$T/err")"
rc=0
cmp_range "$img" 16777216 "$T/plain.img" 0 $((64 * 1048576)) || rc=$?
[ "$rc" = 1 ] || fail "data not encrypted: the data area equals the plaintext (cmp status $rc)"
pass "encrypt in place: size, header, cryptsetup accepts"

# recrypt: new DEK, same KEK, cryptsetup agrees on the key and decrypts
old_vk=$(nbdcrypt_volume_key "$img")
nbdcrypt recrypt "$img" --json >"$T/events" 2>"$T/err" || { cat "$T/err"; fail "recrypt"; }
grep -q '"event":"progress"' "$T/events" || fail "no JSON progress events"
tail -1 "$T/events" | grep -q '"event":"done"' || fail "last JSON event is not done: $(tail -1 "$T/events")"
new_vk=$(nbdcrypt_volume_key "$img")
[ "$old_vk" != "$new_vk" ] || fail "recrypt kept the volume key"
[ "$(cryptsetup_volume_key "$img" "$T/kek.bin")" = "$new_vk" ] || fail "cryptsetup's volume key differs from nbdcrypt's"
[ "$(nbdcrypt info "$img" --json | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["keyslots"]))')" = 1 ] ||
  fail "old keyslot not removed"
detach_header "$img" "$T/cs-hdr.img" "$T/cs-data.img"
cryptsetup reencrypt --decrypt --force-offline-reencrypt --header "$T/cs-hdr.img" --key-file "$T/kek.bin" \
  -q "$T/cs-data.img" >"$T/cs.log" 2>&1 || { cat "$T/cs.log"; fail "cryptsetup reencrypt --decrypt of the recrypted data failed"; }
[ "$(sha_of "$T/cs-data.img")" = "$PLAIN_SHA" ] || fail "cryptsetup's decryption of the recrypted disk differs"
rm -f "$T/cs-hdr.img" "$T/cs-data.img"
pass "recrypt: new DEK == cryptsetup's volume key, cryptsetup decrypts the data"

# SIGINT stops at a resumable point; the same command resumes.  The test hook
# holds the run for 3 s after each hotzone, and the signal is sent once the
# first hotzone is reported done: the stop is certain, not a race.
vk_before=$(nbdcrypt_volume_key "$img")
# The background job truncates $T/events only once it runs: remove the first
# recrypt's events first, or the loop below may read those.
rm -f "$T/events"
NBDCRYPT_TEST_HOTZONE_DELAY_MS=3000 "$NBDCRYPT" recrypt "$img" --hotzone 16M --json >"$T/events" 2>"$T/err" &
pid=$!
for ((i = 0; i < 200; i++)); do
  grep -q '"event":"progress".*"done":[1-9]' "$T/events" 2>/dev/null && break
  sleep 0.05
done
grep -q '"done":16777216' "$T/events" || fail "no progress event after the first hotzone: $(cat "$T/events")"
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 1 ] || fail "SIGINT: exit status $rc, want 1"
grep -q "recrypt stopped at a resumable point; run it again (or with --resume) to continue" "$T/err" ||
  fail "SIGINT message: $(cat "$T/err")"
tail -1 "$T/events" | grep -q '"event":"interrupted"' || fail "last JSON event: $(tail -1 "$T/events")"
grep -q '"done":33554432' "$T/events" && fail "the run went on past the hotzone it was stopped in"
[ "$(requirements "$img")" = nbdcrypt-reencrypt-v1 ] || fail "no operation in progress after SIGINT"
nbdcrypt check "$img" 2>/dev/null && fail "check accepted the interrupted disk"
nbdcrypt recrypt "$img" --resume --json >"$T/events" 2>/dev/null || fail "--resume after SIGINT"
head -1 "$T/events" | grep -q '"done":16777216' || fail "resume did not start at 16 MiB: $(head -1 "$T/events")"
tail -1 "$T/events" | grep -q '"event":"done"' || fail "resume did not finish: $(tail -1 "$T/events")"
[ -z "$(requirements "$img")" ] || fail "requirement flag left after the resumed recrypt"
[ "$(nbdcrypt_volume_key "$img")" != "$vk_before" ] || fail "the resumed recrypt kept the key"
[ "$(plain_sha_of "$img")" = "$PLAIN_SHA" ] || fail "plaintext differs after SIGINT and resume"
pass "SIGINT after the first hotzone: exit 1, resumable, --resume finishes from 16 MiB with the data intact"

# encrypt again on the finished disk: refused as cryptsetup reencrypt
# --encrypt refuses a LUKS device (status 1), nothing written
before=$(sha_of "$img")
rc=0
nbdcrypt encrypt "$img" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "encrypt of an encrypted disk: exit $rc, want 1"
grep -q "^nbdcrypt: $img: already encrypted (LUKS2 header, uuid [0-9a-f-]*); nothing to do$" "$T/err" ||
  fail "encrypt rerun message: $(cat "$T/err")"
[ "$(sha_of "$img")" = "$before" ] || fail "encrypt of an encrypted disk changed it"
nbdcrypt encrypt "$img" --header "$T/hdr-x.img" 2>"$T/err" && fail "encrypt --header of an encrypted disk"
grep -q "already encrypted (a LUKS header at offset 0); not encrypting it again with a detached header" "$T/err" ||
  fail "encrypt --header of an encrypted disk, message: $(cat "$T/err")"
[ "$(sha_of "$img")" = "$before" ] || fail "encrypt --header of an encrypted disk changed it"
[ ! -e "$T/hdr-x.img" ] || fail "the refused encrypt --header left its header file behind"
pass "encrypt of an encrypted disk: exit 1, 'already encrypted', unchanged (also with --header)"

# decrypt: back to the plaintext image, byte for byte
nbdcrypt decrypt "$img" 2>/dev/null || fail "decrypt"
[ "$(sha_of "$img")" = "$PLAIN_SHA" ] || fail "decrypted image differs from the original"
pass "decrypt: plaintext byte for byte, size $(stat -c %s "$img")"
rc=0
nbdcrypt decrypt "$img" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "decrypt of a plaintext image: exit $rc, want 1"
grep -q "^nbdcrypt: $img: not encrypted (no LUKS header); nothing to decrypt$" "$T/err" ||
  fail "decrypt rerun message: $(cat "$T/err")"
[ "$(sha_of "$img")" = "$PLAIN_SHA" ] || fail "decrypt of a plaintext image changed it"
pass "decrypt of a plaintext image: exit 1, 'not encrypted', unchanged"

# detached header: data stays in place, same size
cp "$T/plain.img" "$img"
nbdcrypt encrypt "$img" --header "$T/hdr.img" 2>/dev/null || fail "encrypt --header"
[ "$(stat -c %s "$img")" = $((64 * 1048576)) ] || fail "detached encrypt changed the size"
kek=$(kek_of "$T/hdr.img")
kek_bytes "$kek" "$T/kek2.bin"
cryptsetup open --test-passphrase --header "$T/hdr.img" --key-file "$T/kek2.bin" "$img" ||
  fail "cryptsetup refuses the detached header"
[ "$(sha_of "$img")" != "$PLAIN_SHA" ] || fail "detached encrypt left plaintext"
nbdcrypt encrypt "$img" --header "$T/hdr.img" 2>"$T/err" && fail "encrypt --header rerun succeeded"
grep -q "already encrypted (LUKS2 header in $T/hdr.img, uuid [0-9a-f-]*); nothing to do$" "$T/err" ||
  fail "encrypt --header rerun message: $(cat "$T/err")"
nbdcrypt decrypt "$img" --header "$T/hdr.img" 2>/dev/null || fail "decrypt --header"
[ "$(sha_of "$img")" = "$PLAIN_SHA" ] || fail "detached decrypt differs from the original"
[ ! -e "$T/hdr.img" ] || fail "detached header not removed after decrypt"
pass "detached encrypt/decrypt round trip"

# refusals
nbdcrypt encrypt "$T/plain.img" --header "$T/plain.img" 2>"$T/err" && fail "encrypt into itself"
cp "$T/plain.img" "$img"
nbdcrypt recrypt "$img" 2>"$T/err" && fail "recrypt of a plaintext image"
grep -q "no LUKS2 header" "$T/err" || fail "recrypt plaintext message: $(cat "$T/err")"
nbdcrypt decrypt "$img" --resume 2>"$T/err" && fail "--resume with nothing in progress"
pass "refusals"
