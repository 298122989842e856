#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# A rekey racing a recrypt, and two rekeys racing each other, on one disk:
# each round both succeed one after the other or one is refused (the
# concurrent-update or lock-busy error, exit 1); afterwards the disk holds
# exactly one KEK binding, the KEK of the last successful command, which
# opens it with cryptsetup, and the data decrypts to what was encrypted.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need cryptsetup
ROUNDS=${NBDCRYPT_TEST_ROUNDS:-6}

make_plain 32M
img=$T/disk.img
cp "$T/plain.img" "$img"
nbdcrypt encrypt "$img" >/dev/null 2>&1 || fail "encrypt"
busy_re='concurrent LUKS2 metadata update|is locked by another process'

keks() { # IMG: the KEK ids of its tokens, sorted
  nbdcrypt info "$1" --json |
    "$PY" -c 'import json,sys; print(" ".join(sorted(t["kek_id"] for t in json.load(sys.stdin)["tokens"])))'
}
refused_ok() { # NAME RC ERRFILE
  [ "$2" = 0 ] && return 0
  [ "$2" = 1 ] && grep -Eq "$busy_re" "$3" || fail "$1 exited $2: $(cat "$3")"
}
opens_with() { # KEK
  kek_bytes "$1" "$T/kek.bin"
  cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" || fail "the disk does not open with kek $1"
}

stats=""
for ((round = 1; round <= ROUNDS; round++)); do
  before=$(keks "$img")
  ra=0 rb=0
  if ((round % 2)); then
    what="rekey+recrypt"
    "$NBDCRYPT" rekey "$img" >"$T/a.out" 2>"$T/a.err" & apid=$!
    "$NBDCRYPT" recrypt "$img" >"$T/b.out" 2>"$T/b.err" & bpid=$!
  else
    what="rekey+rekey"
    "$NBDCRYPT" rekey "$img" >"$T/a.out" 2>"$T/a.err" & apid=$!
    "$NBDCRYPT" rekey "$img" >"$T/b.out" 2>"$T/b.err" & bpid=$!
  fi
  wait "$apid" || ra=$?
  wait "$bpid" || rb=$?
  refused_ok "round $round ($what) a" "$ra" "$T/a.err"
  refused_ok "round $round ($what) b" "$rb" "$T/b.err"
  [ "$ra" = 0 ] || [ "$rb" = 0 ] || fail "round $round ($what): both failed"
  got=$(keks "$img")
  [ "$(wc -w <<<"$got")" = 1 ] || fail "round $round ($what): bindings '$got'"
  if [ $what = rekey+recrypt ]; then
    # recrypt keeps the bindings it finds: the rekey's KEK either way
    if [ "$ra" = 0 ]; then want=$(cat "$T/a.out"); else want=$before; fi
    [ "$got" = "$want" ] || fail "round $round ($what, rc $ra/$rb): bound to '$got', want '$want'"
  else
    ka=$(cat "$T/a.out") kb=$(cat "$T/b.out")
    { [ "$ra" = 0 ] && [ "$got" = "$ka" ]; } || { [ "$rb" = 0 ] && [ "$got" = "$kb" ]; } ||
      fail "round $round ($what, rc $ra/$rb): bound to '$got', neither successful rekey's"
  fi
  opens_with "$got"
  [ -z "$(requirements "$img")" ] || fail "round $round: left a requirement flag: $(requirements "$img")"
  stats+="$what:$ra/$rb "
done
[ "$(plain_sha_of "$img")" = "$PLAIN_SHA" ] || fail "the data does not decrypt to the plaintext"
pass "$ROUNDS rounds ($stats): one binding each time, the disk opens and decrypts"
