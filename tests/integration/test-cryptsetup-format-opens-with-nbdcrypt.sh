#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# cryptsetup luksFormat (pbkdf2 and argon2id) + our token imported with
# cryptsetup token import + the key in a native keystore: nbdcrypt check
# unlocks it and the volume keys agree.
. "$(dirname "$0")/lib.sh"
need cryptsetup od

for pbkdf in pbkdf2 argon2id; do
  img=$T/cs-$pbkdf.img
  truncate -s 64M "$img"
  kek=$(nbdcrypt kek create --name "interop $pbkdf")
  kek_bytes "$kek" "$T/kek.bin"
  case $pbkdf in
    pbkdf2) args=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000) ;;
    argon2id) args=(--pbkdf argon2id --pbkdf-memory 32 --pbkdf-force-iterations 4 --pbkdf-parallel 1) ;;
  esac
  cryptsetup luksFormat --type luks2 -q "${args[@]}" --key-file "$T/kek.bin" "$img"

  # Before the token, nbdcrypt cannot know which KEK opens the disk.
  if out=$(nbdcrypt check "$img" 2>&1); then fail "check succeeded without a token"; fi
  grep -q "no nbdcrypt token" <<<"$out" || fail "check without token said: $out"

  printf '{"type":"nbdcrypt","keyslots":["0"],"provider":"local","kek_id":"%s","mode":"kek"}' \
    "$kek" >"$T/token.json"
  cryptsetup token import --json-file "$T/token.json" --key-slot 0 "$img"
  out=$(nbdcrypt check "$img") || fail "nbdcrypt check ($pbkdf)"
  grep -q "kek $kek" <<<"$out" || fail "check output: $out"

  theirs=$(cryptsetup_volume_key "$img" "$T/kek.bin")
  ours=$(nbdcrypt_volume_key "$img")
  [ "$theirs" = "$ours" ] || fail "volume keys differ ($pbkdf)"
  pass "$pbkdf: nbdcrypt unlocks cryptsetup's disk, volume key $ours"
  [ "$pbkdf" = pbkdf2 ] && pbkdf2_kek=$kek
done

# A KEK that is not in the keystore: a clear error naming it.
"$PY" - "$KEYSTORE" <<'PYEOF'
import json, sys
p = sys.argv[1]
store = json.load(open(p))
store["keys"].clear()
json.dump(store, open(p, "w"))
PYEOF
if out=$(nbdcrypt check "$T/cs-pbkdf2.img" 2>&1); then fail "check succeeded with the KEK gone"; fi
grep -q "$pbkdf2_kek" <<<"$out" && grep -qi "not found" <<<"$out" || fail "missing KEK error: $out"
pass "missing KEK reported: $out"
