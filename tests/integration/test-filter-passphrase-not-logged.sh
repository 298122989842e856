#!/bin/bash
# nbdkit -v prints every configuration value: nbdcrypt-passphrase=+FILE keeps
# the passphrase out of that log (the disk unlocks, the log never holds it),
# while an inline nbdcrypt-passphrase=SECRET is logged, as the man page warns.
. "$(dirname "${BASH_SOURCE[0]}")/lib-filter.sh"
need cryptsetup nbdinfo
secret="log-canary-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s' "$secret" >"$T/pass"
chmod 600 "$T/pass"
cs_disk "$T/cs.img" 24M "$T/pass"

serve f "$T/cs.img" nbdcrypt-passphrase=+"$T/pass"
size=$(nbdinfo --size "$(uri f)") || fail "+FILE: the disk did not unlock"
[ "$size" = $((8 * 1024 * 1024)) ] || fail "+FILE: size $size"
server_stop f
log_has f "nbdcrypt-passphrase" || fail "the -v log does not show the config key at all"
if grep -qF -- "$secret" "$T/f.log"; then fail "+FILE: the passphrase is in the -v log"; fi
pass "+FILE: the disk unlocks and the -v log never holds the passphrase"

serve i "$T/cs.img" nbdcrypt-passphrase="$secret"
nbdinfo --size "$(uri i)" >/dev/null || fail "inline: the disk did not unlock"
server_stop i
grep -qF -- "$secret" "$T/i.log" || fail "inline: the passphrase is not in the -v log (update the man page)"
pass "inline: the passphrase is in the -v log, as the man page says"
