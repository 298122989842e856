#!/usr/bin/env bash
# What the online recrypt refuses, with a message that says why: online
# encrypt or decrypt (data the client sees would move), a disk left half way
# with nbdcrypt-reencrypt=no, or by a read-only server, and serve --recrypt
# with --readonly.  The disk is unchanged by each refusal.
. "$(dirname "$0")/lib-filter.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need nbdinfo

img=$T/disk.img
new_disk "$img" 64M >/dev/null

for op in decrypt encrypt; do
  if "${_nbdkit[@]}" -f -U "$T/x.sock" --filter="$NBDCRYPT_FILTER" file file="$img" \
    nbdcrypt-reencrypt=$op >"$T/$op.out" 2>&1; then
    fail "nbdkit started with nbdcrypt-reencrypt=$op"
  fi
  grep -q "nbdcrypt-reencrypt=$op: not supported online" "$T/$op.out" ||
    fail "no clear refusal of online $op: $(cat "$T/$op.out")"
done
pass "online encrypt and decrypt are refused at startup"

rc=0
nbdcrypt serve "$img" --recrypt --readonly --dry-run >/dev/null 2>"$T/ro.err" || rc=$?
[ "$rc" = 2 ] && grep -q "not with --readonly" "$T/ro.err" || fail "serve --recrypt --readonly: rc $rc"
pass "serve --recrypt --readonly is a usage error"

kill_after_first_step recrypt "$img"
[ -n "$(requirements "$img")" ] || fail "the recrypt was not left half way"
sum=$(sha_file "$img")
serve no "$img" nbdcrypt-reencrypt=no
if nbdinfo --size "$(uri no)" >/dev/null 2>&1; then fail "served a half-way disk with =no"; fi
log_has no "nbdcrypt-reencrypt=no: disk .* in the middle of a re-encryption" ||
  fail "no clear refusal with =no: $(grep -m1 "cannot unlock" "$T/no.log")"
server_stop no
server_start ro -r --filter="$NBDCRYPT_FILTER" file file="$img" nbdcrypt-lock=readonly
if nbdinfo --size "$(uri ro)" >/dev/null 2>&1; then fail "a read-only server served a half-way disk"; fi
log_has ro "a read-only server cannot resume a recrypt" ||
  fail "no clear refusal read-only: $(grep -m1 "cannot unlock" "$T/ro.log")"
server_stop ro
[ "$(sha_file "$img")" = "$sum" ] || fail "a refusal changed the disk"
pass "a half-way disk is refused with nbdcrypt-reencrypt=no and by a read-only server, unchanged"
