#!/bin/bash
# A compromised KEK unlocks only with the documented override, on the
# native keystore and a real pykmip-server alike: the filter and check refuse
# it, naming the KEK and its state; nbdcrypt-allow-revoked=true and
# --allow-revoked unlock it with a warning naming the KEK; rekey
# --allow-revoked moves the disk away from it, after which it unlocks
# with no override.  A deactivated KEK is refused the same way and unlocks
# only with the override, with a warning.  check lists
# each KEK's state, as text and as JSON.
. "$(dirname "${BASH_SOURCE[0]}")/lib-filter.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
need nbdcopy cmp
kms_init
kms_start a
S=127.0.0.1:$(kms_port a)
kms_config "$T/config.json" alice "$S"
export NBDCRYPT_CONFIG=$T/config.json
head -c $((2 * 1024 * 1024)) /dev/urandom >"$T/plain"
len=$((2 * 1024 * 1024))

json_kek_state() { # FILE KEK: the state check --json gives KEK
  "$PY" -c 'import json,sys
d = json.load(open(sys.argv[1]))
print(",".join(k.get("state", "?") for k in d["keks"] if k["kek_id"] == sys.argv[2]))' "$1" "$2"
}

for provider in local kms; do
  img=$T/$provider.img
  kek=$(nbdcrypt format "$img" --size 24M --provider "$provider")
  serve w "$img" nbdcrypt-config="$T/config.json"
  nbdcopy "$T/plain" "$(uri w)"
  server_stop w
  nbdcrypt kek revoke --compromised --provider "$provider" "$kek"

  msg="kek $kek of provider $provider is compromised, not active; refusing to unlock"
  must_refuse 1 "$msg" "$img" -- nbdcrypt check "$img"
  grep -q "^$img: keyslot 0: provider $provider, kek $kek: compromised$" "$T/must_refuse.out" ||
    fail "$provider: check text: $(cat "$T/must_refuse.out")"
  rc=0
  nbdcrypt check --json "$img" >"$T/check.json" 2>/dev/null || rc=$?
  [ "$rc" = 1 ] || fail "$provider: check --json exited $rc"
  [ "$(json_kek_state "$T/check.json" "$kek")" = compromised ] ||
    fail "$provider: check --json: $(cat "$T/check.json")"
  pass "$provider: check refuses a compromised kek and reports its state (text, json)"

  serve r "$img" nbdcrypt-config="$T/config.json"
  if nbdcopy "$(uri r)" "$T/back" 2>"$T/nbdcopy.err"; then fail "$provider: served a compromised kek"; fi
  log_has r "cannot unlock: .*$msg" || fail "$provider: filter log lacks the refusal"
  log_has r "warning: kek $kek" && fail "$provider: refused, yet a warning"
  server_stop r
  pass "$provider: the filter refuses a compromised kek without the override"

  serve o "$img" nbdcrypt-config="$T/config.json" nbdcrypt-allow-revoked=true
  rm -f "$T/back"
  nbdcopy "$(uri o)" "$T/back"
  cmp_range "$T/back" 0 "$T/plain" 0 "$len" || fail "$provider: override: read back"
  log_has o "nbdcrypt: warning: kek $kek of provider $provider is compromised: unlocking" ||
    fail "$provider: override: no warning naming the kek"
  server_stop o
  pass "$provider: nbdcrypt-allow-revoked=true serves it, with a warning naming the kek"

  must_refuse 1 "$msg" "$img" -- nbdcrypt recrypt "$img"
  # recrypt binds the new key to the disk's KEKs: the compromised one is refused
  must_refuse 1 "kek $kek of provider $provider is compromised, not active; refusing to bind" \
    "$img" -- nbdcrypt recrypt --allow-revoked "$img"
  pass "$provider: recrypt refuses to unlock without the override, and to bind the compromised kek with it"

  nbdcrypt check --allow-revoked "$img" >"$T/out" 2>"$T/err" ||
    fail "$provider: check --allow-revoked: $(cat "$T/err")"
  grep -q "warning: kek $kek of provider $provider is compromised" "$T/err" ||
    fail "$provider: check override: no warning: $(cat "$T/err")"
  must_refuse 1 "$msg" "$img" -- nbdcrypt rekey "$img" --provider "$provider"
  new=$(nbdcrypt rekey --allow-revoked "$img" --provider "$provider" 2>"$T/err") ||
    fail "$provider: rekey away: $(cat "$T/err")"
  grep -q "warning: kek $kek of provider $provider is compromised" "$T/err" ||
    fail "$provider: rekey override: no warning"
  nbdcrypt check "$img" >"$T/out" 2>"$T/err" || fail "$provider: check after rekey: $(cat "$T/err")"
  grep -q "kek $new (keyslot" "$T/out" || fail "$provider: check after rekey: $(cat "$T/out")"
  grep -q "kek $kek" "$T/out" && fail "$provider: the compromised kek is still bound"
  grep -q warning "$T/err" && fail "$provider: warning after the rekey: $(cat "$T/err")"
  serve n "$img" nbdcrypt-config="$T/config.json"
  rm -f "$T/back"
  nbdcopy "$(uri n)" "$T/back"
  cmp_range "$T/back" 0 "$T/plain" 0 "$len" || fail "$provider: read back after rekey"
  server_stop n
  pass "$provider: rekey --allow-revoked moves the disk to a new kek; it serves without override"

  nbdcrypt kek revoke --provider "$provider" "$new"
  must_refuse 1 "kek $new of provider $provider is deactivated, not active; refusing to unlock" \
    "$img" -- nbdcrypt check "$img"
  grep -q "kek $new: deactivated$" "$T/must_refuse.out" ||
    fail "$provider: deactivated: check does not list the state: $(cat "$T/must_refuse.out")"
  nbdcrypt check --allow-revoked "$img" >"$T/out" 2>"$T/err" ||
    fail "$provider: deactivated with the override: $(cat "$T/err")"
  grep -q "warning: kek $new of provider $provider is deactivated: unlocking with it only because" "$T/err" ||
    fail "$provider: deactivated: no warning: $(cat "$T/err")"
  pass "$provider: a deactivated kek is refused, listed as deactivated by check, unlocks with the override and a warning"
done
