#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# Messages name the target once ("cannot format: X is too small", not
# "X: X: ..."); --hotzone out of range is a usage error (exit 2); enroll
# --help describes its options; the README's nbdfuse step makes its
# mount point first.
. "$(dirname "$0")/lib.sh"

truncate -s 1M "$T/small.img"
for cmd in format decrypt recrypt check info rekey; do
  must_refuse 1 . "$T/small.img" -- nbdcrypt $cmd "$T/small.img"
  n=$(grep -o "$T/small.img" "$T/must_refuse.err" | wc -l)
  [ "$n" = 1 ] || fail "$cmd names the target $n times: $(cat "$T/must_refuse.err")"
done
must_refuse 1 "^nbdcrypt: cannot format: $T/small.img is too small: 1048576 bytes" "$T/small.img" \
  -- nbdcrypt format "$T/small.img"
must_refuse 1 "^nbdcrypt: cannot open $T/none.img: No such file or directory$" - \
  -- nbdcrypt encrypt "$T/none.img"
pass "each message names the target once"

nbdcrypt format "$T/disk.img" --size 32M >/dev/null
for bad in 1M 17000001 300M 4097 12x; do
  must_refuse 2 "^nbdcrypt recrypt: bad --hotzone '$bad'(: a multiple of 4096 bytes from 16M to 256M)?$" \
    "$T/disk.img" -- nbdcrypt recrypt "$T/disk.img" --hotzone "$bad"
done
must_refuse 2 "^nbdcrypt encrypt: bad --hotzone '1M': a multiple of 4096 bytes from 16M to 256M$" \
  "$T/small.img" -- nbdcrypt encrypt "$T/small.img" --hotzone 1M
pass "--hotzone out of range is a usage error (exit 2)"

nbdcrypt enroll --help >"$T/help"
for opt in --passphrase-file --passphrase-fd --keyslot --provider --kek --kms-wrapped --json; do
  grep -Eq "^  $opt( [A-Z]+)? +[a-z]" "$T/help" || fail "enroll --help does not describe $opt"
done
pass "enroll --help describes every option"

readme=$NBDCRYPT_SRCDIR/README.md
m=$(grep -n '^\$ mkdir -p /mnt/nbdcrypt$' "$readme" | head -1 | cut -d: -f1)
f=$(grep -n '^\$ nbdfuse /mnt/nbdcrypt/' "$readme" | head -1 | cut -d: -f1)
[ -n "$m" ] && [ -n "$f" ] && [ "$m" -lt "$f" ] || fail "README: no mkdir -p /mnt/nbdcrypt before nbdfuse"
pass "README makes /mnt/nbdcrypt before nbdfuse"
