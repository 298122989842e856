#!/usr/bin/env bash
# enroll --convert (LUKS1 -> LUKS2) stopped at every one of its writes, by
# SIGKILL, and at every metadata write and the last by an EIO write failure
# (nbdcrypt-faults: the CLI with a
# fault-injecting bdev under the disk; the library reads no test variable).
# After each stop the disk is LUKS1 or LUKS2, never neither: LUKS1, it opens
# with the passphrase (filter and cryptsetup) and the data reads back byte
# for byte; LUKS2, it opens with the KEK and the passphrase in cryptsetup and
# reads back.  It is LUKS1 up to a single switch write and LUKS2 after it,
# the same for a kill and a failure at the same write; the switch write
# changes the first 512-byte sector only (the rest of the first 4 KiB is the
# LUKS1 phdr's), while the secondary LUKS2 header, written before it, is
# complete.  Running the same command again then finishes the conversion:
# LUKS2, opening with its KEK and the passphrase, data intact.
. "$(dirname "$0")/lib-filter.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need cryptsetup nbdcopy cmp

MiB=$((1024 * 1024))
printf 'crash me' >"$T/pass"
base=$T/base.img
truncate -s 8M "$base"
cryptsetup luksFormat --type luks1 -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$base"
head -c $((4 * MiB)) /dev/urandom >"$T/plain"
serve w "$base" nbdcrypt-keyfile="$T/pass"
nbdcopy "$T/plain" "$(uri w)"
server_stop w

# reads_back NAME IMG: served with the passphrase (a captive nbdkit that
# ends with its nbdcopy), the data is all there.
reads_back() {
  rm -f "$T/back"
  "${_nbdkit[@]}" -U - --run "nbdcopy \"\$uri\" $(printf %q "$T/back")" --filter="$NBDCRYPT_FILTER" \
    file file="$2" nbdcrypt-keyfile="$T/pass" 2>"$T/$1.log" ||
    { cat "$T/$1.log" >&2; fail "$1: cannot read through the filter"; }
  cmp_range "$T/back" 0 "$T/plain" 0 $((4 * MiB)) || fail "$1: data reads back differently"
}

# version_of IMG: the LUKS version cryptsetup reads, empty if none.
version_of() { { cryptsetup luksDump "$1" 2>/dev/null || true; } | awk '/^Version:/ {print $2}'; }

# opens_luks2 WHAT IMG KEK: cryptsetup opens IMG with the KEK and with the
# passphrase, and the data reads back through the filter.
opens_luks2() {
  [ -n "$3" ] || fail "$1: no KEK to try"
  kek_bytes "$3" "$T/kek.bin"
  cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$2" ||
    fail "$1: cryptsetup does not open the LUKS2 disk with the KEK"
  cryptsetup open --test-passphrase --key-file "$T/pass" "$2" ||
    fail "$1: cryptsetup does not open the LUKS2 disk with the passphrase"
  reads_back "r$RANDOM" "$2"
}

# The only KEK of the keystore (it is emptied before each interrupted run).
only_kek() {
  "$PY" -c 'import json,sys; k=list(json.load(open(sys.argv[1]))["keys"]); assert len(k)==1, k; print(k[0])' "$KEYSTORE"
}

# The writes of an uninterrupted conversion.
cp "$base" "$T/count.img"
NBDCRYPT_TEST_COUNT_WRITES=$T/count "$NBDCRYPT_FAULTS" enroll "$T/count.img" \
  --passphrase-file "$T/pass" --convert >"$T/kek" 2>"$T/enroll.err" ||
  { cat "$T/enroll.err" >&2; fail "uninterrupted enroll --convert under nbdcrypt-faults"; }
total=$(cat "$T/count")
# at least: phdr, keyslot areas, secondary header, JSON area, first sector,
# rest of the binary header, the wipe
[ "$total" -ge 7 ] && [ "$total" -le 64 ] || fail "uninterrupted conversion made $total writes"
[ "$(version_of "$T/count.img")" = 2 ] || fail "uninterrupted conversion did not make LUKS2"
opens_luks2 "uninterrupted" "$T/count.img" "$(cat "$T/kek")"
rm -f "$KEYSTORE" "$T/count.img"

# check_stopped HOW N IMG: the state after the stop, then the rerun.
check_stopped() {
  local how=$1 n=$2 img=$3 v kek
  v=$(version_of "$img")
  case $v in
  1)
    nbdcrypt info "$img" | grep -q ": LUKS1$" || fail "$how at write $n: info does not read LUKS1"
    cryptsetup open --test-passphrase --key-file "$T/pass" "$img" ||
      fail "$how at write $n: cryptsetup does not open the LUKS1 disk with the passphrase"
    reads_back "l$n" "$img"
    ;;
  2) opens_luks2 "$how at write $n" "$img" "$(only_kek)" ;;
  *) fail "$how at write $n: the disk is neither LUKS1 nor LUKS2 (version '$v')" ;;
  esac
  eval "version_${how}_$n=$v"
  nbdcrypt enroll "$img" --passphrase-file "$T/pass" --convert >"$T/kek2" 2>"$T/enroll.err" ||
    { cat "$T/enroll.err" >&2; fail "$how at write $n: running enroll --convert again failed"; }
  kek=$(cat "$T/kek2")
  [ "$(version_of "$img")" = 2 ] || fail "$how at write $n: the rerun did not make LUKS2"
  opens_luks2 "$how at write $n, rerun" "$img" "$kek"
  rm -f "$KEYSTORE"
}

