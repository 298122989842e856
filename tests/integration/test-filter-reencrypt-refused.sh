#!/usr/bin/env bash
# A disk in the middle of a re-encryption (cryptsetup reencrypt --init-only
# leaves the online-reencrypt requirement flag) is refused with a message
# that says so; the server stays up.
. "$(dirname "$0")/lib-filter.sh"
need nbdinfo cryptsetup

printf 'a passphrase' >"$T/pass"
cs_disk "$T/reenc.img" 48M "$T/pass"
cryptsetup reencrypt --init-only -q --key-file "$T/pass" --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 "$T/reenc.img"
cryptsetup luksDump "$T/reenc.img" | grep -q "online-reencrypt" ||
  fail "cryptsetup did not set the requirement flag"
serve reenc "$T/reenc.img" nbdcrypt-passphrase=+"$T/pass"
for i in 1 2; do
  if nbdinfo --size "$(uri reenc)" >/dev/null 2>&1; then fail "connection $i succeeded"; fi
  server_alive reenc || fail "server died"
done
log_has reenc "export '': cannot unlock: .*re-?encrypt" ||
  fail "the log does not say the disk is being re-encrypted: $(grep -m1 "error:" "$T/reenc.log")"
pass "refused: $(grep -m1 "cannot unlock" "$T/reenc.log")"
