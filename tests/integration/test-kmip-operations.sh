#!/bin/bash
# nbdcrypt-test: sanitize
# The KMIP client against a real pykmip-server: every operation nbdcrypt
# uses, protocol 1.2 and 1.4, the masked trace, connection reuse and
# reconnection after a server restart.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
kms_init
kms_start a
S=127.0.0.1:$(kms_port a)
tool() { kms_tool alice -s "$S" "$@"; }

# Discover Versions and Query
versions=$(tool versions)
grep -qx 1.4 <<<"$versions" || fail "server versions lack 1.4: $versions"
grep -qx 1.2 <<<"$versions" || fail "server versions lack 1.2: $versions"
q=$(tool query)
grep -q '^vendor: PyKMIP' <<<"$q" || fail "query vendor: $q"
for op in Create Get Locate Activate Revoke Destroy Encrypt Decrypt; do
  grep -qx "operation: $op" <<<"$q" || fail "query does not list $op: $q"
done
pass "discover versions and query"

# Create, Activate, Get (a 256-bit key, the same twice), Get Attributes
id=$(tool create kek-ops-1)
[ -n "$id" ] || fail "create printed no id"
info=$(tool info "$id")
[ "$info" = "name=kek-ops-1 state=PreActive initial_date=${info##*=}" ] || fail "info: $info"
tool activate "$id"
info=$(tool info "$id")
grep -q 'state=Active' <<<"$info" || fail "not active after activate: $info"
if tool activate "$id" 2>"$T/err"; then fail "second activate succeeded"; fi
grep -q "Activate failed: PermissionDenied" "$T/err" || fail "second activate: $(cat "$T/err")"
key1=$(tool get "$id")
key2=$(kms_tool alice -s "localhost:$(kms_port a)" get "$id")
[[ $key1 =~ ^[0-9a-f]{64}$ ]] || fail "get: not a 256-bit key: $key1"
[ "$key1" = "$key2" ] || fail "two gets differ"
pass "create, activate, get (by IP and by host name), get attributes"

# Locate by name and all
id2=$(tool create kek-ops-2)
[ "$(tool locate kek-ops-1)" = "$id" ] || fail "locate kek-ops-1: $(tool locate kek-ops-1)"
[ "$(tool locate kek-ops-2)" = "$id2" ] || fail "locate kek-ops-2"
[ -z "$(tool locate no-such-name)" ] || fail "locate of an unknown name found something"
all=$(tool locate | sort | tr '\n' ' ')
[ "$all" = "$(printf '%s\n' "$id" "$id2" | sort | tr '\n' ' ')" ] || fail "locate all: $all"
pass "locate by name and all"

