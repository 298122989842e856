#!/usr/bin/env bash
# The "VM moved to another host" case with the kmip provider: a disk on RBD
# bound to a KEK in pykmip-server is written through host A (its qemu-nbd and
# nbdkit, its configuration) and read and fio-verified through host B: its
# own qemu-nbd, nbdkit, configuration and client identity (bob), only the KMS
# and the Ceph cluster in common.  Both token modes.  The KMS runs the
# operation policy of tests/kms/policy-nbdcrypt.json: host A also holds the
# admin identity (alice: creates the KEKs), host B only the serving identity
# (bob), as docs/deployment.md describes.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib-ceph.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
need qemu-nbd nbdcopy fio
fio --enghelp=nbd >/dev/null 2>&1 || fail "this fio has no nbd engine"
MiB=$((1024 * 1024))

kms_init
kms_slugs_start alice=nbdcrypt-admin bob=nbdcrypt-serving
KMS_POLICY=$NBDCRYPT_SRCDIR/tests/kms/policy-nbdcrypt.json kms_start k
K=127.0.0.1:$(kms_port k)
mkdir -m 700 "$T/hosta" "$T/hostb"
# host_config FILE [ADMIN-JSON]: provider "kms", serving identity bob.
host_config() {
  cat >"$1" <<JSON
{"providers": {"kms": {"type": "kmip", "servers": ["$K"], "ca": "$KMS_DIR/ca.pem",
   "cert": "$KMS_DIR/bob.pem", "key": "$KMS_DIR/bob.key", ${2:-}
   "operation_policy": "nbdcrypt", "timeout_ms": ${KMS_TIMEOUT_MS:-5000}}},
 "default_provider": "kms"}
JSON
}
host_config "$T/hosta/config.json" "\"admin\": {\"cert\": \"$KMS_DIR/alice.pem\", \"key\": \"$KMS_DIR/alice.key\"},"
host_config "$T/hostb/config.json"
ceph_start
head -c $((24 * MiB)) /dev/urandom >"$T/plain"

fiojob() { # NAME [fio args]: 16 MiB after the nbdcopy data, crc32c verify
  timeout 120 fio --name=v --ioengine=nbd --uri="$(uri "$1")" --rw=randwrite \
    --bssplit=4k/60:64k/40 --blockalign=4k --verify=crc32c --iodepth=8 \
    --size=16m --offset=24m --randrepeat=1 --randseed=15 "${@:2}"
}

for mode in kek kms-wrapped; do
  extra=()
  [ "$mode" = kms-wrapped ] && extra=(--kms-wrapped)
  rbd_cmd create --size 64M "$CEPH_POOL/$mode" || fail "rbd create"
  rbd_qnbd_start "a-$mode" "$mode"
  kek=$(NBDCRYPT_CONFIG=$T/hosta/config.json nbdcrypt format "$(qsock_uri "a-$mode")" \
    --provider kms "${extra[@]}") || fail "$mode: format with the kmip provider"
  nbdcrypt info "$(qsock_uri "a-$mode")" | grep -q "provider kms, kek $kek, mode $mode" ||
    fail "$mode: token"
  server_start "a-$mode" --filter="$NBDCRYPT_FILTER" nbd socket="$T/a-$mode.qsock" \
    nbdcrypt-config="$T/hosta/config.json"
  nbdcopy "$T/plain" "$(uri "a-$mode")" || fail "$mode: host A write"
  fiojob "a-$mode" >"$T/fio-a" 2>&1 || { tail -15 "$T/fio-a" >&2; fail "$mode: host A fio"; }
  server_stop "a-$mode"
  qnbd_stop "a-$mode"

  rbd_qnbd_start "b-$mode" "$mode"
  NBDCRYPT_CONFIG=$T/hostb/config.json nbdcrypt check "$(qsock_uri "b-$mode")" >/dev/null ||
    fail "$mode: host B cannot unlock through the KMS"
  server_start "b-$mode" --filter="$NBDCRYPT_FILTER" nbd socket="$T/b-$mode.qsock" \
    nbdcrypt-config="$T/hostb/config.json"
  nbdcopy "$(uri "b-$mode")" "$T/back" || fail "$mode: host B read"
  cmp_range "$T/back" 0 "$T/plain" 0 $((24 * MiB)) || fail "$mode: host B reads other data"
  fiojob "b-$mode" --verify_only=1 >"$T/fio-b" 2>&1 || { tail -15 "$T/fio-b" >&2; fail "$mode: host B fio verify"; }
  grep -q "err= 0" "$T/fio-b" || fail "$mode: fio errors on host B"
  server_stop "b-$mode"
  rm -f "$T/exported"
  rbd_cmd export --no-progress "$CEPH_POOL/$mode" "$T/exported" 2>/dev/null || fail "rbd export"
  no_plaintext_blocks "$T/plain" "$T/exported"
  qnbd_stop "b-$mode"
  pass "kmip $mode: formatted (admin alice) and written on host A, read and fio-verified on host B (serving identity only, own qemu-nbd/nbdkit/config); RBD holds ciphertext"
done

# Host B without a way to the KMS (a config naming another server) cannot
# unlock: the key is the KMS's, not the host's.
K=127.0.0.1:$(kms_free_port) KMS_TIMEOUT_MS=1000 host_config "$T/hostb/nokms.json"
rbd_qnbd_start c kek
must_refuse 1 "KMIP|connect|unlock" - -- \
  env NBDCRYPT_CONFIG="$T/hostb/nokms.json" "$NBDCRYPT" check "$(qsock_uri c)"
pass "a host that cannot reach the KMS cannot unlock the RBD disk"
