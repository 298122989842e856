#!/usr/bin/env bash
# nbdcrypt on a real (one-node) Ceph cluster: qemu-nbd serves an RBD image,
# nbdcrypt format/info/check/rekey/recrypt work on its NBD URI, the filter
# over it serves the plaintext (nbdcopy and fio verify), the ciphertext is
# what RBD stores (rbd export), and a second, independent host (its own
# qemu-nbd, nbdkit and configuration, only the keystore copy and the cluster
# shared) opens the disk and reads the same data, also after the first host
# died in the middle of writing (RBD's exclusive lock passes to it).
# nbdcrypt-test: serial
. "$(dirname "$0")/lib-ceph.sh"
need qemu-nbd nbdcopy nbdsh fio cmp
fio --enghelp=nbd >/dev/null 2>&1 || fail "this fio has no nbd engine"
MiB=$((1024 * 1024))

ceph_start
rbd_cmd create --size 96M "$CEPH_POOL/disk" || fail "rbd create"
rbd_qnbd_start a disk
A=$(qsock_uri a)

# ---- host A: format, info, check on the NBD URI ----
kek=$(nbdcrypt format "$A") || fail "nbdcrypt format on qemu-nbd rbd"
nbdcrypt info "$A" >"$T/info" || fail "info"
grep -q "provider local, kek $kek" "$T/info" || fail "info shows no token for $kek: $(cat "$T/info")"
grep -q "sector size:   4096" "$T/info" || fail "info: $(cat "$T/info")"
nbdcrypt check "$A" >/dev/null || fail "check on the rbd disk"
pass "format, info, check on nbd+unix (qemu-nbd rbd:$CEPH_POOL/disk)"

# ---- serve the plaintext; nbdcopy and fio verify through the filter ----
head -c $((48 * MiB)) /dev/urandom >"$T/plain"
server_start crypt --filter="$NBDCRYPT_FILTER" nbd socket="$T/a.qsock"
[ "$(nbdsh -u "$(uri crypt)" -c 'print(h.get_size())')" = $((80 * MiB)) ] || fail "plaintext size"
nbdcopy "$T/plain" "$(uri crypt)" || fail "nbdcopy into the filter"
fiojob() { # NAME [fio args]: the upper 32 MiB, 2 jobs x 16 MiB, crc32c verify
  local name=$1
  shift
  timeout 120 fio --name=v --ioengine=nbd --uri="$(uri "$name")" --rw=randwrite \
    --bssplit=4k/50:64k/30:1m/20 --blockalign=4k --verify=crc32c --numjobs=2 \
    --iodepth=8 --size=16m --offset=48m --offset_increment=16m --randrepeat=1 \
    --randseed=1515 --group_reporting=1 "$@"
}
fiojob crypt >"$T/fio1" 2>&1 || { tail -15 "$T/fio1" >&2; fail "fio write+verify through the filter"; }
grep -q "err= 0" "$T/fio1" || fail "fio errors: $(grep err= "$T/fio1")"
nbdcopy "$(uri crypt)" "$T/back" || fail "read back"
cmp_range "$T/back" 0 "$T/plain" 0 $((48 * MiB)) || fail "nbdcopy read back differs"
server_stop crypt
pass "filter over qemu-nbd rbd: 48 MiB nbdcopy round trip, fio randwrite + crc32c verify, no errors"

# ---- the ciphertext is what RBD holds ----
rbd_cmd export --no-progress "$CEPH_POOL/disk" "$T/exported" 2>/dev/null || fail "rbd export"
[ "$(stat -c %s "$T/exported")" = $((96 * MiB)) ] || fail "export size"
head -c 4096 "$T/exported" | grep -q "LUKS" || fail "no LUKS header at the start of the RBD image"
no_plaintext_blocks "$T/plain" "$T/exported"
pass "rbd export: a LUKS2 header, none of the 4 KiB plaintext blocks"

