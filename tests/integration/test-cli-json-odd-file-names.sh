#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# JSON output is valid UTF-8 for a file name that is not: a name with the
# byte 0xff, an overlong "/" (0xc0 0xaf), a UTF-8 surrogate (0xed 0xa0 0x80),
# a newline, a tab and a valid "é".  Each byte outside a well-formed UTF-8
# sequence becomes U+FFFD, control characters are JSON escapes, and valid
# characters stay: format, check, info, rekey, serve --dry-run and the
# re-encryption events (strict UTF-8 decoding, then python's json).
. "$(dirname "$0")/lib.sh"

name=$(printf 'odd\xff-\xc0\xaf-\xed\xa0\x80-\n-\t-\xc3\xa9.img')
img=$T/$name
want="$T/odd\\ufffd-\\ufffd\\ufffd-\\ufffd\\ufffd\\ufffd-\\n-\\t-\\u00e9.img"

# jtarget FILE: every JSON line or document in FILE decodes as strict UTF-8,
# parses, and its "target" is the cleaned name.
jtarget() {
  "$PY" - "$1" "$want" <<'PYEOF' || fail "$(basename "$1"): $(od -c "$1" | head -20)"
import json, sys
raw = open(sys.argv[1], "rb").read()
text = raw.decode("utf-8", errors="strict")
want = json.loads('"' + sys.argv[2] + '"')
docs = [json.loads(text)] if text.lstrip().startswith("{\n") else [json.loads(l) for l in text.splitlines()]
assert docs, "no JSON"
for d in docs:
    assert d["target"] == want, (d["target"], want)
assert b"\n-\t-" not in raw, "a raw newline or tab inside a string"
PYEOF
}

nbdcrypt format "$img" --size 32M --json >"$T/format.json"
jtarget "$T/format.json"
nbdcrypt check "$img" --json >"$T/check.json"
jtarget "$T/check.json"
nbdcrypt info "$img" --json >"$T/info.json"
jtarget "$T/info.json"
nbdcrypt rekey "$img" --json >"$T/rekey.json" 2>/dev/null
jtarget "$T/rekey.json"
nbdcrypt serve "$img" --dry-run --json >"$T/serve.json"
jtarget "$T/serve.json"
"$PY" - "$T/serve.json" <<'PYEOF' || fail "serve --dry-run: the file= argument is not cleaned: $(cat "$T/serve.json")"
import json, sys
cmd = json.loads(open(sys.argv[1], encoding="utf-8").read())["command"]
assert any(a.startswith("file=") and "\ufffd" in a and "\u00e9" in a for a in cmd), cmd
PYEOF
nbdcrypt decrypt "$img" --json >"$T/decrypt.json" </dev/null
jtarget "$T/decrypt.json"
pass "JSON of format, check, info, rekey, serve, decrypt: valid UTF-8, name cleaned (U+FFFD per bad byte)"

# A label (any bytes in the binary header) is cleaned the same way.
"$PY" - "$T/lbl.img" <<'PYEOF'
import sys
open(sys.argv[1], "wb").truncate(32 << 20)
PYEOF
# (a 4-byte character stays; one above U+10FFFF and a cut sequence do not)
nbdcrypt format "$T/lbl.img" --label "$(printf 'l\xfe\x01\xf0\x9f\x98\x80\xf4\x90\x80\x80\xe2\x82')" >/dev/null
nbdcrypt info "$T/lbl.img" --json >"$T/lbl.json"
"$PY" - "$T/lbl.json" <<'PYEOF' || fail "label: $(cat "$T/lbl.json")"
import json, sys
j = json.loads(open(sys.argv[1], "rb").read().decode("utf-8", errors="strict"))
assert j["label"] == "l\ufffd\u0001\U0001f600" + "\ufffd" * 6, repr(j["label"])
PYEOF
pass "a label with invalid UTF-8 and a control byte: cleaned and escaped"
