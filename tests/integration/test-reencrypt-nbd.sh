#!/bin/bash
# Re-encryption of NBD URI targets: qemu-nbd serving qcow2 images on Unix
# sockets.  A disk formatted over NBD and filled through the filter is
# recrypted in place (also after SIGKILLs, resumed) and reads back the same
# through the filter with the new key; a plaintext export is encrypted with a
# detached header (a fixed-size export cannot grow) and decrypted back to the
# same bytes, each also interrupted by SIGKILL and resumed.
. "$(dirname "$0")/lib-filter.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need qemu-img qemu-nbd nbdcopy

MiB=$((1024 * 1024))


# kill_midway SECONDS CMD...: run nbdcrypt CMD (16 MiB hotzones), SIGKILL it
# after SECONDS, or once it reported its first step when SECONDS is "first"
# (the delay hook holds it there).  Returns 0 if it was still running.
kill_midway() {
  local when=$1 pid i alive=1
  shift
  rm -f "$T/ev"
  if [ "$when" = first ]; then
    NBDCRYPT_TEST_HOTZONE_DELAY_MS=2000 "$NBDCRYPT" "$@" --hotzone 16M --json >"$T/ev" 2>/dev/null &
    pid=$!
    for ((i = 0; i < 200; i++)); do
      grep -q '"done":[1-9]' "$T/ev" 2>/dev/null && break
      sleep 0.05
    done
  else
    "$NBDCRYPT" "$@" --hotzone 16M >/dev/null 2>&1 &
    pid=$!
    sleep "$when"
  fi
  kill -0 "$pid" 2>/dev/null || alive=0
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "$alive" = 1 ]
}

# ---- recrypt of a disk formatted over NBD, filled through the filter ----
qemu-img create -q -f qcow2 "$T/a.qcow2" 96M
qnbd_start a qcow2 "$T/a.qcow2"
A=$(qsock_uri a)
nbdcrypt format "$A" >/dev/null || fail "format over NBD"
head -c $((80 * MiB)) /dev/urandom >"$T/plain-a"
sha_a=$(sha_of "$T/plain-a")
server_start crypt --filter="$NBDCRYPT_FILTER" nbd socket="$T/a.qsock"
nbdcopy "$T/plain-a" "$(uri crypt)" || fail "write through the filter"
server_stop crypt
vk0=$(nbdcrypt_volume_key "$A")

# read_back_a: the export through the filter, hashed.
read_back_a() {
  server_start crypt --filter="$NBDCRYPT_FILTER" nbd socket="$T/a.qsock"
  rm -f "$T/back"
  nbdcopy "$(uri crypt)" "$T/back" || fail "read through the filter"
  server_stop crypt
  sha_of "$T/back"
}

nbdcrypt recrypt "$A" --hotzone 16M 2>"$T/err" || { cat "$T/err"; fail "recrypt of $A"; }
grep -q "recrypt complete" "$T/err" || fail "recrypt message: $(cat "$T/err")"
vk1=$(nbdcrypt_volume_key "$A")
[ "$vk1" != "$vk0" ] || fail "recrypt over NBD kept the volume key"
[ -z "$(requirements "$A")" ] || fail "requirement flag left after recrypt over NBD"
[ "$(read_back_a)" = "$sha_a" ] || fail "data read through the filter differs after recrypt"
pass "recrypt of an NBD export (qcow2 over qemu-nbd): new key, same data through the filter"

# SIGKILL during recrypt of the URI, then the same command resumes.
caught=0
for when in first 0.15 0.3; do
  if kill_midway "$when" recrypt "$A"; then
    if [ "$(requirements "$A")" = nbdcrypt-reencrypt-v1 ]; then
      caught=$((caught + 1))
      nbdcrypt check "$A" 2>"$T/ck" && fail "check accepted an NBD disk half way"
      grep -q "in the middle of" "$T/ck" || fail "check message: $(cat "$T/ck")"
    fi
  fi
  nbdcrypt recrypt "$A" --resume >/dev/null 2>"$T/err" ||
    { grep -q "no operation to resume" "$T/err" || { cat "$T/err"; fail "resume over NBD"; }; }
  [ -z "$(requirements "$A")" ] || fail "requirement flag left after resume ($when)"
  [ "$(read_back_a)" = "$sha_a" ] || fail "data differs after SIGKILL ($when) and resume"
done
[ "$caught" -ge 1 ] || fail "no recrypt over NBD was caught half way"
[ "$(nbdcrypt_volume_key "$A")" != "$vk1" ] || fail "the killed recrypts changed no key"
pass "recrypt over NBD killed $caught times half way, resumed: data equal through the filter"

# ---- detached header: encrypt and decrypt of a plaintext export in place ----
qemu-img create -q -f qcow2 "$T/b.qcow2" 64M
qnbd_start b qcow2 "$T/b.qcow2"
B=$(qsock_uri b)
head -c $((64 * MiB)) /dev/urandom >"$T/plain-b"
sha_b=$(sha_of "$T/plain-b")
nbdcopy "$T/plain-b" "$B"
# export_sha: the raw export, hashed.
export_sha() {
  rm -f "$T/raw"
  nbdcopy "$B" "$T/raw"
  sha_of "$T/raw"
}

nbdcrypt encrypt "$B" 2>"$T/err" && fail "encrypt of an NBD export without --header"
grep -q "cannot grow or shrink; use --header" "$T/err" || fail "refusal message: $(cat "$T/err")"

kill_midway first encrypt "$B" --header "$T/b.hdr" || fail "encrypt --header finished too early"
[ "$(requirements "$T/b.hdr")" = nbdcrypt-reencrypt-v1 ] || fail "no operation in progress after SIGKILL"
nbdcrypt encrypt "$B" --header "$T/b.hdr" 2>"$T/err" || { cat "$T/err"; fail "resumed encrypt --header"; }
[ -z "$(requirements "$T/b.hdr")" ] || fail "requirement flag left after encrypt --header"
[ "$(nbdcrypt info "$T/b.hdr" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data_offset"])')" = 0 ] ||
  fail "detached header does not place the data at offset 0"
[ "$(export_sha)" != "$sha_b" ] || fail "export still plaintext after encrypt --header"
kek_bytes "$(kek_of "$T/b.hdr")" "$T/kek-b.bin"
cryptsetup open --test-passphrase --header "$T/b.hdr" --key-file "$T/kek-b.bin" "$T/raw" ||
  fail "cryptsetup refuses the detached header made over NBD"
pass "encrypt --header of an NBD export, killed and resumed: header valid, data encrypted"

kill_midway first decrypt "$B" --header "$T/b.hdr" || fail "decrypt --header finished too early"
[ "$(requirements "$T/b.hdr")" = nbdcrypt-reencrypt-v1 ] || fail "no decrypt in progress after SIGKILL"
nbdcrypt decrypt "$B" --header "$T/b.hdr" 2>"$T/err" || { cat "$T/err"; fail "resumed decrypt --header"; }
[ ! -e "$T/b.hdr" ] || fail "detached header left after decrypt"
[ "$(export_sha)" = "$sha_b" ] || fail "decrypted export differs from the original plaintext"
pass "decrypt --header of an NBD export, killed and resumed: plaintext byte for byte"
