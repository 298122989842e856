#!/usr/bin/env bash
# cryptsetup itself unlocks nbdcrypt disks through our token plugin
# (libcryptsetup-token-nbdcrypt.so): `cryptsetup open --test-passphrase
# --token-only` fetches the keyslot secret from the provider the token names,
# for a disk made by `nbdcrypt format` and one made by cryptsetup and
# `nbdcrypt enroll`, native and kmip, modes kek and kms-wrapped; luksDump
# shows the token; a destroyed or wrong KEK, a missing configuration, an
# unknown provider, a stopped KMS, a compromised KEK and a malformed token fail with a message
# that names the cause.
#
# cryptsetup 2.6 loads token plugins only from its compiled-in directory, so
# every cryptsetup call that should see the plugin runs in a private mount
# namespace where a directory holding only our plugin is bind-mounted over
# that directory; the system's directory is never touched.  In the ASan build
# cryptsetup runs with the sanitizer runtime preloaded, so the ASan/UBSan-built
# plugin is checked inside it.
# nbdcrypt-test: sanitize
. "$(dirname "$0")/lib.sh"
need cryptsetup unshare mount od cmp

PLUGIN=${NBDCRYPT_BUILDDIR:?run through ctest}/plugins/libcryptsetup-token-nbdcrypt.so
[ -f "$PLUGIN" ] || fail "token plugin not built: $PLUGIN"
tokendir=$(cryptsetup --help | sed -n 's/^LUKS2 external token plugin path: \(.*\)\.$/\1/p')
[ -n "$tokendir" ] || fail "this cryptsetup does not load external token plugins"
TOKENDIR=$(readlink -f "$tokendir")
[ -d "$TOKENDIR" ] || fail "cryptsetup's token directory $TOKENDIR does not exist"
mkdir "$T/plugins"
cp "$PLUGIN" "$T/plugins/"

export NBDCRYPT_TEST_SANITIZER_LOG=$T/sanitizer
on_exit sanitizer_check

# cs ARGS...: cryptsetup ARGS with our plugin (and only it) in its token
# directory; in the ASan build with the runtime preloaded
# (NBDCRYPT_TEST_PRELOAD, set by ctest).  Exit 99 if the bind mount fails.
cs() {
  unshare -m --propagation private -- sh -c '
    mount --bind "$1" "$2" || exit 99
    shift 2
    if [ -n "${NBDCRYPT_TEST_PRELOAD:-}" ]; then
      LD_PRELOAD=$NBDCRYPT_TEST_PRELOAD
      ASAN_OPTIONS=log_path=$NBDCRYPT_TEST_SANITIZER_LOG
      UBSAN_OPTIONS=log_path=$NBDCRYPT_TEST_SANITIZER_LOG
      export LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS
    fi
    exec cryptsetup "$@"' sh "$T/plugins" "$TOKENDIR" "$@"
}
# A private mount namespace is the whole point of this test: no skipping.
if ! seen=$(unshare -m --propagation private -- sh -c 'mount --bind "$1" "$2" && ls "$2"' \
  sh "$T/plugins" "$TOKENDIR" 2>&1); then
  fail "cannot bind-mount over $TOKENDIR in a private mount namespace (unshare -m needs root): $seen"
fi
[ "$seen" = libcryptsetup-token-nbdcrypt.so ] || fail "token directory in the namespace: $seen"
[ ! -e "$TOKENDIR/libcryptsetup-token-nbdcrypt.so" ] || fail "the plugin leaked into $TOKENDIR"

# token_opens IMG WHAT [ARGS...]: cryptsetup unlocks IMG with its token only.
token_opens() {
  local img=$1 what=$2
  shift 2
  cs open --test-passphrase --token-only -v "$@" "$img" >"$T/out" 2>&1 ||
    fail "$what: cryptsetup open --token-only failed: $(cat "$T/out")"
  grep -q "Command successful" "$T/out" || fail "$what: $(cat "$T/out")"
}
# token_fails IMG WHAT PATTERN [ARGS...]: it does not, with PATTERN in what
# cryptsetup -v prints; the exit status is left in $rc.
token_fails() {
  local img=$1 what=$2 pattern=$3
  shift 3
  rc=0
  cs open --test-passphrase --token-only -v "$@" "$img" >"$T/out" 2>"$T/err" || rc=$?
  [ "$rc" != 0 ] || fail "$what: cryptsetup open succeeded"
  [ "$rc" != 99 ] || fail "$what: bind mount failed: $(cat "$T/err")"
  grep -Eq -- "$pattern" "$T/err" "$T/out" || fail "$what: no '$pattern' in: $(cat "$T/err" "$T/out")"
  echo "  $what (exit $rc): $(cat "$T/err" "$T/out" | grep -E -m1 -- "$pattern")"
}