# ---- rekey and recrypt on the NBD URI; the data survives both ----
vk0=$(nbdcrypt_volume_key "$A")
kek2=$(nbdcrypt rekey "$A") || fail "rekey on the rbd disk"
[ "$kek2" != "$kek" ] || fail "rekey kept the KEK"
nbdcrypt info "$A" | grep -q "kek $kek2" || fail "info after rekey"
[ "$(nbdcrypt_volume_key "$A")" = "$vk0" ] || fail "rekey changed the volume key"
nbdcrypt recrypt "$A" --hotzone 16M >/dev/null || fail "recrypt on the rbd disk"
[ "$(nbdcrypt_volume_key "$A")" != "$vk0" ] || fail "recrypt kept the volume key"
nbdcrypt check "$A" >/dev/null || fail "check after recrypt"
server_start crypt --filter="$NBDCRYPT_FILTER" nbd socket="$T/a.qsock"
nbdcopy "$(uri crypt)" "$T/back2" || fail "read after recrypt"
cmp_range "$T/back2" 0 "$T/plain" 0 $((48 * MiB)) || fail "data changed by rekey+recrypt"
fiojob crypt --verify_only=1 >"$T/fio2" 2>&1 || { tail -15 "$T/fio2" >&2; fail "fio verify after recrypt"; }
server_stop crypt
rbd_cmd export --no-progress "$CEPH_POOL/disk" "$T/exported2" 2>/dev/null || fail "rbd export"
no_plaintext_blocks "$T/plain" "$T/exported2"
cmp -s <(tail -c +$((16 * MiB + 1)) "$T/exported") <(tail -c +$((16 * MiB + 1)) "$T/exported2") &&
  fail "recrypt left the ciphertext unchanged"
pass "rekey (new KEK, same DEK) and recrypt (new DEK, ciphertext rewritten) over rbd; data and fio verify intact"

# ---- the exclusive lock: host A's librbd owns it after writing ----
rbd_cmd lock ls --format json "$CEPH_POOL/disk" >"$T/locks" || fail "rbd lock ls"
owner_a=$("$PY" -c 'import json,sys; l=json.load(open(sys.argv[1])); assert len(l)==1, l; print(l[0]["locker"])' "$T/locks") ||
  fail "expected one exclusive lock held by host A's qemu-nbd: $(cat "$T/locks")"
addr_a=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["address"])' "$T/locks")
pass "RBD exclusive lock held by host A's client ($owner_a at $addr_a)"

# ---- host A dies while writing ----
server_start crypt --filter="$NBDCRYPT_FILTER" nbd socket="$T/a.qsock"
head -c $((8 * MiB)) /dev/urandom >"$T/late"
nbdcopy "$T/late" "$(uri crypt)" &
copy=$!
sleep 0.3
kill -KILL "$(cat "$T/a.qpid")"
wait "$copy" 2>/dev/null || true
server_stop crypt
qnbd_stop a

# ---- host B: its own configuration (keystore copy = the KMS), qemu-nbd, nbdkit ----
mkdir -m 700 "$T/hostb" "$T/hostb/keys"
cp -p "$KEYSTORE" "$T/hostb/keys/keystore.json"
cat >"$T/hostb/config.json" <<JSON
{"providers": {"local": {"type": "native", "keystore": "$T/hostb/keys/keystore.json"}},
 "default_provider": "local"}
JSON
rbd_qnbd_start b disk
B=$(qsock_uri b)
NBDCRYPT_CONFIG=$T/hostb/config.json nbdcrypt check "$B" >/dev/null || fail "host B cannot unlock"
server_start hostb --filter="$NBDCRYPT_FILTER" nbd socket="$T/b.qsock" \
  nbdcrypt-config="$T/hostb/config.json"
