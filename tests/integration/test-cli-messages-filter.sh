#!/usr/bin/env bash
# The filter names its key: nbdcrypt-config=/nonexistent fails nbdkit's
# start saying which key and why (not "realpath: ..."); nbdcrypt-keyslot=5
# on a disk without keyslot 5 says the disk has no such keyslot and lists
# those it has.  An interrupted encrypt continued by recrypt names both
# commands ("not a encrypt" before).
. "$(dirname "$0")/lib-filter.sh"
need nbdinfo

rc=0
"${_nbdkit[@]}" -f -U "$T/x.sock" --filter="$NBDCRYPT_FILTER" memory 1M \
  nbdcrypt-config=/nonexistent/config.json 2>"$T/nbdkit.err" || rc=$?
[ "$rc" = 1 ] || fail "nbdkit with nbdcrypt-config=/nonexistent exited $rc"
grep -q "nbdcrypt-config=/nonexistent/config.json: cannot use this key provider configuration: No such file or directory" \
  "$T/nbdkit.err" || fail "nbdkit said: $(cat "$T/nbdkit.err")"
if grep -q "realpath" "$T/nbdkit.err"; then fail "still a bare realpath message"; fi
pass "nbdcrypt-config=/nonexistent names the key"

new_disk "$T/disk.img" 32M >/dev/null
serve slot5 "$T/disk.img" nbdcrypt-keyslot=5
if nbdinfo --size "$(uri slot5)" >/dev/null 2>&1; then fail "keyslot 5 that does not exist opened"; fi
log_has slot5 "disk [0-9a-f-]+ has no keyslot 5 \(its keyslots: 0\)" ||
  fail "log: $(grep -v debug: "$T/slot5.log" | tail -3)"
server_stop slot5
pass "nbdcrypt-keyslot=5 says the disk has no keyslot 5"

head -c 48M /dev/urandom >"$T/plain.img"
DELAY_MS=20000 paused_after_first_step encrypt "$T/plain.img"
kill -KILL "$PAUSED_PID"
wait "$PAUSED_PID" 2>/dev/null || true
must_refuse 1 "is in the middle of nbdcrypt encrypt \(run that command to finish it\); nbdcrypt recrypt cannot continue it" \
  "$T/plain.img" -- nbdcrypt recrypt "$T/plain.img"
if grep -q "not a " "$T/must_refuse.err"; then fail "old wording: $(cat "$T/must_refuse.err")"; fi
nbdcrypt encrypt "$T/plain.img" >/dev/null 2>&1 || fail "the encrypt did not finish after the refusal"
pass "recrypt of a half-encrypted disk names both commands"
