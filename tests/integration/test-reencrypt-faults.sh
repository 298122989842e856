#!/bin/bash
# Fault injection: for each of encrypt, recrypt and decrypt, 10 runs killed
# with SIGKILL and 5 runs stopped by a failed write, at points spread evenly
# over the whole run (nbdcrypt-faults kills itself or fails at its N-th
# write, N chosen from the count of writes of an uninterrupted run: every
# phase is reached, deterministically), each resumed by running the same
# command again.  Every time the final plaintext's SHA-256 equals the
# original's and the disk unlocks with the expected key only.  A disk left
# half way is refused by the filter's volume_open and by cryptsetup.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need cryptsetup

KILLS=${NBDCRYPT_TEST_KILLS:-10}
FAILS=${NBDCRYPT_TEST_WRITE_FAILS:-5}
make_plain 48M
cp "$T/plain.img" "$T/enc.img"
nbdcrypt encrypt "$T/enc.img" 2>/dev/null || fail "initial encrypt"
kek_bytes "$(kek_of "$T/enc.img")" "$T/kek.bin"
head -c 32 /dev/urandom >"$T/wrong.bin"
enc_vk=$(nbdcrypt_volume_key "$T/enc.img")
work=$T/work.img
checked_midway=0

# count_writes IMG CMD...: the writes an uninterrupted "CMD" makes on a copy
# of IMG (the copy is removed; an encrypt's new KEK stays unused).
count_writes() {
  local img=$1
  shift
  cp --sparse=always "$img" "$T/count.img"
  NBDCRYPT_TEST_COUNT_WRITES=$T/count "$NBDCRYPT_FAULTS" "$@" "$T/count.img" --hotzone 16M >/dev/null 2>"$T/count.err" ||
    { cat "$T/count.err"; fail "uninterrupted $*"; }
  rm -f "$T/count.img" "$T/count.img.hdr"
  cat "$T/count"
}

# interrupt HOW N CMD...: run CMD and stop it at its N-th write (SIGKILL, or
# a failed write whose message says whether the disk is left half way)
interrupt() {
  local how=$1 n=$2 rc=0
  shift 2
  if [ "$how" = kill ]; then
    NBDCRYPT_TEST_KILL_AT_WRITE=$n "$NBDCRYPT_FAULTS" "$@" --hotzone 16M >/dev/null 2>&1 || rc=$?
    [ "$rc" = 137 ] || fail "$* was not killed at its write $n (status $rc)"
  else
    NBDCRYPT_TEST_FAIL_WRITE_AT=$n "$NBDCRYPT_FAULTS" "$@" --hotzone 16M >/dev/null 2>"$T/inj" || rc=$?
    [ "$rc" = 1 ] || { cat "$T/inj"; fail "$* with its write $n failing exited $rc"; }
    grep -q "injected write failure" "$T/inj" || { cat "$T/inj"; fail "write failure not reported as such"; }
    local img=$2
    if [ "$(requirements "$img" 2>/dev/null)" = nbdcrypt-reencrypt-v1 ]; then
      grep -q "the disk is left half way through the $1 .*run the same command again (or with --resume) to continue$" "$T/inj" ||
        fail "a write failure leaving the disk half way does not say so: $(cat "$T/inj")"
    fi
  fi
}

# A disk left half way: luksDump parses it, cryptsetup refuses to change it,
# nbdcrypt check (volume_open, as the filter) refuses it.
check_midway() {
  local img=$1
  [ "$(requirements "$img" 2>/dev/null)" = nbdcrypt-reencrypt-v1 ] || return 0
  nbdcrypt check "$img" 2>"$T/ck" && fail "check accepted a disk half way"
  grep -q "in the middle of" "$T/ck" || fail "check message: $(cat "$T/ck")"
  # A kill between the two header copies' writes leaves the secondary one
  # commit behind; cryptsetup then repairs it, unless libblkid finds other
  # signatures in the (random) plaintext, when it refuses the disk outright:
  # that is a refusal too, and nothing else is.
  if ! cryptsetup luksDump "$img" >"$T/dump" 2>"$T/dump.err"; then
    grep -q "ambiguous signatures, cannot auto-recover LUKS2" "$T/dump.err" ||
      fail "luksDump of a disk half way: $(cat "$T/dump.err")"
    return 0
  fi
  grep -q "nbdcrypt-reencrypt-v1" "$T/dump" || fail "luksDump of a disk half way shows no requirement"
  cryptsetup luksAddKey --key-file "$T/kek.bin" "$img" "$T/wrong.bin" 2>"$T/cs" && fail "cryptsetup modified a disk half way"
  grep -qi "requirement" "$T/cs" || fail "cryptsetup refusal message: $(cat "$T/cs")"
  checked_midway=$((checked_midway + 1))
}

