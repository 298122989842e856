#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# kek destroy refuses without --force (exit 1), saying that disks bound to the
# KEK become unreadable, and leaves the keystore and the disk as they were;
# with --force the KEK is gone and the disk bound to it no longer unlocks.
. "$(dirname "$0")/lib.sh"

kek=$(nbdcrypt format "$T/disk.img" --size 32M)
must_refuse 1 "not destroying kek $kek without --force: disks bound to this KEK become unreadable" \
  "$KEYSTORE" -- nbdcrypt kek destroy "$kek"
nbdcrypt kek list | grep -q "^$kek " || fail "kek $kek is gone after a refused destroy"
nbdcrypt check "$T/disk.img" >/dev/null || fail "the disk no longer unlocks after a refused destroy"
must_refuse 2 "force applies to destroy only" "$KEYSTORE" -- nbdcrypt kek list --force
pass "kek destroy without --force refused, keystore unchanged, disk still unlocks"

nbdcrypt kek destroy "$kek" --force || fail "kek destroy --force failed"
if nbdcrypt kek list | grep -q "^$kek "; then fail "kek $kek still listed after destroy --force"; fi
must_refuse 1 "kek $kek not found" "$T/disk.img" -- nbdcrypt check "$T/disk.img"
pass "kek destroy --force destroys; the disk bound to it no longer unlocks"
