#!/usr/bin/env bash
# Interop with librbd's own encryption: an image formatted by
# "rbd encryption format IMAGE luks2 PASSFILE" is a LUKS2 disk nbdcrypt reads
# (aes-xts-plain64, 512-bit key, 4096-byte sectors, data at 16 MiB); served
# by the filter with that passphrase, what it writes reads back through
# qemu's rbd driver with encrypt.format=luks2 (librbd decrypting) and the
# other way round; "nbdcrypt enroll" binds it to a KEK, after which the filter
# serves it through the token and librbd still opens it with the passphrase.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib-ceph.sh"
need qemu-nbd qemu-img nbdcopy cmp
MiB=$((1024 * 1024))

ceph_start
rbd_cmd create --size 64M "$CEPH_POOL/lk" || fail "rbd create"
printf 'librbd interop passphrase' >"$T/pass"
rbd_cmd encryption format "$CEPH_POOL/lk" luks2 "$T/pass" || fail "rbd encryption format luks2"

# librbd IMAGE-OPTS-SUFFIX: qemu's --image-opts for the image, librbd decrypting.
LIBRBD="driver=rbd,pool=$CEPH_POOL,image=lk,conf=$CEPH_CONF,user=admin,encrypt.format=luks2,encrypt.key-secret=pw"
librbd_read() { # FILE: the decrypted image through librbd
  rm -f "$1"
  qemu-img convert --object "secret,id=pw,file=$T/pass" --image-opts "$LIBRBD" -O raw "$1" ||
    fail "qemu-img convert from rbd with encrypt.format=luks2"
}
librbd_write() { # FILE: written from offset 0 through librbd
  qemu-img convert -n --object "secret,id=pw,file=$T/pass" -f raw "$1" \
    --target-image-opts "$LIBRBD" || fail "qemu-img convert into rbd with encrypt.format=luks2"
}

rbd_qnbd_start q lk
Q=$(qsock_uri q)
nbdcrypt info "$Q" --json >"$T/info.json" || fail "nbdcrypt info on librbd's header"
"$PY" - "$T/info.json" <<'PYEOF' || fail "librbd layout: $(cat "$T/info.json")"
import json, sys
i = json.load(open(sys.argv[1]))
assert i["data_offset"] == 16 << 20, i["data_offset"]
assert i["sector_size"] == 4096, i["sector_size"]
PYEOF
nbdcrypt info "$Q" | grep -q "cipher: *aes-xts-plain64, 512-bit key" || fail "cipher: $(nbdcrypt info "$Q")"
pass "rbd encryption format luks2: a LUKS2 header nbdcrypt reads (aes-xts-plain64/512, 4096-byte sectors, data at 16 MiB)"

# ---- nbdcrypt writes (passphrase), librbd reads ----
head -c $((16 * MiB)) /dev/urandom >"$T/p1"
server_start pw --filter="$NBDCRYPT_FILTER" nbd socket="$T/q.qsock" nbdcrypt-passphrase=+"$T/pass"
[ "$(nbdsh -u "$(uri pw)" -c 'print(h.get_size())')" = $((48 * MiB)) ] || fail "plaintext size"
nbdcopy "$T/p1" "$(uri pw)" || fail "write through the filter with the passphrase"
server_stop pw
qnbd_stop q
librbd_read "$T/r1"
[ "$(stat -c %s "$T/r1")" = $((48 * MiB)) ] || fail "librbd's plaintext size $(stat -c %s "$T/r1")"
cmp_range "$T/r1" 0 "$T/p1" 0 $((16 * MiB)) || fail "librbd decrypts other data than nbdcrypt wrote"
rm -f "$T/exported"
rbd_cmd export --no-progress "$CEPH_POOL/lk" "$T/exported" 2>/dev/null || fail "rbd export"
no_plaintext_blocks "$T/p1" "$T/exported"
pass "written by the filter (librbd's passphrase), read back by librbd (qemu rbd encrypt.format=luks2); RBD holds ciphertext"

# ---- librbd writes, nbdcrypt reads ----
head -c $((16 * MiB)) /dev/urandom >"$T/p2"
librbd_write "$T/p2"
rbd_qnbd_start q lk
server_start pw --filter="$NBDCRYPT_FILTER" nbd socket="$T/q.qsock" nbdcrypt-passphrase=+"$T/pass"
nbdcopy "$(uri pw)" "$T/r2" || fail "read through the filter"
server_stop pw
cmp_range "$T/r2" 0 "$T/p2" 0 $((16 * MiB)) || fail "the filter decrypts other data than librbd wrote"
pass "written by librbd, read back through the filter with the passphrase"

# ---- enroll into a KEK; the token serves it, librbd still opens it ----
kek=$(nbdcrypt enroll "$Q" --passphrase-file "$T/pass") || fail "nbdcrypt enroll on librbd's disk"
nbdcrypt check "$Q" | grep -q "kek $kek" || fail "check after enroll"
head -c $((16 * MiB)) /dev/urandom >"$T/p3"
server_start tok --filter="$NBDCRYPT_FILTER" nbd socket="$T/q.qsock"
nbdcopy "$(uri tok)" "$T/r3" || fail "read through the token"
cmp_range "$T/r3" 0 "$T/p2" 0 $((16 * MiB)) || fail "token unlock: other data"
nbdcopy "$T/p3" "$(uri tok)" || fail "write through the token"
server_stop tok
qnbd_stop q
librbd_read "$T/r4"
cmp_range "$T/r4" 0 "$T/p3" 0 $((16 * MiB)) || fail "librbd after enroll: other data"
pass "enrolled into kek $kek: the filter serves it by the token; librbd still opens it with the passphrase and reads what the filter wrote"
