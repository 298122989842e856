#!/usr/bin/env bash
# A disk encrypted by `nbdcrypt encrypt --header` (the LUKS2 header in a file
# of its own, the data in place) is served by the filter with
# nbdcrypt-header= and by `nbdcrypt serve --header`, reads back byte for byte,
# passes check/info --header, opens in cryptsetup with --header, and after
# `rekey --header` is served with the new KEK alone.  The server holds the
# header file: a second server of the same header does not start.
. "$(dirname "$0")/lib-filter.sh"
need cryptsetup nbdcopy nbdsh nbdinfo cmp

MiB=$((1024 * 1024))
head -c $((32 * MiB)) /dev/urandom >"$T/plain.img"
img=$T/data.img
hdr=$T/hdr.img
cp "$T/plain.img" "$img"
nbdcrypt encrypt "$img" --header "$hdr" >/dev/null 2>&1 || fail "encrypt --header failed"
[ "$(stat -c %s "$img")" = $((32 * MiB)) ] || fail "encrypt --header changed the data size"
rc=0
cmp -s "$img" "$T/plain.img" || rc=$?
[ "$rc" = 1 ] || fail "the data is not encrypted in place (cmp status $rc)"
kek=$(nbdcrypt info "$hdr" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tokens"][0]["kek_id"])')

# ---- the filter, nbdcrypt-header=: whole disk, byte for byte.
serve a "$img" nbdcrypt-header="$hdr"
[ "$(nbdinfo --size "$(uri a)")" = $((32 * MiB)) ] || fail "export size is not the data device's"
nbdcopy "$(uri a)" "$T/back.img"
cmp "$T/back.img" "$T/plain.img" || fail "the detached-header disk reads back differently"
pass "filter with nbdcrypt-header= serves the whole data device, byte for byte"

# Writes through it land encrypted on the data device and read back.
head -c $((1 * MiB)) /dev/urandom >"$T/w.bin"
nbdcopy "$T/w.bin" "$(uri a)"
nbdsh -u "$(uri a)" -c '
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
h.pwrite(b"\x5a" * 513, 3 * 1048576 + 7)
h.flush()
'
"$PY" - "$T/plain.img" "$T/w.bin" <<'PYEOF'
import sys
p = bytearray(open(sys.argv[1], "rb").read())
w = open(sys.argv[2], "rb").read()
p[0:len(w)] = w
p[3 * 1048576 + 7:3 * 1048576 + 7 + 513] = b"\x5a" * 513
open(sys.argv[1], "wb").write(p)
PYEOF
nbdcopy "$(uri a)" "$T/back.img"
cmp "$T/back.img" "$T/plain.img" || fail "data written through the filter reads back differently"
server_stop a
no_plaintext_blocks "$T/w.bin" "$img"
pass "writes through nbdcrypt-header= read back and are not in clear on the data device"

# ---- check and info with --header.
nbdcrypt check "$img" --header "$hdr" >"$T/check.out" || fail "check --header failed: $(cat "$T/check.out")"
grep -q "ok: disk .* unlocks with provider local, kek $kek" "$T/check.out" || fail "check --header: $(cat "$T/check.out")"
nbdcrypt info "$img" --header "$hdr" --json >"$T/info.json"
"$PY" - "$T/info.json" <<PYEOF || fail "info --header: $(cat "$T/info.json")"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["detached_header"] is True, o
assert o["data_offset"] == 0, o
assert o["device_size"] == o["data_size"] == $((32 * MiB)), o
assert o["problems"] == [], o
PYEOF
pass "check --header exits 0 naming the KEK; info --header: detached, offset 0, data size of the data device"

# ---- cryptsetup opens our detached header with the KEK as key file.
cryptsetup luksDump "$hdr" >"$T/dump" || fail "cryptsetup luksDump refuses our detached header"
grep -Eq 'offset: *0 \[bytes\]' "$T/dump" || fail "luksDump: data offset is not 0: $(cat "$T/dump")"
kek_bytes "$kek" "$T/kek.bin"
cryptsetup open --test-passphrase --header "$hdr" --key-file "$T/kek.bin" "$img" ||
  fail "cryptsetup cannot open our detached header with the KEK"
pass "cryptsetup luksDump and open --test-passphrase --header accept our detached header"

# ---- rekey --header: the new KEK serves, the old one no longer opens it.
hsha=$(sha_file "$hdr")
dsha=$(sha_file "$img")
newkek=$(nbdcrypt rekey "$img" --header "$hdr" 2>/dev/null) || fail "rekey --header failed"
[ -n "$newkek" ] && [ "$newkek" != "$kek" ] || fail "rekey --header printed no new KEK"
[ "$(sha_file "$hdr")" != "$hsha" ] || fail "rekey --header did not change the header file"
[ "$(sha_file "$img")" = "$dsha" ] || fail "rekey --header changed the data device"
rc=0
cryptsetup open --test-passphrase --header "$hdr" --key-file "$T/kek.bin" "$img" 2>/dev/null || rc=$?
[ "$rc" != 0 ] || fail "the old KEK still opens the header after rekey"
kek_bytes "$newkek" "$T/newkek.bin"
cryptsetup open --test-passphrase --header "$hdr" --key-file "$T/newkek.bin" "$img" ||
  fail "the new KEK does not open the header after rekey"
# nbdcrypt serve --header passes the header on (and keeps the server's lock).
u=$(nbdcrypt serve "$img" --header "$hdr" --socket "$T/s.sock" --pidfile "$T/s.pid" -- -v 2>>"$T/s.log") ||
  fail "serve --header failed: $(cat "$T/s.log")"
_servers+=(s)
log_has s "detached header $(realpath "$hdr"), data on the plugin's disk at offset 0" || fail "serve --header did not pass nbdcrypt-header= to nbdkit"
log_has s "kek $newkek" || fail "the server did not unlock with the new KEK: $(cat "$T/s.log")"
nbdcopy "$u" "$T/back.img"
cmp "$T/back.img" "$T/plain.img" || fail "after rekey --header the disk reads back differently"
pass "rekey --header: only the new KEK opens the header; serve --header serves it with it"

# ---- the server holds the header: a second server of it is refused.
cp "$T/plain.img" "$T/other.img"
spid=$(cat "$T/s.pid")
must_refuse 1 "cannot serve $hdr: .*in use by another process \\(pid $spid, nbdkit\\)" "$hdr" -- \
  "${_nbdkit[@]}" -f -U "$T/no.sock" --filter="$NBDCRYPT_FILTER" file file="$T/other.img" \
  nbdcrypt-header="$hdr"
server_stop s
pass "a second server of the same detached header is refused while one serves it"
