#!/bin/bash
# nbdcrypt-test: sanitize
# Sparse images: decrypt keeps zeros as holes.  A 64 MiB image holding 3 MiB
# of random data (the rest holes) is encrypted (every block is ciphertext
# then: encrypt writes all of them, as cryptsetup does) and decrypted back:
# the same bytes, and no more allocated blocks than the data needs.  The
# same for a detached header (data decrypted in place), and through an
# interrupted and resumed decrypt.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-reencrypt.sh"

# allocated IMG: allocated KiB (st_blocks is in 512-byte units)
allocated() { echo $(($(stat -c %b "$1") * $(stat -c %B "$1") / 1024)); }

img=$T/sparse.img
truncate -s 64M "$img"
for off in 1 20 41; do # MiB
  head -c 1M /dev/urandom | dd of="$img" bs=1M seek=$off conv=notrunc status=none
done
cp --sparse=always "$img" "$T/orig.img"
orig_sha=$(sha_of "$img")
orig_kib=$(allocated "$img")
[ "$orig_kib" -le 4096 ] || fail "the test image is not sparse ($orig_kib KiB)"

nbdcrypt encrypt "$img" 2>"$T/err" || { cat "$T/err"; fail "encrypt"; }
[ "$(allocated "$img")" -ge $((64 * 1024)) ] ||
  fail "encrypt left holes in the ciphertext ($(allocated "$img") KiB): they would read as garbage"
nbdcrypt decrypt "$img" 2>"$T/err" || { cat "$T/err"; fail "decrypt"; }
[ "$(sha_of "$img")" = "$orig_sha" ] || fail "decrypt: the data differs"
[ "$(stat -c %s "$img")" = $((64 * 1048576)) ] || fail "decrypt: size $(stat -c %s "$img")"
now=$(allocated "$img")
[ "$now" -le $((orig_kib + 1024)) ] || fail "decrypt wrote the zeros: $now KiB allocated, the original $orig_kib"
pass "encrypt then decrypt of a sparse image: same bytes, $now KiB allocated (the original $orig_kib)"

# detached header: the data decrypted in place
cp --sparse=always "$T/orig.img" "$img"
nbdcrypt encrypt "$img" --header "$T/hdr" 2>"$T/err" || { cat "$T/err"; fail "encrypt --header"; }
nbdcrypt decrypt "$img" --header "$T/hdr" 2>"$T/err" || { cat "$T/err"; fail "decrypt --header"; }
[ "$(sha_of "$img")" = "$orig_sha" ] || fail "decrypt --header: the data differs"
now=$(allocated "$img")
[ "$now" -le $((orig_kib + 1024)) ] || fail "decrypt --header wrote the zeros: $now KiB allocated"
pass "decrypt --header of a sparse image in place: same bytes, $now KiB allocated"

# interrupted half way (a failed write), resumed
cp --sparse=always "$T/orig.img" "$img"
nbdcrypt encrypt "$img" 2>"$T/err" || { cat "$T/err"; fail "encrypt"; }
NBDCRYPT_TEST_FAIL_WRITE_AT=12 "$NBDCRYPT_FAULTS" decrypt "$img" --hotzone 16M >/dev/null 2>&1 &&
  fail "decrypt with a failed write finished"
[ "$(requirements "$img")" = nbdcrypt-reencrypt-v1 ] || fail "decrypt did not stop half way"
nbdcrypt decrypt "$img" 2>"$T/err" || { cat "$T/err"; fail "resumed decrypt"; }
[ "$(sha_of "$img")" = "$orig_sha" ] || fail "resumed decrypt: the data differs"
now=$(allocated "$img")
[ "$now" -le $((orig_kib + 1024)) ] || fail "resumed decrypt wrote the zeros: $now KiB allocated"
pass "a decrypt interrupted and resumed keeps the image sparse: $now KiB allocated"
