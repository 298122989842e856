#!/usr/bin/env bash
# Stacked on a network-backed VMDK: qemu-img create -f vmdk, served by
# qemu-nbd on a Unix socket, formatted with nbdcrypt format over NBD, served
# with nbdkit --filter=nbdcrypt nbd socket=...  qemu-img convert and qemu-io
# (1-byte and 513-byte writes at odd offsets, FUA writes) read back what they
# wrote, also after restarting both servers.
. "$(dirname "$0")/lib-filter.sh"
need qemu-img qemu-nbd qemu-io cmp

MiB=$((1024 * 1024))
vmdk=$T/disk.vmdk
qemu-img create -q -f vmdk "$vmdk" 128M

qnbd_start vmdk vmdk "$vmdk" --cache=writeback

nbdcrypt format "$(qsock_uri vmdk)" >/dev/null
server_start crypt --filter="$NBDCRYPT_FILTER" nbd socket="$T/vmdk.qsock"
u=$(uri crypt)
size=$(qemu-img info --output=json "$u" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
[ "$size" = $((112 * MiB)) ] || fail "export size $size, expected 112 MiB"
pass "VMDK over qemu-nbd formatted through NBD; export is 112 MiB"

# qemu-img convert in and out.
head -c $((32 * MiB)) /dev/urandom >"$T/plain"
truncate -s $((112 * MiB)) "$T/plain"
qemu-img convert -n -f raw -O raw "$T/plain" "$u"
qemu-img convert -f raw -O raw "$u" "$T/back"
cmp "$T/back" "$T/plain" || fail "qemu-img convert round trip differs"
pass "qemu-img convert 112 MiB in and out: equal"

# qemu-io: unaligned writes at odd offsets, FUA writes, read back with -P.
qio() { qemu-io -f raw "$u" "$@"; }
out=$(qio -c 'write -P 0x41 1 1' -c 'write -P 0x42 4095 1' -c 'write -P 0x43 4097 513' \
          -c 'write -P 0x44 1000001 513' -c 'write -f -P 0x45 8191 2' \
          -c 'write -f -P 0x46 12345677 70000' -c 'write -f -P 0x47 20971520 1048576' \
          -c 'flush' 2>&1) || fail "qemu-io writes: $out"
grep -qi "error\|fail" <<<"$out" && fail "qemu-io writes: $out"
verify() {
  local out
  out=$(qio -c 'read -P 0x41 1 1' -c 'read -P 0x42 4095 1' -c 'read -P 0x43 4097 513' \
            -c 'read -P 0x44 1000001 513' -c 'read -P 0x45 8191 2' \
            -c 'read -P 0x46 12345677 70000' -c 'read -P 0x47 20971520 1048576' 2>&1) ||
    fail "qemu-io reads: $out"
  if grep -qi "pattern verification failed\|error" <<<"$out"; then fail "qemu-io $1: $out"; fi
}
verify "read back"
# Bytes around the small writes are untouched.
"$PY" - "$T/plain" <<'PYEOF' >"$T/expect"
import sys
p = bytearray(open(sys.argv[1], "rb").read())
for off, n, v in [(1, 1, 0x41), (4095, 1, 0x42), (4097, 513, 0x43), (1000001, 513, 0x44),
                  (8191, 2, 0x45), (12345677, 70000, 0x46), (20971520, 1048576, 0x47)]:
    p[off:off + n] = bytes([v]) * n
sys.stdout.buffer.write(p)
PYEOF
qemu-img convert -f raw -O raw "$u" "$T/back"
cmp "$T/back" "$T/expect" || fail "image differs from the model after qemu-io writes"
pass "qemu-io 1- and 513-byte writes at odd offsets and FUA writes read back; the rest untouched"

# Restart both servers: everything is still there.
server_stop crypt
qnbd_stop vmdk
qnbd_start vmdk vmdk "$vmdk" --cache=writeback
server_start crypt2 --filter="$NBDCRYPT_FILTER" nbd socket="$T/vmdk.qsock"
u=$(uri crypt2)
verify "after restart"
qemu-img convert -f raw -O raw "$u" "$T/back"
cmp "$T/back" "$T/expect" || fail "image differs after restarting qemu-nbd and nbdkit"
pass "after restarting qemu-nbd and nbdkit the data reads back"
server_stop crypt2
qnbd_stop vmdk
# The VMDK holds ciphertext.
qemu-img convert -f vmdk -O raw "$vmdk" "$T/vmdk.raw"
no_plaintext_blocks <(head -c $((32 * MiB)) "$T/plain") "$T/vmdk.raw"
pass "the VMDK holds none of the plaintext's 4 KiB blocks"
