#!/usr/bin/env bash
# A damaged LUKS1 header is refused, naming what is wrong, by info, check
# and the filter (whose server stays up); the image is left unchanged.
. "$(dirname "$0")/lib-filter.sh"
need cryptsetup nbdinfo

printf 'luks1 passphrase' >"$T/pass"
good=$T/good.img
truncate -s 8M "$good"
cryptsetup luksFormat --type luks1 -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$good"

# corrupt NAME OFFSET HEXBYTES: a copy of the good disk with bytes replaced.
corrupt() {
  cp "$good" "$T/$1.img"
  printf "$3" | dd of="$T/$1.img" bs=1 seek="$2" conv=notrunc status=none
}
corrupt state 208 '\x12\x34\x56\x78'
corrupt stripes $((208 + 44)) '\x00\x00\x0f\x9f'
corrupt cipher 8 'serpent\x00'
corrupt payload 104 '\x00\x00\x00\x00'
corrupt material $((208 + 48 * 7 + 40)) '\x00\x00\x0f\xff'
head -c 1M "$good" >"$T/trunc.img"

must_refuse 1 "not a usable LUKS1 disk: LUKS1 header: keyslot 0 state 0x12345678 is neither enabled nor disabled" \
  "$T/state.img" -- nbdcrypt info "$T/state.img"
must_refuse 1 "keyslot 0 has 3999 stripes, expected 4000" "$T/stripes.img" -- nbdcrypt info "$T/stripes.img"
must_refuse 1 "cipher serpent-xts-plain64 not supported \(only aes-xts-plain64\)" "$T/cipher.img" -- \
  nbdcrypt info "$T/cipher.img"
must_refuse 1 "payload offset 0 \(a detached header" "$T/payload.img" -- nbdcrypt info "$T/payload.img"
must_refuse 1 "keyslot 7 key material .* reaches past the payload offset" "$T/material.img" -- \
  nbdcrypt info "$T/material.img"
must_refuse 1 "LUKS1 disk [0-9a-f-]+ is truncated: 1048576 bytes, but its data starts at" \
  "$T/trunc.img" -- nbdcrypt info "$T/trunc.img"
must_refuse 1 "cannot be unlocked here: LUKS1 header: keyslot 0 has 3999 stripes" "$T/stripes.img" -- \
  nbdcrypt check "$T/stripes.img"
pass "info and check name the damaged field of a LUKS1 header and change nothing"

before=$(sha_file "$T/state.img")
serve bad "$T/state.img" nbdcrypt-keyfile="$T/pass"
if nbdinfo --size "$(uri bad)" >/dev/null 2>&1; then fail "a corrupt LUKS1 header was served"; fi
server_alive bad || fail "the server died on a corrupt LUKS1 header"
log_has bad "cannot unlock: LUKS1 header: keyslot 0 state 0x12345678" ||
  fail "the log does not name the damaged keyslot"
server_stop bad
[ "$(sha_file "$T/state.img")" = "$before" ] || fail "the filter changed the corrupt image"
pass "the filter refuses a corrupt LUKS1 header, says why, and stays up"