nbdcopy "$(uri hostb)" "$T/back3" || fail "host B read"
cmp_range "$T/back3" $((8 * MiB)) "$T/plain" $((8 * MiB)) $((40 * MiB)) || fail "host B: data outside the interrupted write differs"
fiojob hostb --verify_only=1 >"$T/fio3" 2>&1 || { tail -15 "$T/fio3" >&2; fail "fio verify on host B"; }
# host B writes: its librbd takes the lock of the dead host A (blocklisting it)
nbdcopy "$T/late" "$(uri hostb)" || fail "host B write"
nbdcopy "$(uri hostb)" "$T/back4" || fail "host B read after write"
cmp_range "$T/back4" 0 "$T/late" 0 $((8 * MiB)) || fail "host B write read back"
server_stop hostb
rbd_cmd lock ls --format json "$CEPH_POOL/disk" >"$T/locks2"
"$PY" - "$T/locks2" "$owner_a" <<'PYEOF' || fail "lock after host B wrote: $(cat "$T/locks2")"
import json, sys
l = json.load(open(sys.argv[1]))
assert len(l) == 1 and l[0]["locker"] != sys.argv[2], l
PYEOF
ceph_cmd osd blocklist ls 2>/dev/null | grep -qF "/${addr_a##*/}" ||
  fail "host A's client $addr_a was not blocklisted: $(ceph_cmd osd blocklist ls 2>&1)"
pass "host A killed mid-write; host B (own config, keystore copy) unlocks, reads the data, fio verifies, takes over the exclusive lock"

# ---- host B dies in the middle of a recrypt; host A resumes it ----
NBDCRYPT_CONFIG=$T/hostb/config.json paused_after_first_step recrypt "$B"
kill -KILL "$PAUSED_PID" "$(cat "$T/b.qpid")"
wait "$PAUSED_PID" 2>/dev/null || true
qnbd_stop b
rbd_qnbd_start a2 disk
A2=$(qsock_uri a2)
nbdcrypt info "$A2" --json | grep -q '"nbdcrypt-reencrypt-v1"' ||
  fail "no re-encryption in progress recorded in the header after host B died"
# Told not to resume it (nbdcrypt-reencrypt=no), the filter refuses the disk
# and says why; by default it would resume the recrypt online.
server_start refused --filter="$NBDCRYPT_FILTER" nbd socket="$T/a2.qsock" nbdcrypt-reencrypt=no
if nbdcopy "$(uri refused)" "$T/none" 2>/dev/null; then fail "served a disk half way through recrypt"; fi
server_stop refused
grep -q "in the middle of a re-encryption" "$T/refused.log" ||
  fail "the refusal does not say the disk is half way: $(tail -5 "$T/refused.log")"
nbdcrypt recrypt "$A2" --resume >/dev/null || fail "host A could not resume host B's recrypt"
nbdcrypt info "$A2" --json | grep -q '"nbdcrypt-reencrypt-v1"' && fail "requirement left after resume"
server_start crypt --filter="$NBDCRYPT_FILTER" nbd socket="$T/a2.qsock"
nbdcopy "$(uri crypt)" "$T/back5" || fail "read after the resumed recrypt"
cmp_range "$T/back5" 0 "$T/back4" 0 $((80 * MiB)) || fail "data changed by the interrupted+resumed recrypt"
server_stop crypt
pass "host B killed during recrypt (progress in the header on RBD); the filter with nbdcrypt-reencrypt=no refuses the disk; host A resumes and the data is intact"

# ---- what the exclusive lock does not do: refuse a second live writer ----
# (docs/deployment.md: librbd hands the lock over cooperatively, so one
# server per disk is the orchestrator's job).  Raw writes to the last 4 KiB.
owner() { rbd_cmd lock ls --format json "$CEPH_POOL/disk" | "$PY" -c 'import json,sys; l=json.load(sys.stdin); print(l[0]["locker"] if l else "")'; }
last=$((96 * MiB - 4096))
nbdsh -u "$A2" -c "h.pwrite(b'a' * 4096, $last); h.flush()" || fail "host A raw write"
owner1=$(owner)
rbd_qnbd_start b2 disk
nbdsh -u "$(qsock_uri b2)" -c "h.pwrite(b'b' * 4096, $last); h.flush()" ||
  fail "a second live qemu-nbd could not write"
owner2=$(owner)
[ -n "$owner1" ] && [ -n "$owner2" ] && [ "$owner1" != "$owner2" ] ||
  fail "exclusive lock did not move between live clients: $owner1 -> $owner2"
nbdsh -u "$A2" -c "assert h.pread(4096, $last) == b'b' * 4096" || fail "host A does not see host B's write"
pass "RBD exclusive lock passes cooperatively between two live writers ($owner1 -> $owner2): not a fence"