# resume CMD...: run the same command again; it finishes the operation, or
# (the interrupted run had finished) says exactly that there is nothing to do.
# The result is verified by the caller either way.
resume() {
  "$NBDCRYPT" "$@" >/dev/null 2>"$T/res" && return 0
  case $1 in
  encrypt) grep -q ": already encrypted (LUKS2 header.*); nothing to do$" "$T/res" && return 0 ;;
  decrypt) grep -q ": not encrypted (no LUKS header); nothing to decrypt$" "$T/res" && return 0 ;;
  esac
  cat "$T/res"
  fail "resume of $* did not finish"
}

verify_encrypted() {
  local img=$1 what=$2
  [ -z "$(requirements "$img")" ] || fail "$what: requirement flag left"
  cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" || fail "$what: KEK does not open it"
  cryptsetup open --test-passphrase --key-file "$T/wrong.bin" "$img" 2>/dev/null && fail "$what: a wrong key opens it"
  [ "$(plain_sha_of "$img")" = "$PLAIN_SHA" ] || fail "$what: plaintext differs"
}

# run_series CMD HOW COUNT WRITES: COUNT runs stopped at writes spread over
# 1..WRITES (kills at k*W/(COUNT+1), failures halfway between).
run_series() {
  local cmd=$1 how=$2 count=$3 writes=$4 n at
  for n in $(seq 1 "$count"); do
    case $cmd in
    encrypt) cp "$T/plain.img" "$work" ;;
    *) cp --sparse=always "$T/enc.img" "$work" ;;
    esac
    if [ "$how" = kill ]; then
      at=$((n * writes / (count + 1)))
    else
      at=$(((2 * n - 1) * writes / (2 * count)))
    fi
    [ "$at" -ge 1 ] || at=1
    interrupt "$how" "$at" "$cmd" "$work"
    check_midway "$work"
    resume "$cmd" "$work"
    case $cmd in
    encrypt)
      kek_bytes "$(kek_of "$work")" "$T/kek.bin"
      verify_encrypted "$work" "encrypt $how #$n"
      ;;
    recrypt)
      verify_encrypted "$work" "recrypt $how #$n"
      [ "$(nbdcrypt_volume_key "$work")" != "$enc_vk" ] || fail "recrypt $how #$n kept the old key"
      ;;
    decrypt)
      [ "$(sha_of "$work")" = "$PLAIN_SHA" ] || fail "decrypt $how #$n: plaintext differs"
      ;;
    esac
  done
  pass "$cmd: $count runs stopped by $how at writes spread over its $writes, resumed, plaintext and keys correct"
}

kek_bytes "$(kek_of "$T/enc.img")" "$T/kek.bin"
for cmd in recrypt decrypt encrypt; do
  case $cmd in
  encrypt) writes=$(count_writes "$T/plain.img" $cmd) ;;
  *) writes=$(count_writes "$T/enc.img" $cmd) ;;
  esac
  [ $cmd = encrypt ] || kek_bytes "$(kek_of "$T/enc.img")" "$T/kek.bin"
  run_series $cmd kill "$KILLS" "$writes"
  [ $cmd = encrypt ] || kek_bytes "$(kek_of "$T/enc.img")" "$T/kek.bin"
  run_series $cmd write-failure "$FAILS" "$writes"
done
# Detached header (data in place, the header in a file): encrypt and decrypt
# killed at writes spread over their runs, resumed; every time the data decrypts back to
# the original and the KEK opens the header with cryptsetup.
DKILLS=${NBDCRYPT_TEST_DETACHED_KILLS:-4}
detached_midway=0
cp "$T/plain.img" "$work"
rm -f "$T/hdr.img"
NBDCRYPT_TEST_COUNT_WRITES=$T/count "$NBDCRYPT_FAULTS" encrypt "$work" --header "$T/hdr.img" --hotzone 16M >/dev/null 2>&1 ||
  fail "uninterrupted encrypt --header"
dwrites_enc=$(cat "$T/count")
NBDCRYPT_TEST_COUNT_WRITES=$T/count "$NBDCRYPT_FAULTS" decrypt "$work" --header "$T/hdr.img" --hotzone 16M >/dev/null 2>&1 ||
  fail "uninterrupted decrypt --header"
