#!/usr/bin/env bash
# No key in a core dump (native provider): gcore of a serving nbdkit with the
# filter after I/O, and of the CLI paused in the middle of a recrypt, holds
# none of the 16-byte quarters of the volume key(s) or of the KEK, in memory
# or in any thread's registers.  Both backends (CI runs it in the OpenSSL
# build too).  The kmip provider: test-core-holds-no-kmip-key.sh.
. "$(dirname "$0")/lib-filter.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
. "$(dirname "$0")/lib-core.sh"
need nbdcopy cmp xxd
core_search_works

# 1. A serving nbdkit after writes and reads through the filter.
img=$T/disk.img
new_disk "$img" 48M >/dev/null
kek=$(kek_of "$img")
kek_bytes "$kek" "$T/kek.bin"
kek_hex=$(od -An -v -tx1 "$T/kek.bin" | tr -d ' \n')
dek=$(nbdcrypt_volume_key "$img")
[ ${#dek} = 128 ] && [ ${#kek_hex} = 64 ] || fail "key lengths: dek ${#dek}, kek ${#kek_hex} hex digits"
head -c 8M /dev/urandom >"$T/plain"
server_start s1 --threads=4 --filter="$NBDCRYPT_FILTER" file file="$img" nbdcrypt-config="$CFG"
nbdcopy "$T/plain" "$(uri s1)"
nbdcopy "$(uri s1)" "$T/back"
cmp -n $((8 * 1024 * 1024)) "$T/plain" "$T/back" || fail "read back differs"
dump nbdkit "$(cat "$T/s1.pid")"
core_has_no_key "serving nbdkit" "$T/nbdkit.core" "$dek" "$kek_hex"
pass "gcore of a serving nbdkit after I/O: no quarter of the volume key or of the KEK"
server_stop s1
rm -f "$T/nbdkit.core"

# 2. The CLI in the middle of a recrypt (held after each 16 MiB step).
recrypt_paused_core recrypt "$img"
new_dek=$(nbdcrypt_volume_key "$img")
[ "$new_dek" != "$dek" ] || fail "recrypt did not change the volume key"
core_has_no_key "recrypt" "$T/recrypt.core" "$dek" "$new_dek" "$kek_hex"
pass "gcore of the CLI mid-recrypt: no quarter of the old or new volume key or of the KEK"
