#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# A keystore that does not exist is named as such: check of a disk whose KEK
# was made with another keystore says the keystore does not exist (exit 1);
# kek list says the provider has no KEKs and why (exit 0, an empty JSON list
# with --json).  --config naming a directory says it is one (exit 1).
. "$(dirname "$0")/lib.sh"

kek=$(nbdcrypt format "$T/disk.img" --size 32M)
mv "$KEYSTORE" "$T/elsewhere.json"
must_refuse 1 "kek $kek not found: keystore $KEYSTORE \(provider local\) does not exist; is this the configuration the KEK was created with\?" \
  "$T/disk.img" -- nbdcrypt check "$T/disk.img"
pass "check names the missing keystore"

nbdcrypt kek list >"$T/list" 2>"$T/list.err" || fail "kek list on a missing keystore exited $?"
[ ! -s "$T/list" ] || fail "kek list printed keys: $(cat "$T/list")"
grep -qx "nbdcrypt: provider local has no KEKs: keystore $KEYSTORE does not exist (yet): no KEK was created with it" \
  "$T/list.err" || fail "kek list said: $(cat "$T/list.err")"
nbdcrypt kek list --json 2>/dev/null | "$PY" -c 'import json,sys; assert json.load(sys.stdin) == []' ||
  fail "kek list --json on a missing keystore is not []"
[ ! -e "$KEYSTORE" ] || fail "kek list created the keystore"
pass "kek list says the keystore does not exist (exit 0, no keys)"

mv "$T/elsewhere.json" "$KEYSTORE"
nbdcrypt kek list --prefix nomatch >/dev/null 2>"$T/list.err" || fail "kek list --prefix exited $?"
grep -qx "nbdcrypt: provider local has no KEKs whose label starts with nomatch" "$T/list.err" ||
  fail "kek list --prefix said: $(cat "$T/list.err")"
pass "kek list with no match says so"

mkdir -m 700 "$T/confdir"
must_refuse 1 "^nbdcrypt: configuration file $T/confdir is a directory; give the JSON file in it \(e.g. $T/confdir/config.json\)$" \
  - -- nbdcrypt --config "$T/confdir" kek list
pass "--config DIR says it is a directory"
