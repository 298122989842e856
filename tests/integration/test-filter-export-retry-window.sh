#!/usr/bin/env bash
# A failed unlock is retried at most once per 5 s, counted from the END of
# the last attempt: after a slow failed attempt (an argon2id keyslot the
# server's passphrase does not open), a connection 5.5 s after the attempt
# started but less than 5 s after it ended fails at once with the last error,
# without a new attempt; a connection 5.5 s after the end makes one.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib-filter.sh"
need cryptsetup nbdinfo

img=$T/disk.img
printf 'not the server passphrase' >"$T/other"
printf 'the server passphrase' >"$T/pass"
cs_disk "$img" 48M "$T/other" --pbkdf argon2id --pbkdf-force-iterations 16 --pbkdf-memory 131072 \
  --pbkdf-parallel 1
serve w "$img" nbdcrypt-passphrase=+"$T/pass"

now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }
# refused: one connection must be refused (the server stays up).
refused() {
  if nbdinfo --size "$(uri w)" >/dev/null 2>"$T/client.err"; then fail "connection $1 succeeded"; fi
  server_alive w || fail "server died on connection $1"
}
attempts() { grep -c "nbdcrypt: export '': cannot unlock: .*no keyslot matches the secret\$" "$T/w.log" || true; }

t0=$(now)
refused 1
t1=$(now)
slow=$(ms "$t0" "$t1")
[ "$(attempts)" = 1 ] || fail "connection 1: $(attempts) attempts"
[ "$slow" -ge 1000 ] || fail "the failed attempt took $slow ms: too fast to tell start from end"

# 5.5 s after the start of the attempt, less than 5 s after its end.
wait_ms=$((5500 - slow))
[ "$wait_ms" -ge 500 ] || wait_ms=500
sleep "$(printf '%d.%03d' $((wait_ms / 1000)) $((wait_ms % 1000)))"
t2=$(now)
refused 2
t3=$(now)
[ "$(attempts)" = 1 ] || fail "connection 2, $(ms "$t1" "$t2") ms after the end of the attempt, retried"
log_has w "no keyslot matches the secret \(retrying at most every 5 s\)" ||
  fail "connection 2 was not told the last error"
[ "$(ms "$t2" "$t3")" -lt $((slow / 2)) ] || fail "connection 2 took $(ms "$t2" "$t3") ms"
pass "attempt of $slow ms; $(ms "$t0" "$t2") ms after its start, $(ms "$t1" "$t2") ms after its end: last error repeated in $(ms "$t2" "$t3") ms"

# 5.5 s after the end: a new attempt.
sleep_ms=$((5500 - $(ms "$t1" "$(now)")))
[ "$sleep_ms" -gt 0 ] && sleep "$(printf '%d.%03d' $((sleep_ms / 1000)) $((sleep_ms % 1000)))"
t4=$(now)
refused 3
[ "$(attempts)" = 2 ] || fail "connection 3, $(ms "$t1" "$t4") ms after the end, made $(($(attempts) - 1)) new attempts"
pass "$(ms "$t1" "$t4") ms after the end of the attempt: a new attempt"