# Encrypt / Decrypt with AES-GCM (1.4), with and without AAD
plain=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
read -r iv tag cipher < <(tool encrypt "$id" "$plain" c0ffee)
[ ${#iv} = 24 ] && [ ${#tag} = 32 ] && [ ${#cipher} = 64 ] || fail "encrypt output: $iv $tag $cipher"
[ "$cipher" != "$plain" ] || fail "ciphertext equals plaintext"
[ "$(tool decrypt "$id" "$iv" "$tag" "$cipher" c0ffee)" = "$plain" ] || fail "decrypt round trip"
# the KMS really used the key we can Get: check with an independent AES-GCM
$PY - "$key1" "$iv" "$tag" "$cipher" "$plain" <<'EOF' || fail "ciphertext does not match AES-256-GCM of the key"
import sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key, iv, tag, ct, pt = (bytes.fromhex(a) for a in sys.argv[1:])
assert AESGCM(key).decrypt(iv, ct + tag, bytes.fromhex("c0ffee")) == pt
EOF
if tool decrypt "$id" "$iv" "$tag" "$cipher" c0ffef 2>"$T/err"; then fail "decrypt with wrong AAD"; fi
grep -q "Decrypt failed" "$T/err" || fail "wrong AAD error: $(cat "$T/err")"
bad_tag=$(printf '%032x' 0)
if tool decrypt "$id" "$iv" "$bad_tag" "$cipher" c0ffee 2>"$T/err"; then fail "decrypt with bad tag"; fi
read -r iv2 tag2 cipher2 < <(tool encrypt "$id" "$plain")
[ "$iv2" != "$iv" ] || fail "IV reused"
[ "$(tool decrypt "$id" "$iv2" "$tag2" "$cipher2")" = "$plain" ] || fail "decrypt without AAD"
# a PreActive key cannot encrypt
if tool encrypt "$id2" "$plain" 2>"$T/err"; then fail "encrypt with a pre-active key"; fi
grep -q "Encrypt failed: PermissionDenied" "$T/err" || fail "pre-active encrypt: $(cat "$T/err")"
pass "encrypt/decrypt AES-GCM round trip, AAD and tag checked, cross-checked with python"

# Protocol 1.2: Get works, GCM refused before anything is sent
[ "$(tool --protocol 1.2 get "$id")" = "$key1" ] || fail "get at 1.2"
if tool --protocol 1.2 encrypt "$id" "$plain" 2>"$T/err"; then fail "encrypt at 1.2"; fi
grep -q "needs protocol 1.4" "$T/err" || fail "1.2 encrypt error: $(cat "$T/err")"
pass "protocol 1.2"

# The trace shows the TTLV tree but never the key, the data or the IV
tool --trace get "$id" >"$T/out" 2>"$T/trace"
grep -q "Key Material (ByteString) <masked 32 bytes>" "$T/trace" || fail "trace does not mask the key"
grep -q "Operation (Enumeration) Get" "$T/trace" || fail "trace lacks the operation"
! grep -qi "$key1" "$T/trace" || fail "trace leaks the key"
NBDCRYPT_KMIP_TRACE=1 tool decrypt "$id" "$iv" "$tag" "$cipher" c0ffee >/dev/null 2>"$T/trace"
grep -q "Data (ByteString) <masked 32 bytes>" "$T/trace" || fail "trace does not mask Data"
grep -q "IV/Counter/Nonce (ByteString) <masked 12 bytes>" "$T/trace" || fail "trace does not mask IV"
! grep -qi "$plain" "$T/trace" || fail "trace leaks the plaintext"
! grep -qi "$iv" "$T/trace" || fail "trace leaks the IV"
pass "trace (flag and NBDCRYPT_KMIP_TRACE=1) masks key material, data and IV"

# Revoke, then Destroy; afterwards the key is gone
if tool destroy "$id" 2>"$T/err"; then fail "destroyed an active key"; fi
grep -q "Destroy failed: PermissionDenied (Object is active" "$T/err" || fail "$(cat "$T/err")"
tool revoke "$id"
grep -q 'state=Deactivated' <<<"$(tool info "$id")" || fail "not deactivated after revoke"
if tool encrypt "$id" "$plain" 2>"$T/err"; then fail "encrypt with a revoked key"; fi
tool destroy "$id"
if tool get "$id" 2>"$T/err"; then fail "get after destroy succeeded"; fi
grep -q "kms $S: Get failed: ItemNotFound" "$T/err" || fail "get after destroy: $(cat "$T/err")"
[ -z "$(tool locate kek-ops-1)" ] || fail "destroyed key still located"
pass "revoke, destroy, then ItemNotFound"

# One connection for several operations; after a server restart the next
# operation reconnects once, transparently.
kms_tool alice -s "$S" --verbose get-twice "$id2" 0 >"$T/two" 2>"$T/err" || fail "get-twice: $(cat "$T/err")"
[ "$(sort -u "$T/two" | wc -l)" = 1 ] && [ "$(wc -l <"$T/two")" = 2 ] || fail "get-twice output"
conns_before=$(grep -c "Receiving incoming connection" "$KMS_DIR/a/server.log" || true)
kms_tool alice -s "$S" get-twice "$id2" 0 >/dev/null
conns_after=$(grep -c "Receiving incoming connection" "$KMS_DIR/a/server.log" || true)
[ $((conns_after - conns_before)) = 1 ] || fail "two gets used $((conns_after - conns_before)) connections"
kms_tool alice -s "$S" get-twice "$id2" 4 >"$T/two" 2>"$T/err" &
getter=$!
sleep 1
kms_stop a
kms_start a "${S##*:}"
wait "$getter" || fail "get across a server restart: $(cat "$T/err")"
[ "$(wc -l <"$T/two")" = 2 ] && [ "$(sort -u "$T/two" | wc -l)" = 1 ] || fail "restart gets differ"
pass "connection reused; re-established after the server restarted"
