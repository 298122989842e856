#!/usr/bin/env bash
# Header changes are compare-and-swap under a held lock: 20 rounds of a
# concurrent "nbdcrypt rekey" and "nbdcrypt enroll" on one passphrase disk.
# Every round either both succeed (one after the other) or exactly one fails
# with the concurrent-update or lock-busy error; never a lost keyslot: the
# keyslots cryptsetup luksDump shows are exactly the passphrase keyslot plus
# those the successful commands left (inferred from what each reported), and
# the disk opens with the KEK the successful rekey bound.
. "$(dirname "$0")/lib.sh"
need cryptsetup
ROUNDS=${NBDCRYPT_TEST_ROUNDS:-20}

img=$T/cs.img
printf 'concurrent header updates' >"$T/pass"
cs_disk "$img" 32M "$T/pass"
nbdcrypt enroll "$img" --passphrase-file "$T/pass" >/dev/null 2>&1 || fail "first enroll"

# token_keks IMAGE: the KEK ids of its nbdcrypt tokens, sorted, one line.
token_keks() {
  nbdcrypt info "$1" --json |
    "$PY" -c 'import json,sys; print(" ".join(sorted(t["kek_id"] for t in json.load(sys.stdin)["tokens"])))'
}
# token_slots IMAGE: the keyslots of its nbdcrypt tokens, sorted, one line.
token_slots() {
  nbdcrypt info "$1" --json |
    "$PY" -c 'import json,sys; print(" ".join(sorted(s for t in json.load(sys.stdin)["tokens"] for s in t["keyslots"])))'
}
# dump_slots IMAGE: the keyslot ids cryptsetup luksDump lists, sorted, one line.
dump_slots() {
  cryptsetup luksDump "$1" | awk '/^Keyslots:/{k=1; next} /^[A-Z][a-z]+:/{k=0} k && /^ +[0-9]+: luks2/{sub(":", "", $1); print $1}' |
    sort | tr '\n' ' ' | sed 's/ $//'
}
sorted() { tr ' ' '\n' <<<"$*" | grep -v '^$' | sort | tr '\n' ' ' | sed 's/ $//'; }
busy_re='concurrent LUKS2 metadata update|is locked by another process'

both=0 one=0
for ((round = 1; round <= ROUNDS; round++)); do
  prev=$(token_keks "$img")
  nprev=$(wc -w <<<"$prev")
  rr=0 er=0
  "$NBDCRYPT" rekey "$img" >"$T/r.out" 2>"$T/r.err" &
  rpid=$!
  "$NBDCRYPT" enroll "$img" --passphrase-file "$T/pass" >"$T/e.out" 2>"$T/e.err" &
  epid=$!
  wait "$rpid" || rr=$?
  wait "$epid" || er=$?
  kr=$(cat "$T/r.out") ke=$(cat "$T/e.out")
  for who in r e; do
    if [ $who = r ]; then rc=$rr; else rc=$er; fi
    if [ "$rc" != 0 ]; then
      [ "$rc" = 1 ] || fail "round $round: $who exited $rc: $(cat "$T/$who.err")"
      grep -Eq "$busy_re" "$T/$who.err" || fail "round $round: $who failed otherwise: $(cat "$T/$who.err")"
    fi
  done
  [ "$rr" = 0 ] || [ "$er" = 0 ] || fail "round $round: both failed: $(cat "$T/r.err" "$T/e.err")"

  if [ "$rr" = 0 ]; then
    removed=$(sed -n 's/.*; \([0-9]*\) old keyslots\{0,1\} removed$/\1/p' "$T/r.err")
    [ -n "$removed" ] || fail "round $round: rekey did not say what it removed: $(cat "$T/r.err")"
  fi
  if [ "$rr" = 0 ] && [ "$er" = 0 ]; then
    both=$((both + 1))
    # the rekey removes every other KEK's keyslot it sees: the enrollment's
    # too when that came first
    if [ "$removed" = $((nprev + 1)) ]; then want=$kr
    elif [ "$removed" = "$nprev" ]; then want="$kr $ke"
    else fail "round $round: rekey removed $removed keyslots with $nprev before it"; fi
  elif [ "$rr" = 0 ]; then
    one=$((one + 1))
    [ "$removed" = "$nprev" ] || fail "round $round: rekey removed $removed of $nprev"
    want=$kr
  else
    one=$((one + 1))
    want="$prev $ke"
  fi
  want=$(sorted "$want")
  got=$(token_keks "$img")
  [ "$got" = "$want" ] || fail "round $round (rekey $rr, enroll $er): tokens '$got', want '$want'"
  # every token's keyslot, plus the passphrase keyslot 0, and nothing else
  slots=$(sorted "0 $(token_slots "$img")")
  [ "$(dump_slots "$img")" = "$slots" ] ||
    fail "round $round: luksDump keyslots '$(dump_slots "$img")', tokens say '$slots'"
  if [ "$er" = 0 ] && grep -qw -- "$ke" <<<"$want"; then
    es=$(sed -n 's/.*: keyslot \([0-9]*\) bound to kek.*/\1/p' "$T/e.err")
    grep -qw -- "$es" <<<"$(dump_slots "$img")" || fail "round $round: enrolled keyslot $es lost"
  fi
  nbdcrypt check "$img" >/dev/null || fail "round $round: nbdcrypt check"
  if [ "$rr" = 0 ]; then
    kek_bytes "$kr" "$T/kek.bin"
    cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" ||
      fail "round $round: the disk does not open with the rekey's kek $kr"
  fi
done
cryptsetup open --test-passphrase --key-file "$T/pass" "$img" || fail "the passphrase keyslot"
pass "$ROUNDS rounds: $both with both succeeding, $one with one refused; no keyslot lost"
