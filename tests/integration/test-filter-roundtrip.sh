#!/usr/bin/env bash
# 64 MiB of random data written through the filter with nbdcopy reads back
# equal (over a second server too), and the image then holds none of the
# plaintext's 4 KiB blocks.  Also: what the export advertises, zeroes written
# encrypted, the disk unlocked once for many connections, --help lists keys.
. "$(dirname "$0")/lib-filter.sh"
need nbdcopy nbdinfo nbdsh cmp

# Every key is documented.
help=$("${_nbdkit[@]}" --filter="$NBDCRYPT_FILTER" null --help)
for key in nbdcrypt-config nbdcrypt-passphrase nbdcrypt-keyfile nbdcrypt-keyslot nbdcrypt-discard; do
  grep -q "^$key=" <<<"$help" || fail "--help does not list $key"
done
pass "--help lists every key"

img=$T/disk.img
new_disk "$img" 128M >/dev/null
off=$(data_offset "$img")
head -c $((64 * 1024 * 1024)) /dev/urandom >"$T/plain"

serve s1 "$img"
nbdinfo --json "$(uri s1)" >"$T/info.json"
"$PY" - "$T/info.json" "$off" <<'PYEOF' || fail "export properties: $(cat "$T/info.json")"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
off = int(sys.argv[2])
checks = {
    "export-size": (e["export-size"], 128 * 1024 * 1024 - off),
    "block_size_minimum": (e.get("block_size_minimum"), 1),
    "block_size_preferred": (e.get("block_size_preferred"), 4096),
    "can_trim": (e["can_trim"], False),
    "can_zero": (e["can_zero"], True),
    "can_fast_zero": (e["can_fast_zero"], False),
    "is_read_only": (e["is_read_only"], False),
}
bad = {k: v for k, v in checks.items() if v[0] != v[1]}
if bad:
    sys.exit("unexpected: %r" % bad)
PYEOF
pass "export: size = image - data offset $off, block sizes 1/4096, no trim, zero"

start=$(date +%s%N)
nbdcopy "$T/plain" "$(uri s1)"
mid=$(date +%s%N)
nbdcopy "$(uri s1)" "$T/back"
end=$(date +%s%N)
head -c $((64 * 1024 * 1024)) "$T/back" | cmp - "$T/plain" || fail "64 MiB read back differs"
pass "nbdcopy 64 MiB: write $(((mid - start) / 1000000)) ms, read $(((end - mid) / 1000000)) ms, equal"

# nbdcopy opened several connections; the disk was unlocked once.
n=$(grep -c "nbdcrypt: unlocked disk" "$T/s1.log" || true)
[ "$n" = 1 ] || fail "disk unlocked $n times, expected once"
conns=$(grep -c "accepted connection" "$T/s1.log" || true)
[ "$conns" -gt 1 ] || fail "only $conns connection(s) made: once per server is not shown"
pass "unlocked once for $conns connections"

# Zeroes (unaligned at both ends): read back as zeroes, stored encrypted.
zoff=$((8 * 1024 * 1024 + 100)) zlen=$((4 * 1024 * 1024 + 1000))
nbdsh -u "$(uri s1)" -c "
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
h.zero($zlen, $zoff)
assert h.pread($zlen, $zoff) == bytes($zlen)
h.flush()
" || fail "write zeroes"
server_stop s1
nonzero=$(dd if="$img" bs=4096 skip=$(((off + 8 * 1024 * 1024) / 4096 + 1)) count=3 status=none |
  tr -d '\0' | wc -c)
[ "$nonzero" -gt 0 ] || fail "zeroes were stored as plaintext zeroes"
pass "write zeroes reads back zero and is stored encrypted"

# Restart: the data is still there; the image holds no plaintext block.
serve s2 "$img"
nbdcopy "$(uri s2)" "$T/back2"
"$PY" - "$T/plain" "$T/back2" "$zoff" "$zlen" <<'PYEOF' || fail "data after restart differs"
import sys
plain, back = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
zoff, zlen = int(sys.argv[3]), int(sys.argv[4])
expect = plain[:zoff] + bytes(zlen) + plain[zoff + zlen:]
assert back[:len(expect)] == expect
PYEOF
server_stop s2
no_plaintext_blocks "$T/plain" "$img"
pass "after restart the data reads back; no plaintext 4 KiB block in the image"
