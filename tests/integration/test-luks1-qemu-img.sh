#!/usr/bin/env bash
# A LUKS1 disk made by qemu-img (create -f luks, aes-256-xts-plain64,
# pbkdf2-sha256): data qemu wrote reads back byte for byte through the filter
# with nbdcrypt-keyfile, data the filter writes reads back byte for byte
# through qemu's luks driver, and info describes the phdr.
. "$(dirname "$0")/lib-filter.sh"
. "$(dirname "$0")/lib-luks1.sh"
need qemu-img qemu-nbd nbdcopy nbdinfo cmp

MiB=$((1024 * 1024))
img=$T/qemu.img
printf 'qemu luks1 secret' >"$T/pass"
qemu_luks=(--object "secret,id=s0,file=$T/pass" --image-opts
  "driver=luks,key-secret=s0,file.filename=$img")
qemu_luks1 "$img" 16M "$T/pass"

# info: a LUKS1 phdr, no keys needed.
nbdcrypt info "$img" --json >"$T/info.json"
"$PY" - "$T/info.json" <<'PYEOF' || fail "info --json does not describe qemu's LUKS1 disk"
import json, sys
i = json.load(open(sys.argv[1]))
assert i["luks1"] is True and i["luks2"] is False, i
assert i["cipher"] == "aes-xts-plain64" and i["key_bits"] == 512, i
assert i["hash"] == "sha256" and i["sector_size"] == 512, i
assert i["data_size"] == 16 * 1024 * 1024, i
assert [k["id"] for k in i["keyslots"]] == [0], i
PYEOF
off=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["data_offset"])' "$T/info.json")
nbdcrypt info "$img" | grep -q "^$img: LUKS1$" || fail "info text does not say LUKS1"
pass "info: LUKS1, aes-xts-plain64 512-bit, sha256, data at $off"

# qemu writes 16 MiB of random data (qemu-nbd with its luks driver).
head -c $((16 * MiB)) /dev/urandom >"$T/plain"
qemu-nbd --fork --persistent -k "$T/q.qsock" --pid-file="$T/q.qpid" "${qemu_luks[@]}"
on_exit 'qnbd_stop q'
nbdcopy "$T/plain" "$(qsock_uri q)"
qnbd_stop q
rc=0
cmp_range "$img" "$off" "$T/plain" 0 $((16 * MiB)) || rc=$?
[ "$rc" = 1 ] || fail "qemu left the data in clear (cmp status $rc)"

serve q1 "$img" nbdcrypt-keyfile="$T/pass"
[ "$(nbdinfo --size "$(uri q1)")" = $((16 * MiB)) ] || fail "export size is not 16 MiB"
nbdcopy "$(uri q1)" "$T/back"
cmp "$T/back" "$T/plain" || fail "qemu's data reads back differently through the filter"
pass "16 MiB written by qemu read back byte for byte through the filter"

# The filter writes 4 MiB at 1 MiB + 512 (512-byte sectors); qemu reads it all back.
head -c $((4 * MiB)) /dev/urandom >"$T/plain4"
nbdsh -u "$(uri q1)" -c "
data = open('$T/plain4', 'rb').read()
h.pwrite(data, $MiB + 512)
h.flush()
"
server_stop q1
"$PY" - "$T/plain" "$T/plain4" <<'PYEOF'
import sys
p = bytearray(open(sys.argv[1], "rb").read())
q = open(sys.argv[2], "rb").read()
p[1048576 + 512:1048576 + 512 + len(q)] = q
open(sys.argv[1], "wb").write(p)
PYEOF
qemu-img convert "${qemu_luks[@]}" -O raw "$T/qemu-back.raw"
cmp "$T/qemu-back.raw" "$T/plain" || fail "the filter's writes read back differently through qemu"
pass "4 MiB written through the filter read back byte for byte through qemu's luks driver"

# A wrong passphrase is refused with a clear message; the server stays up.
printf 'not the secret' >"$T/wrong"
serve wrong "$img" nbdcrypt-keyfile="$T/wrong"
if nbdinfo --size "$(uri wrong)" >/dev/null 2>&1; then fail "a wrong passphrase unlocked"; fi
server_alive wrong || fail "the server died on a wrong passphrase"
log_has wrong "LUKS1 disk [0-9a-f-]+: passphrase: no keyslot matches the passphrase" ||
  fail "the log does not say the passphrase is wrong"
server_stop wrong
pass "wrong passphrase: refused, the log says no keyslot matches"

# No passphrase at all: LUKS1 has no tokens, and the message says so.
serve nopass "$img" nbdcrypt-config="$CFG"
if nbdinfo --size "$(uri nopass)" >/dev/null 2>&1; then fail "opened without a passphrase"; fi
log_has nopass "LUKS1 disk .* has no nbdcrypt token .*passphrase or key file" ||
  fail "the log does not say a passphrase is needed"
server_stop nopass
pass "no passphrase: refused, the log says LUKS1 needs a passphrase or key file"
