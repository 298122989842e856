#!/bin/bash
# nbdcrypt-test: sanitize
# An encrypt killed after it wrote its marker (the image has grown by 32 MiB
# and 4 KiB) but before its first header commit is finished by
# "encrypt --resume": the image ends 16 MiB larger than the plaintext, and
# decrypts back to it.  The kill is deterministic: nbdcrypt-faults SIGKILLs
# itself at its 2nd write (the 1st is the marker).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-reencrypt.sh"

make_plain 20M
img=$T/img
cp "$T/plain.img" "$img"
size=$(stat -c %s "$img")
rc=0
NBDCRYPT_TEST_KILL_AT_WRITE=2 "$NBDCRYPT_FAULTS" encrypt "$img" --hotzone 16M >/dev/null 2>&1 || rc=$?
[ "$rc" = 137 ] || fail "encrypt was not killed at its 2nd write (status $rc)"
[ "$(stat -c %s "$img")" = $((size + 32 * 1048576 + 4096)) ] || fail "the marker did not grow the image: $(stat -c %s "$img")"
cmp_range "$img" 0 "$T/plain.img" 0 "$size" || fail "the data changed before the first header commit"
nbdcrypt info "$img" >/dev/null 2>&1 && fail "a header was written before the kill"

nbdcrypt encrypt "$img" --resume 2>"$T/err" || { cat "$T/err"; fail "encrypt --resume after the marker"; }
[ "$(stat -c %s "$img")" = $((size + 16 * 1048576)) ] || fail "size after the resumed encrypt: $(stat -c %s "$img")"
[ -z "$(requirements "$img")" ] || fail "requirement flag left"
[ "$(plain_sha_of "$img")" = "$PLAIN_SHA" ] || fail "the resumed encrypt does not decrypt to the plaintext"
pass "encrypt killed after its marker, before its first header commit: --resume finishes it, size and data right"