dwrites_dec=$(cat "$T/count")
for n in $(seq 1 "$DKILLS"); do
  cp "$T/plain.img" "$work"
  rm -f "$T/hdr.img"
  interrupt kill $((n * dwrites_enc / (DKILLS + 1) + 1)) encrypt "$work" --header "$T/hdr.img"
  [ "$(requirements "$T/hdr.img" 2>/dev/null)" = nbdcrypt-reencrypt-v1 ] && detached_midway=$((detached_midway + 1))
  resume encrypt "$work" --header "$T/hdr.img"
  [ -z "$(requirements "$T/hdr.img")" ] || fail "detached encrypt #$n: requirement flag left"
  kek_bytes "$(kek_of "$T/hdr.img")" "$T/kek-d.bin"
  cryptsetup open --test-passphrase --header "$T/hdr.img" --key-file "$T/kek-d.bin" "$work" ||
    fail "detached encrypt #$n: the KEK does not open the header"
  [ "$(sha_of "$work")" != "$PLAIN_SHA" ] || fail "detached encrypt #$n left plaintext"
  interrupt kill $((n * dwrites_dec / (DKILLS + 1) + 1)) decrypt "$work" --header "$T/hdr.img"
  [ -e "$T/hdr.img" ] && [ "$(requirements "$T/hdr.img" 2>/dev/null)" = nbdcrypt-reencrypt-v1 ] &&
    detached_midway=$((detached_midway + 1))
  if [ -e "$T/hdr.img" ]; then
    resume decrypt "$work" --header "$T/hdr.img"
  fi
  [ ! -e "$T/hdr.img" ] || fail "detached decrypt #$n: header file left"
  [ "$(sha_of "$work")" = "$PLAIN_SHA" ] || fail "detached decrypt #$n: plaintext differs"
done
pass "detached encrypt/decrypt: $DKILLS runs each killed ($detached_midway caught half way), resumed, data correct"

[ "$checked_midway" -gt 0 ] || fail "no run was caught half way"
[ "$detached_midway" -gt 0 ] || fail "no detached run was caught half way"
pass "$checked_midway disks caught half way were refused by cryptsetup and nbdcrypt check"

# A tampered progress record is refused before anything acts on it.
cp --sparse=always "$T/enc.img" "$work"
NBDCRYPT_TEST_FAIL_WRITE_AT=21 "$NBDCRYPT_FAULTS" recrypt "$work" --hotzone 16M >/dev/null 2>&1 || true
[ "$(requirements "$work")" = nbdcrypt-reencrypt-v1 ] || fail "could not stop a recrypt half way"
"$PY" - "$work" <<'PYEOF'
import hashlib, json, re, struct, sys
path = sys.argv[1]
with open(path, "r+b") as f:
    buf = bytearray(f.read(1 << 20))
    hdr_size = struct.unpack(">Q", buf[8:16])[0]
    for base in (0, hdr_size):
        area = bytes(buf[base + 4096:base + hdr_size])
        meta = json.loads(area.rstrip(b"\0").decode())
        for tok in meta["tokens"].values():
            if tok["type"] == "nbdcrypt-reencrypt":
                tok["done"] = str(int(tok["done"]) + 16777216)
        text = json.dumps(meta, separators=(",", ":")).encode()
        buf[base + 4096:base + hdr_size] = text + b"\0" * (hdr_size - 4096 - len(text))
        buf[base + 448:base + 512] = b"\0" * 64
        buf[base + 448:base + 480] = hashlib.sha256(bytes(buf[base:base + hdr_size])).digest()
    f.seek(0)
    f.write(buf[:2 * hdr_size])
PYEOF
before=$(sha_of "$work")
"$NBDCRYPT" recrypt "$work" 2>"$T/err" && fail "a tampered progress record was acted on"
grep -q "does not match the keys" "$T/err" || fail "tamper message: $(cat "$T/err")"
[ "$(sha_of "$work")" = "$before" ] || fail "the disk changed although the record was refused"
pass "tampered progress record refused, disk untouched"

# A run stopped inside a 32 MiB hotzone is recovered by a run with a smaller
# --hotzone (recovery goes through its buffer in parts).
hotzone_in_progress() {
  "$PY" - "$1" <<'PYEOF'
import json, struct, sys
buf = open(sys.argv[1], "rb").read(1 << 20)
hdr_size = struct.unpack(">Q", buf[8:16])[0]
meta = json.loads(buf[4096:hdr_size].rstrip(b"\0").decode())
print(sum(int(t["hotzone_size"]) for t in meta["tokens"].values() if t["type"] == "nbdcrypt-reencrypt"))
PYEOF
}
kek_bytes "$(kek_of "$T/enc.img")" "$T/kek.bin"
caught=0
for n in 12 16 20 8 24 28; do
  cp --sparse=always "$T/enc.img" "$work"
  NBDCRYPT_TEST_FAIL_WRITE_AT=$((n + 1)) "$NBDCRYPT_FAULTS" recrypt "$work" --hotzone 32M >/dev/null 2>&1 && continue
  [ "$(hotzone_in_progress "$work")" = 33554432 ] || continue
  caught=1
  nbdcrypt recrypt "$work" --hotzone 16M 2>"$T/err" || { cat "$T/err"; fail "recovery of a 32 MiB hotzone with --hotzone 16M"; }
  verify_encrypted "$work" "recovery with a smaller hotzone"
  break
done
[ "$caught" = 1 ] || fail "no write failure landed inside a 32 MiB hotzone"
pass "a 32 MiB hotzone cut by a write failure is recovered by a run with --hotzone 16M"
