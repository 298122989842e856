#!/usr/bin/env bash
# --json of check, format, rekey, enroll, serve, info, kek list and the
# re-encryption commands prints JSON that python's json module parses, with
# the fields and types docs/nbdcrypt.1.md (JSON OUTPUT) lists; a failure is
# JSON too ("ok": false and "error", or an "error" event) with exit 1.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib-filter.sh"
need cryptsetup nbdinfo

# jcheck FILE PYTHON-EXPRESSION...: FILE holds one JSON document (or, with
# JSONL=1, one per line) for which every expression (over "j", or "ev", the
# list of events) is true.
jcheck() {
  local f=$1
  shift
  JSONL=${JSONL:-0} "$PY" - "$f" "$@" <<'PYEOF' || fail "$(basename "$f"): $(cat "$f")"
import json, os, sys
text = open(sys.argv[1], encoding="utf-8", errors="strict").read()
if os.environ["JSONL"] == "1":
    ev = [json.loads(l) for l in text.splitlines()]
    j = ev[-1]
else:
    j = json.loads(text); ev = [j]
for e in sys.argv[2:]:
    if not eval(e):
        sys.exit("not true: " + e)
PYEOF
}
S=str I=int B=bool

nbdcrypt format "$T/disk.img" --size 32M --label L1 --json >"$T/format.json"
jcheck "$T/format.json" 'j["ok"] is True' 'j["target"] == "'"$T/disk.img"'"' \
  'isinstance(j["uuid"], str) and len(j["uuid"]) == 36' 'j["provider"] == "local"' \
  'isinstance(j["kek_id"], str)' 'j["kek_created"] is True' 'j["mode"] == "kek"' \
  'j["sector_size"] == 4096' 'j["file_created"] is True'
kek=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["kek_id"])' "$T/format.json")
grep -q "$kek" "$KEYSTORE" || fail "format --json: kek $kek not in the keystore"
truncate -s 1M "$T/small.img"
must_refuse 1 "too small" "$T/small.img" -- nbdcrypt format "$T/small.img" --json
jcheck "$T/must_refuse.out" 'j["ok"] is False' '"is too small" in j["error"]' '"kek_id" not in j'
pass "format --json: result object; failure object"

nbdcrypt check "$T/disk.img" --json >"$T/check.json"
jcheck "$T/check.json" 'j["ok"] is True' 'j["kek_id"] == "'"$kek"'"' 'j["keyslot"] == 0' \
  'j["keks"][0]["state"] == "active"' 'j["keks"][0]["mode"] == "kek"'
must_refuse 1 "no LUKS2 header" "$T/small.img" -- nbdcrypt check "$T/small.img" --json
jcheck "$T/must_refuse.out" 'j["ok"] is False' '"no LUKS2 header" in j["error"]' 'j["keks"] == []'
pass "check --json: result object; failure object"

nbdcrypt info "$T/disk.img" --json >"$T/info.json"
jcheck "$T/info.json" 'j["luks2"] is True' 'j["label"] == "L1"' 'j["target"] == "'"$T/disk.img"'"' \
  'isinstance(j["keyslots"], list)' 'j["tokens"][0]["kek_id"] == "'"$kek"'"'
must_refuse 1 "no LUKS2 header" "$T/small.img" -- nbdcrypt info "$T/small.img" --json
jcheck "$T/must_refuse.out" 'j["luks2"] is False' '"no LUKS2 header" in j["error"]'
pass "info --json: header object; failure object"

nbdcrypt rekey "$T/disk.img" --json >"$T/rekey.json" 2>/dev/null
jcheck "$T/rekey.json" 'j["ok"] is True' 'j["kek_id"] != "'"$kek"'"' 'j["kek_created"] is True' \
  'j["removed_keyslots"] == 1' 'j["provider"] == "local"'
must_refuse 1 "kek nope not found" "$T/disk.img" -- nbdcrypt rekey "$T/disk.img" --kek nope --json
jcheck "$T/must_refuse.out" 'j["ok"] is False' '"kek nope not found" in j["error"]'
pass "rekey --json: result object; failure object"