switch=
for n in $(seq 1 "$total"); do
  img=$T/kill$n.img
  cp "$base" "$img"
  rc=0
  NBDCRYPT_TEST_KILL_AT_WRITE=$n "$NBDCRYPT_FAULTS" enroll "$img" --passphrase-file "$T/pass" \
    --convert >/dev/null 2>"$T/enroll.err" || rc=$?
  [ "$rc" = 137 ] || { cat "$T/enroll.err" >&2; fail "enroll was not killed at write $n (status $rc)"; }
  cp "$img" "$T/stopped$n.img"
  check_stopped kill "$n" "$img"
  v=$(eval echo "\$version_kill_$n")
  if [ -z "$switch" ] && [ "$v" = 2 ]; then
    switch=$((n - 1))
    [ "$switch" -ge 5 ] || fail "LUKS2 already after $switch writes: phdr, keyslots, secondary and JSON areas come first"
    # writes 1..switch happened: the last one turned LUKS1 into LUKS2, and
    # it changed only the first sector of the first 4 KiB
    cmp_range "$T/stopped$n.img" 512 "$T/stopped$switch.img" 512 3584 ||
      fail "the switch write changed more of the first 4 KiB than its first sector"
    cmp -s -n 512 "$T/stopped$n.img" "$T/stopped$switch.img" &&
      fail "the switch write left the first sector as it was"
  elif [ -n "$switch" ] && [ "$v" = 1 ]; then
    fail "killed at write $n: LUKS1 again after LUKS2 from write $((switch + 1))"
  fi
  rm -f "$img" "$T/stopped$((n - 2)).img"
done
[ -n "$switch" ] || fail "no kill left a LUKS2 disk: the last write is not the wipe"
[ "$switch" -lt "$total" ] || fail "the switch is the last write"
pass "killed at each of the $total writes: LUKS1 through write $switch, LUKS2 from write $((switch + 1)); each opens, reads back, and a rerun converts"

# Failures: at every write up to the one after the switch (the metadata
# writes), and at the last; the wipe's writes between are alike (64 KiB
# pieces of one loop) and the kills above stop at each of them.
for n in $(seq 1 $((switch + 2))) "$total"; do
  img=$T/fail$n.img
  cp "$base" "$img"
  rc=0
  NBDCRYPT_TEST_FAIL_WRITE_AT=$n "$NBDCRYPT_FAULTS" enroll "$img" --passphrase-file "$T/pass" \
    --convert >/dev/null 2>"$T/enroll.err" || rc=$?
  [ "$rc" = 1 ] || { cat "$T/enroll.err" >&2; fail "enroll with write $n failing exited $rc"; }
  grep -q "injected write failure" "$T/enroll.err" ||
    { cat "$T/enroll.err" >&2; fail "write $n: the failure is not reported"; }
  if [ "$n" -eq "$switch" ]; then
    # the switch write failed: it may have reached the disk, the KEK stays
    grep -q "may be LUKS2 now and need kek .*: it is kept" "$T/enroll.err" ||
      { cat "$T/enroll.err" >&2; fail "the switch write failing: the error does not say the KEK is kept"; }
  elif [ "$n" -gt "$switch" ]; then
    grep -q "LUKS2 now" "$T/enroll.err" ||
      { cat "$T/enroll.err" >&2; fail "write $n failing after the switch: the error does not say LUKS2"; }
  else
    grep -q "still LUKS1\|not converted" "$T/enroll.err" ||
      { cat "$T/enroll.err" >&2; fail "write $n failing: the error does not say the disk is still LUKS1"; }
    # the KEK made for it is destroyed: the keystore is empty again
    "$PY" -c 'import json,sys; sys.exit(len(json.load(open(sys.argv[1]))["keys"]))' "$KEYSTORE" ||
      fail "write $n failing before the switch: the enrollment's KEK is kept"
  fi
  check_stopped fail "$n" "$img"
  [ "$(eval echo "\$version_fail_$n")" = "$(eval echo "\$version_kill_$n")" ] ||
    fail "write $n: a failure leaves LUKS$(eval echo "\$version_fail_$n"), a kill LUKS$(eval echo "\$version_kill_$n")"
  rm -f "$img"
done
pass "write failure at writes 1..$((switch + 2)) and $total: the same LUKS version as the kill there; each opens, reads back, and a rerun converts"