# ---- a disk made by nbdcrypt format, native provider, mode kek ------------
img=$T/disk.img
kek=$(nbdcrypt kek create --name "token plugin")
nbdcrypt format "$img" --size 48M --kek "$kek" >/dev/null
token_opens "$img" "nbdcrypt format"
grep -q "Key slot 0 unlocked" "$T/out" || fail "keyslot: $(cat "$T/out")"
token_opens "$img" "--token-type nbdcrypt" --token-type nbdcrypt
token_opens "$img" "--token-id 0" --token-id 0
pass "cryptsetup opens a disk made by nbdcrypt format with its token (any, by type, by id)"

# A detached header (nbdcrypt encrypt --header) opens with --header and its token.
head -c $((8 * 1024 * 1024)) /dev/urandom >"$T/det.img"
nbdcrypt encrypt "$T/det.img" --header "$T/det.hdr" >/dev/null 2>&1 || fail "encrypt --header failed"
token_opens "$T/det.img" "detached header" --header "$T/det.hdr"
pass "cryptsetup opens a detached header made by nbdcrypt encrypt --header with its token"

cs luksDump "$img" >"$T/dump" 2>&1 || fail "luksDump: $(cat "$T/dump")"
sed -n '/^Tokens:/,/^Digests:/p' "$T/dump" >"$T/tokens"
grep -Eq '^  0: nbdcrypt$' "$T/tokens" || fail "luksDump tokens: $(cat "$T/tokens")"
grep -Eq "^	Provider: +local$" "$T/tokens" || fail "no provider in luksDump: $(cat "$T/tokens")"
grep -Eq "^	KEK id: +$kek$" "$T/tokens" || fail "no kek id in luksDump: $(cat "$T/tokens")"
grep -Eq "^	Mode: +kek$" "$T/tokens" || fail "no mode in luksDump: $(cat "$T/tokens")"
kek_bytes "$kek" "$T/kek.bin"
kek_b64=$(base64 -w0 <"$T/kek.bin")
kek_hex=$(od -An -v -tx1 "$T/kek.bin" | tr -d ' \n')
if grep -qF -e "$kek_b64" -e "$kek_hex" "$T/dump"; then fail "luksDump shows the KEK"; fi
pass "luksDump shows provider, kek id and mode through the plugin, not the KEK"

# The token hands cryptsetup the real volume key: a passphrase keyslot added
# through the token opens to the volume key nbdcrypt unlocks.
printf 'added through the token' >"$T/pass"
cs luksAddKey -q --token-only --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$img" "$T/pass" \
  2>"$T/err" || fail "luksAddKey --token-only: $(cat "$T/err")"
theirs=$(cryptsetup_volume_key "$img" "$T/pass" --key-slot 1 --disable-external-tokens)
[ "$theirs" = "$(nbdcrypt_volume_key "$img")" ] || fail "volume key through the token differs"
pass "luksAddKey --token-only: the token yields nbdcrypt's volume key"

# ---- a disk made by cryptsetup luksFormat, then nbdcrypt enroll -----------
cs_img=$T/cs.img
printf 'correct horse battery staple' >"$T/cs-pass"
cs_disk "$cs_img" 32M "$T/cs-pass"
cs_kek=$(nbdcrypt enroll "$cs_img" --passphrase-file "$T/cs-pass" 2>/dev/null)
token_opens "$cs_img" "luksFormat + enroll"
grep -q "Key slot 1 unlocked" "$T/out" || fail "enrolled keyslot: $(cat "$T/out")"
cs luksDump "$cs_img" | grep -Eq "^	KEK id: +$cs_kek$" || fail "luksDump of the enrolled disk"
pass "cryptsetup opens a luksFormat disk enrolled by nbdcrypt (keyslot 1) with the token"

# ---- failures: clear messages, non-zero exit ------------------------------
echo "failures:"
NBDCRYPT_CONFIG=$T/none.json token_fails "$img" "configuration missing" \
  "cannot load the key provider configuration: .*$T/none.json.*does not exist"

cat >"$T/other.json" <<JSON
{"providers": {"elsewhere": {"type": "native", "keystore": "$KEYSTORE"}}}
JSON
NBDCRYPT_CONFIG=$T/other.json token_fails "$img" "unknown provider" \
  "nbdcrypt token 0 \(provider local, kek $kek\): no provider local in $T/other.json"

# Wrong KEK: the keystore entry now holds other bytes; the token hands them
# over and cryptsetup finds they open nothing (exit 2, as a wrong passphrase).
cp "$KEYSTORE" "$T/keystore.good"
"$PY" - "$KEYSTORE" "$kek" <<'PYEOF'
import base64, json, os, sys
store = json.load(open(sys.argv[1]))
store["keys"][sys.argv[2]]["key"] = base64.b64encode(os.urandom(32)).decode()
json.dump(store, open(sys.argv[1], "w"))
PYEOF
token_fails "$img" "wrong KEK" "cannot unlock assigned keyslot" --token-type nbdcrypt
[ "$rc" = 2 ] || fail "wrong KEK: exit $rc, want 2 (cryptsetup's wrong passphrase)"
cp "$T/keystore.good" "$KEYSTORE"
token_opens "$img" "KEK restored"

