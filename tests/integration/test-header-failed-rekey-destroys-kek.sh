#!/usr/bin/env bash
# A rekey that fails after creating its KEK destroys that KEK again: no
# orphaned keys in the keystore or the KMS, the error says so, the disk is
# unchanged and still opens with its old KEK.  Failures: a native provider
# asked for --kms-wrapped (it cannot wrap), and a read-only NBD export (the
# header write fails), with the native provider and with a kmip one.
. "$(dirname "${BASH_SOURCE[0]}")/lib-filter.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
kms_init
kms_start a
kms_config "$T/kms.json" alice "127.0.0.1:$(kms_port a)"
export NBDCRYPT_CONFIG=$T/kms.json

img=$T/disk.img
old=$(nbdcrypt format "$img" --size 32M --provider local)

kek_ids() { nbdcrypt kek list --provider "$1" | awk '{print $1}' | sort | tr '\n' ' '; }
destroyed_re='kek ([0-9a-f-]+) created for this rekey was destroyed'
created_kek() { sed -En "s/.*$destroyed_re.*/\\1/p" "$T/must_refuse.err"; }

before=$(kek_ids local)
must_refuse 1 "cannot wrap.*; $destroyed_re" "$img" -- nbdcrypt rekey "$img" --provider local --kms-wrapped
[ -n "$(created_kek)" ] || fail "no kek id in: $(cat "$T/must_refuse.err")"
[ "$(kek_ids local)" = "$before" ] || fail "keystore after the failed rekey: $(kek_ids local), was $before"
pass "native --kms-wrapped: kek $(created_kek) destroyed, keystore as before"

# A read-only export: the new keyslot cannot be written.
server_start ro -r file file="$img"
must_refuse 1 "$destroyed_re" "$img" -- nbdcrypt rekey "$(uri ro)" --provider local
[ "$(kek_ids local)" = "$before" ] || fail "keystore after the read-only rekey: $(kek_ids local)"
pass "read-only export, native: kek $(created_kek) destroyed"

kms_before=$(kek_ids kms)
must_refuse 1 "$destroyed_re" "$img" -- nbdcrypt rekey "$(uri ro)" --provider kms --kms-wrapped
gone=$(created_kek)
[ -n "$gone" ] || fail "no kek id in: $(cat "$T/must_refuse.err")"
[ "$(kek_ids kms)" = "$kms_before" ] || fail "KMS keys after the failed rekey: $(kek_ids kms), was $kms_before"
pass "read-only export, kmip --kms-wrapped: kek $gone revoked and destroyed on the KMS"
server_stop ro

out=$(nbdcrypt check "$img") || fail "check after the failed rekeys"
grep -q "kek $old" <<<"$out" || fail "the disk no longer opens with its kek $old: $out"
pass "the disk still opens with kek $old"
