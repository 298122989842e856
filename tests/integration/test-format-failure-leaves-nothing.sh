#!/usr/bin/env bash
# A format that fails leaves nothing behind: a file it created with --size is
# removed (a file that was there before never is), and a KEK it created is
# destroyed again (the native keystore lists the same keys before and after).
# --size on an existing file of another size is refused naming both sizes.
. "$(dirname "$0")/lib-filter.sh"

keks() { nbdcrypt kek list | cut -d' ' -f1 | sort; }
nbdcrypt kek create --name keep >/dev/null
before=$(keks)

# too small: fails before any KEK is made; the new file goes away
must_refuse 1 "^nbdcrypt: removed $T/new.img, which this format had created$" - \
  -- nbdcrypt format "$T/new.img" --size 1M
grep -q "new.img is too small: 1048576 bytes" "$T/must_refuse.err" || fail "no reason given"
[ ! -e "$T/new.img" ] || fail "a failed format left $T/new.img behind"
# an existing small file stays (unchanged, by must_refuse)
head -c 1M /dev/urandom >"$T/old.img"
must_refuse 1 "old.img is too small" "$T/old.img" -- nbdcrypt format "$T/old.img"
[ -e "$T/old.img" ] || fail "a failed format removed a file it had not created"
pass "a failed format removes the file it created, never one that existed"

# kms-wrapped with the native provider: the KEK is created, then wrapping fails
must_refuse 1 "cannot wrap data with a key; destroyed the new kek [0-9a-f-]+ in provider local" - \
  -- nbdcrypt format "$T/wrapped.img" --size 32M --kms-wrapped
[ ! -e "$T/wrapped.img" ] || fail "failed --kms-wrapped format left its file"
[ "$(keks)" = "$before" ] || fail "keys after a failed --kms-wrapped format: $(keks)"
# a target whose writes fail (nbdkit's error filter): KEK created, then the write fails
server_start eio --filter=error memory 64M error-pwrite-rate=100% error=EIO
must_refuse 1 "Input/output error; destroyed the new kek [0-9a-f-]+ in provider local" - \
  -- nbdcrypt format "$(uri eio)"
[ "$(keks)" = "$before" ] || fail "keys after a format whose writes failed: $(keks)"
# a read-only target is refused before any KEK is created
server_start ro -r memory 64M
must_refuse 1 "is read-only" - -- nbdcrypt format "$(uri ro)"
[ "$(keks)" = "$before" ] || fail "keys after a format of a read-only target: $(keks)"
pass "a failed format destroys the KEK it created (wrap refused, writes failing, read-only)"

truncate -s 64M "$T/sized.img"
must_refuse 1 "sized.img exists with 67108864 bytes, but --size asks for 33554432 bytes" \
  "$T/sized.img" -- nbdcrypt format "$T/sized.img" --size 32M
nbdcrypt format "$T/sized.img" --size 64M >/dev/null || fail "--size equal to the file's size"
pass "--size of another size than the existing file refused; the same size formats"