nbdcrypt kek destroy --force "$kek"
token_fails "$img" "KEK destroyed" "nbdcrypt token 0: kek $kek not found in keystore $KEYSTORE"
pass "destroyed or wrong KEK, missing configuration, unknown provider: refused, reason stated"

# The plugin's validate refuses a malformed token on import, and names why.
bad_img=$T/bad.img
cp "$cs_img" "$bad_img"
printf '{"type":"nbdcrypt","keyslots":["0"],"provider":"local","kek_id":"%s","mode":"plain"}' \
  "$cs_kek" >"$T/bad-token.json"
if cs token import --json-file "$T/bad-token.json" --key-slot 0 "$bad_img" 2>"$T/err"; then
  fail "cryptsetup imported a token with mode \"plain\""
fi
grep -q 'mode "plain" is not "kek" or "kms-wrapped"' "$T/err" || fail "validate: $(cat "$T/err")"
printf '{"type":"nbdcrypt","keyslots":["0"],"provider":"local","kek_id":"%s","mode":"kek"}' \
  "$cs_kek" >"$T/good-token.json"
cs token import --json-file "$T/good-token.json" --key-slot 0 "$bad_img" 2>"$T/err" ||
  fail "validate refused a good token: $(cat "$T/err")"
pass "token import: the plugin refuses a malformed nbdcrypt token and accepts a good one"

# ---- kmip provider: modes kek and kms-wrapped against pykmip-server --------
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
kms_init
kms_start a
port=$(kms_port a)
KMS_TIMEOUT_MS=2000 kms_config "$T/kms.json" alice "127.0.0.1:$port"
export NBDCRYPT_CONFIG=$T/kms.json
kms_kek=$(nbdcrypt kek create --provider kms --name "token plugin")
for mode in kek kms-wrapped; do
  extra=()
  [ "$mode" = kms-wrapped ] && extra=(--kms-wrapped)
  nbdcrypt format "$T/$mode.img" --size 32M --provider kms --kek "$kms_kek" "${extra[@]}" >/dev/null
  token_opens "$T/$mode.img" "kmip $mode"
  cs luksDump "$T/$mode.img" >"$T/dump" 2>&1
  grep -Eq "^	Mode: +$mode$" "$T/dump" && grep -Eq "^	Provider: +kms$" "$T/dump" ||
    fail "kmip $mode luksDump: $(sed -n '/^Tokens:/,/^Digests:/p' "$T/dump")"
done
wrapped=$(cryptsetup token export --token-id 0 "$T/kms-wrapped.img" |
  "$PY" -c 'import json, sys; print(json.load(sys.stdin)["wrapped"])')
[ -n "$wrapped" ] || fail "no wrapped secret in the kms-wrapped token"
if grep -qF "$wrapped" "$T/dump"; then fail "luksDump shows the wrapped secret"; fi
pass "cryptsetup opens kmip disks in modes kek and kms-wrapped through pykmip-server"

kms_stop a
for mode in kek kms-wrapped; do
  token_fails "$T/$mode.img" "KMS stopped, $mode" \
    "nbdcrypt token 0 \(provider kms, kek $kms_kek\): .*(connection refused|timed out).*KMS cannot be reached" \
    --token-type nbdcrypt
  grep -q "requires additional missing resource" "$T/out" ||
    fail "KMS stopped, $mode: not reported as a missing resource (-EAGAIN): $(cat "$T/out")"
done
kms_start a "$port"
token_opens "$T/kms-wrapped.img" "KMS back"
pass "KMS stopped: refused as a missing resource (-EAGAIN) with the reason; back: opens"

nbdcrypt kek revoke --provider kms "$kms_kek"
for mode in kek kms-wrapped; do
  token_fails "$T/$mode.img" "revoked (deactivated) KEK, $mode" \
    "kek $kms_kek of provider kms is deactivated, not active; refusing to unlock" --token-type nbdcrypt
done
nbdcrypt kek revoke --compromised --provider kms "$kms_kek"
token_fails "$T/kek.img" "compromised KEK, mode kek" \
  "kek $kms_kek of provider kms is compromised, not active; refusing to unlock" --token-type nbdcrypt
nbdcrypt kek destroy --force --provider kms "$kms_kek"
token_fails "$T/kek.img" "destroyed KEK, kmip" "kek $kms_kek not found in provider kms"
pass "kmip: revoked, compromised and destroyed KEKs refused with the reason"