printf 'secret' >"$T/pass"
cs_disk "$T/cs.img" 32M "$T/pass"
nbdcrypt enroll "$T/cs.img" --passphrase-file "$T/pass" --json >"$T/enroll.json" 2>/dev/null
jcheck "$T/enroll.json" 'j["ok"] is True' 'j["keyslot"] == 1' 'j["kek_created"] is True' \
  'j["provider"] == "local"' 'j["mode"] == "kek"'
printf 'wrong' >"$T/wrong"
must_refuse 1 "cannot enroll" "$T/cs.img" -- nbdcrypt enroll "$T/cs.img" --passphrase-file "$T/wrong" --json
jcheck "$T/must_refuse.out" 'j["ok"] is False' '"cannot enroll" in j["error"]'
pass "enroll --json: result object; failure object"

nbdcrypt kek list --json >"$T/list.json"
jcheck "$T/list.json" 'isinstance(j, list) and len(j) == 3' \
  'all(set(k) >= {"id", "name", "created", "state", "provider"} for k in j)'
pass "kek list --json: an array of KEK objects"

nbdcrypt serve "$T/disk.img" --socket "$T/s.sock" --json >"$T/ready.json"
JSONL=1 jcheck "$T/ready.json" 'len(ev) == 1' 'j["event"] == "ready"' \
  'j["uri"] == "nbd+unix:///?socket='"$T/s.sock"'"' 'j["socket"] == "'"$T/s.sock"'"' \
  'isinstance(j["pid"], int)' 'j["foreground"] is False'
pid=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$T/ready.json")
on_exit "kill $pid 2>/dev/null"
[ "$(cat /proc/"$pid"/comm)" = nbdkit ] || fail "ready pid $pid is not nbdkit"
nbdinfo --size "nbd+unix:///?socket=$T/s.sock" >/dev/null || fail "the ready URI does not serve"
stop_pid "$pid"
must_refuse 1 "cannot serve" "$T/small.img" -- nbdcrypt serve "$T/small.img" --socket "$T/e.sock" --json
JSONL=1 jcheck "$T/must_refuse.out" 'len(ev) == 1' 'j["event"] == "error"' \
  '"first connection failed" in j["message"]' 'j["socket"] == "'"$T/e.sock"'"'
nbdcrypt serve "$T/disk.img" --dry-run --json >"$T/dry.json"
JSONL=1 jcheck "$T/dry.json" 'j["event"] == "dry-run"' 'j["command"][0] == (os.environ.get("NBDKIT") or "nbdkit")' \
  '"file='"$T/disk.img"'" in j["command"]'
pass "serve --json: ready event (uri, socket, nbdkit's pid), error event, dry-run"

"$NBDCRYPT" serve "$T/disk.img" --socket "$T/f.sock" --foreground --json >"$T/fg.json" 2>/dev/null &
fg=$!
on_exit "kill $fg 2>/dev/null"
for ((i = 0; i < 150; i++)); do grep -q '"ready"' "$T/fg.json" && break; sleep 0.1; done
kill "$fg"
wait "$fg" || fail "serve --foreground stopped with status $?"
JSONL=1 jcheck "$T/fg.json" 'len(ev) == 2' 'ev[0]["event"] == "ready"' 'ev[0]["foreground"] is True' \
  'ev[1]["event"] == "stopped"' 'ev[1]["pid"] == ev[0]["pid"]'
pass "serve --foreground --json: ready, then stopped"

head -c 16M /dev/urandom >"$T/plain.img"
nbdcrypt encrypt "$T/plain.img" --json >"$T/enc.json"
JSONL=1 jcheck "$T/enc.json" 'ev[-1]["event"] == "done"' 'isinstance(ev[-1]["elapsed_s"], float)' \
  'all(e["operation"] == "encrypt" and e["target"] == "'"$T/plain.img"'" for e in ev)' \
  'any(e["event"] == "progress" and e["done"] == e["total"] == 16777216 and e["percent"] == 100.0 for e in ev)'
must_refuse 1 "already encrypted" "$T/plain.img" -- nbdcrypt encrypt "$T/plain.img" --json
JSONL=1 jcheck "$T/must_refuse.out" 'j["event"] == "error"' '"already encrypted" in j["message"]'
pass "encrypt --json: progress and done events; an error event"
