#!/bin/bash
# Disks bound to a KEK on a real pykmip-server, in both token modes, served
# through the filter: 64 MiB round trip with nbdcopy, KMS down and back.
. "$(dirname "${BASH_SOURCE[0]}")/lib-filter.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
need nbdcopy nbdsh cmp
kms_init
kms_start a
A=127.0.0.1:$(kms_port a)
export KMS_TIMEOUT_MS=2000
kms_config "$T/kms.json" alice "127.0.0.1:$(kms_free_port)" "$A"
export NBDCRYPT_CONFIG=$T/kms.json

# kek create/list/revoke/destroy through the CLI
id=$(nbdcrypt kek create --provider kms --name filter-kek-1)
[ -n "$id" ] || fail "kek create printed nothing"
nbdcrypt kek list --provider kms --prefix filter-kek --json >"$T/list.json"
"$PY" - "$T/list.json" "$id" <<'EOF' || fail "kek list: $(cat "$T/list.json")"
import json, sys
l = json.load(open(sys.argv[1]))
assert [(k["id"], k["name"], k["state"]) for k in l] == [(sys.argv[2], "filter-kek-1", "active")], l
assert l[0]["created"].endswith("Z")
EOF
[ "$(kms_tool alice -s "$A" info "$id" | cut -d' ' -f2)" = "state=Active" ] || fail "not active"
pass "nbdcrypt kek create (Create + Activate) and list through the kmip provider"

head -c $((64 * 1024 * 1024)) /dev/urandom >"$T/plain"
for mode in kek kms-wrapped; do
  img=$T/$mode.img
  extra=()
  [ "$mode" = kms-wrapped ] && extra=(--kms-wrapped)
  nbdcrypt format "$img" --size 80M --provider kms --kek "$id" "${extra[@]}" >/dev/null
  nbdcrypt info "$img" | grep -q "provider kms, kek $id, mode $mode" || fail "$mode: token"
  serve "$mode" "$img" nbdcrypt-config="$T/kms.json"
  nbdcopy "$T/plain" "$(uri "$mode")"
  nbdcopy "$(uri "$mode")" "$T/back"
  head -c $((64 * 1024 * 1024)) "$T/back" | cmp - "$T/plain" || fail "$mode: read back differs"
  server_stop "$mode"
  no_plaintext_blocks "$T/plain" "$img"
  pass "mode $mode: format with kmip, 64 MiB nbdcopy round trip through the filter"
done

# The KMS goes away while a server runs: it keeps serving.  A new server
# started meanwhile cannot unlock and refuses clients; once the KMS is back
# the next connection unlocks.
serve keep "$T/kek.img" nbdcrypt-config="$T/kms.json"
nbdsh -u "$(uri keep)" -c "h.pread(4096, 0)" >/dev/null
kms_stop a
nbdcopy "$(uri keep)" "$T/back2"
head -c $((64 * 1024 * 1024)) "$T/back2" | cmp - "$T/plain" || fail "serving after KMS stop"
pass "KMS stopped: the running server keeps serving"
serve late "$T/kms-wrapped.img" nbdcrypt-config="$T/kms.json"
if nbdcopy "$(uri late)" "$T/none" 2>"$T/err"; then fail "served with the KMS down"; fi
server_alive late || fail "server died when the KMS was down"
grep -q "all KMIP servers failed" "$T/late.log" || fail "no KMS error in the log: $(tail -5 "$T/late.log")"
kms_start a "${A##*:}"
sleep 1.5 # the filter rate-limits unlock retries
ok=false
for _ in 1 2 3 4 5 6 7 8 9 10; do
  if nbdcopy "$(uri late)" "$T/back3" 2>/dev/null; then ok=true; break; fi
  sleep 1
done
$ok || fail "server did not unlock after the KMS came back: $(tail -5 "$T/late.log")"
head -c $((64 * 1024 * 1024)) "$T/back3" | cmp - "$T/plain" || fail "data after KMS restart"
pass "KMS down: new server refuses, no crash; after the KMS is back it unlocks"
server_stop late # one server per image: the next one would be refused

# -D nbdcrypt.kmip=1 traces the KMIP exchange in nbdkit's log, secrets masked.
server_start traced -D nbdcrypt.kmip=1 --filter="$NBDCRYPT_FILTER" \
  file file="$T/kms-wrapped.img" nbdcrypt-config="$T/kms.json"
nbdsh -u "$(uri traced)" -c "h.pread(4096, 0)" >/dev/null
log_has traced "kmip: request to 127.0.0.1:[0-9]+" || fail "no KMIP trace with -D nbdcrypt.kmip=1"
log_has traced "Data \(ByteString\) <masked [0-9]+ bytes>" || fail "the trace does not mask Data: $(grep -m3 Data "$T/traced.log")"
server_stop traced
pass "-D nbdcrypt.kmip=1 traces the exchange with Data masked"

# Revoked: both modes refused with the KEK's state; with the override kek
# mode unlocks (Get works in any state), kms-wrapped does not (the KMS refuses
# Decrypt with a key that is not Active); destroyed: neither, with a clear error.
nbdcrypt kek revoke --provider kms "$id"
for img in kek kms-wrapped; do
  must_refuse 1 "kek $id of provider kms is deactivated, not active; refusing to unlock" \
    "$T/$img.img" -- nbdcrypt check "$T/$img.img"
done
nbdcrypt check --allow-revoked "$T/kek.img" >/dev/null 2>&1 || fail "kek mode, revoked kek, override"
if nbdcrypt check --allow-revoked "$T/kms-wrapped.img" 2>"$T/err"; then fail "kms-wrapped with a revoked kek"; fi
grep -q "Decrypt failed: PermissionDenied" "$T/err" || fail "revoked: $(cat "$T/err")"
nbdcrypt kek destroy --force --provider kms "$id"
if nbdcrypt check "$T/kek.img" 2>"$T/err"; then fail "kek mode, destroyed kek"; fi
grep -q "kek $id not found in provider kms" "$T/err" || fail "destroyed: $(cat "$T/err")"
pass "revoked then destroyed kek: clear errors from nbdcrypt check"
