#!/bin/bash
# A disk is never bound to a KEK that is not active, on the native keystore
# and on a real pykmip-server alike: format, rekey and enroll refuse a
# revoked (deactivated) and a compromised KEK (recrypt too) with the state in the message,
# and leave the image as it was; an active KEK still binds.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
need cryptsetup
kms_init
kms_start a
S=127.0.0.1:$(kms_port a)
kms_config "$T/config.json" alice "$S"
export NBDCRYPT_CONFIG=$T/config.json
printf 'correct horse battery staple' >"$T/pass"

for provider in local kms; do
  retired=$(nbdcrypt kek create --provider "$provider" --name "retired-$provider")
  leaked=$(nbdcrypt kek create --provider "$provider" --name "leaked-$provider")
  nbdcrypt kek revoke --provider "$provider" "$retired"
  nbdcrypt kek revoke --compromised --provider "$provider" "$leaked"
  nbdcrypt kek list --provider "$provider" >"$T/list"
  grep -Eq "^$retired .* deactivated " "$T/list" || fail "$provider: list: $(cat "$T/list")"
  grep -Eq "^$leaked .* compromised " "$T/list" || fail "$provider: list: $(cat "$T/list")"

  # the images the refused commands must leave alone
  truncate -s 24M "$T/blank.img"
  nbdcrypt format "$T/disk.img" --size 24M --provider "$provider" >"$T/active-kek"
  cs_disk "$T/cs.img" 24M "$T/pass"

  for kek in "$retired" "$leaked"; do
    [ "$kek" = "$retired" ] && state=deactivated || state=compromised
    msg="kek $kek of provider $provider is $state, not active; refusing to bind a disk to it"
    must_refuse 1 "$msg" "$T/blank.img" -- \
      nbdcrypt format "$T/blank.img" --provider "$provider" --kek "$kek"
    must_refuse 1 "$msg" "$T/disk.img" -- \
      nbdcrypt rekey "$T/disk.img" --provider "$provider" --kek "$kek"
    must_refuse 1 "$msg" "$T/cs.img" -- \
      nbdcrypt enroll "$T/cs.img" --passphrase-file "$T/pass" --provider "$provider" --kek "$kek"
    must_refuse 1 "$msg" "$T/disk.img" -- \
      nbdcrypt recrypt "$T/disk.img" --provider "$provider" --kek "$kek"
    pass "$provider: format, rekey, enroll and recrypt refuse a $state kek, images unchanged"
  done
  if [ "$provider" = kms ]; then
    msg="kek $retired of provider kms is deactivated, not active"
    must_refuse 1 "$msg" "$T/disk.img" -- \
      nbdcrypt rekey "$T/disk.img" --provider kms --kek "$retired" --kms-wrapped
    pass "kms: rekey --kms-wrapped refuses a deactivated kek too"
  fi

  # the same commands with an active KEK work (the refusals are about the state)
  fresh=$(nbdcrypt kek create --provider "$provider")
  nbdcrypt rekey "$T/disk.img" --provider "$provider" --kek "$fresh" >/dev/null 2>&1 ||
    fail "$provider: rekey to an active kek"
  nbdcrypt check "$T/disk.img" | grep -q "kek $fresh (keyslot" || fail "$provider: check after rekey"
  rm -f "$T/blank.img" "$T/disk.img" "$T/cs.img"
  pass "$provider: an active kek still binds"
done
