#!/usr/bin/env bash
# enroll --convert cut off after each of its durable write steps (as a power
# cut would: NBDCRYPT_TEST_CONVERT_CRASH_AFTER=N ends the process): the disk
# is then a LUKS1 disk or a LUKS2 disk, never neither, the passphrase opens it
# and the data reads back byte for byte; up to step 4 it is still LUKS1 and a
# second enroll --convert finishes; from step 5 it is LUKS2 and opens with
# the KEK in cryptsetup too.
. "$(dirname "$0")/lib-filter.sh"
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

# reads_back NAME IMG: served with the passphrase, the data is all there.
reads_back() {
  serve "$1" "$2" nbdcrypt-keyfile="$T/pass"
  nbdcopy "$(uri "$1")" "$T/back" || fail "$1: cannot read through the filter"
  server_stop "$1"
  cmp_range "$T/back" 0 "$T/plain" 0 $((4 * MiB)) || fail "$1: data reads back differently"
}

for step in 1 2 3 4 5 6; do
  img=$T/crash$step.img
  cp "$base" "$img"
  rc=0
  NBDCRYPT_TEST_CONVERT_CRASH_AFTER=$step nbdcrypt enroll "$img" --passphrase-file "$T/pass" \
    --convert >"$T/kek" 2>"$T/enroll.err" || rc=$?
  [ "$rc" = 99 ] || { cat "$T/enroll.err" >&2; fail "step $step: enroll exited $rc, not at the crash point"; }
  version=$(cryptsetup luksDump "$img" 2>/dev/null | awk '/^Version:/ {print $2}')
  if [ "$step" -le 4 ]; then
    [ "$version" = 1 ] || fail "step $step: LUKS version '$version', expected still 1"
    nbdcrypt info "$img" | grep -q ": LUKS1$" || fail "step $step: info does not read LUKS1"
    reads_back c$step "$img"
    nbdcrypt enroll "$img" --passphrase-file "$T/pass" --convert >"$T/kek2" 2>"$T/enroll.err" ||
      { cat "$T/enroll.err" >&2; fail "step $step: a second enroll --convert failed"; }
    kek=$(cat "$T/kek2")
  else
    [ "$version" = 2 ] || fail "step $step: LUKS version '$version', expected 2"
    kek=$(cat "$T/kek")
    [ -n "$kek" ] || kek=$("$PY" -c 'import json,sys; print(next(iter(json.load(open(sys.argv[1]))["keys"])))' "$KEYSTORE")
  fi
  reads_back d$step "$img"
  kek_bytes "$kek" "$T/kek.bin"
  cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" ||
    fail "step $step: cryptsetup does not open the converted disk with the KEK"
  cryptsetup open --test-passphrase --key-file "$T/pass" "$img" ||
    fail "step $step: cryptsetup does not open the converted disk with the passphrase"
  rm -f "$KEYSTORE"
  pass "cut off after step $step: LUKS$version, data reads back; converted it opens with KEK and passphrase"
done
