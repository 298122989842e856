#!/bin/bash
# nbdcrypt-test: sanitize
# An operation stopped by an I/O error says that the disk is left half way
# and how to go on, as Ctrl-C does: a real ENOSPC (encrypt on a full tmpfs,
# in a private mount namespace) and an EIO (nbdcrypt-faults fails a write of
# a recrypt).  After the cause is gone, the same command finishes the job.
# An error that changed nothing (no space for the marker) says nothing of
# the kind.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need unshare

half_way_re() { # CMD
  echo "the disk is left half way through the $1 \\(nothing is lost\\): once the cause is fixed, run the same command again \\(or with --resume\\) to continue$"
}

# ENOSPC: 20 MiB of plaintext in a 48 MiB tmpfs; the encrypt needs 56 MiB
# before its last step.  Run inside a private mount namespace; the image is
# copied out before the namespace (and its tmpfs) goes away.
make_plain 20M
rc=0
unshare -m --propagation private -- bash -c '
  set -e
  mkdir -p "$1/small"
  mount -t tmpfs -o size=48M tmpfs "$1/small" || exit 99
  cp "$1/plain.img" "$1/small/img"
  rc=0
  "$2" encrypt "$1/small/img" --hotzone 16M >/dev/null 2>"$1/enospc.err" || rc=$?
  cp --sparse=always "$1/small/img" "$1/img"
  exit $rc' sh "$T" "$NBDCRYPT" || rc=$?
[ "$rc" != 99 ] || fail "cannot mount a tmpfs in a private mount namespace (needs root)"
[ "$rc" = 1 ] || { cat "$T/enospc.err"; fail "encrypt on a full file system exited $rc, expected 1"; }
grep -q "No space left on device" "$T/enospc.err" || fail "ENOSPC message: $(cat "$T/enospc.err")"
grep -Eq "$(half_way_re encrypt)" "$T/enospc.err" || fail "ENOSPC message does not say half way: $(cat "$T/enospc.err")"
[ "$(requirements "$T/img")" = nbdcrypt-reencrypt-v1 ] || fail "the encrypt did not stop half way"
nbdcrypt encrypt "$T/img" 2>"$T/err" || { cat "$T/err"; fail "encrypt run again with space"; }
[ "$(plain_sha_of "$T/img")" = "$PLAIN_SHA" ] || fail "the resumed encrypt does not decrypt to the plaintext"
pass "encrypt stopped by ENOSPC says half way and how to go on; run again, it finishes"

# EIO: the 10th write of a recrypt fails.
cp "$T/img" "$T/enc.img"
kek_bytes "$(kek_of "$T/enc.img")" "$T/kek.bin"
old_vk=$(nbdcrypt_volume_key "$T/enc.img")
rc=0
NBDCRYPT_TEST_FAIL_WRITE_AT=10 "$NBDCRYPT_FAULTS" recrypt "$T/enc.img" --hotzone 16M >/dev/null 2>"$T/eio.err" || rc=$?
[ "$rc" = 1 ] || fail "recrypt with a failed write exited $rc"
grep -q "injected write failure" "$T/eio.err" || fail "EIO message: $(cat "$T/eio.err")"
grep -Eq "$(half_way_re recrypt)" "$T/eio.err" || fail "EIO message does not say half way: $(cat "$T/eio.err")"
[ "$(requirements "$T/enc.img")" = nbdcrypt-reencrypt-v1 ] || fail "the recrypt did not stop half way"
nbdcrypt recrypt "$T/enc.img" --resume 2>"$T/err" || { cat "$T/err"; fail "recrypt --resume"; }
[ "$(nbdcrypt_volume_key "$T/enc.img")" != "$old_vk" ] || fail "the resumed recrypt kept the old key"
[ "$(plain_sha_of "$T/enc.img")" = "$PLAIN_SHA" ] || fail "the resumed recrypt changed the data"
pass "recrypt stopped by EIO says half way and how to go on; --resume finishes it"

# The very first write fails: nothing changed, and the message does not
# claim otherwise.
cp "$T/plain.img" "$T/p.img"
must_refuse 1 "injected write failure" "$T/p.img" -- env NBDCRYPT_TEST_FAIL_WRITE_AT=1 "$NBDCRYPT_FAULTS" encrypt "$T/p.img"
grep -q "half way" "$T/must_refuse.err" && fail "an encrypt that changed nothing says half way"
pass "an error before anything changed does not say half way"
