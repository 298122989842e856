#!/usr/bin/env bash
# check and info say what serving will do: a header whose data segment starts
# beyond the end of its device (offset 2^50), or whose fixed-size segment is
# longer than the device (attached, and detached on a short data device), is
# reported by check (exit 1) and info (text and --json "problems") with the
# reason the filter gives, which nbdkit logs when it refuses the export.
. "$(dirname "$0")/lib-filter.sh"
need nbdinfo

MiB=$((1024 * 1024))

# set_segment IMG FIELD VALUE: set FIELD of the data segment in both header
# copies of IMG (checksums recomputed), as a corrupt or hostile header would.
set_segment() {
  "$PY" - "$@" <<'PYEOF'
import hashlib, json, struct, sys
path, field, value = sys.argv[1], sys.argv[2], sys.argv[3]
with open(path, "r+b") as f:
    buf = bytearray(f.read(2 * 4194304))
    hdr_size = struct.unpack(">Q", buf[8:16])[0]
    for base in (0, hdr_size):
        meta = json.loads(bytes(buf[base + 4096:base + hdr_size]).rstrip(b"\0").decode())
        for seg in meta["segments"].values():
            seg[field] = value
        text = json.dumps(meta, separators=(",", ":")).encode()
        buf[base + 4096:base + hdr_size] = text + b"\0" * (hdr_size - 4096 - len(text))
        buf[base + 448:base + 512] = b"\0" * 64
        buf[base + 448:base + 480] = hashlib.sha256(bytes(buf[base:base + hdr_size])).digest()
        f.seek(base)
        f.write(buf[base:base + hdr_size])
PYEOF
}

# expect_unservable NAME REASON DATA [--header HDR]: check exits 1 with
# REASON, info shows it (text and JSON), and the filter refuses the export
# with the same REASON in nbdkit's log.
expect_unservable() {
  local name=$1 reason=$2 data=$3
  shift 3
  local hargs=("$@") fargs=()
  [ $# = 0 ] || fargs=(nbdcrypt-header="$2")
  must_refuse 1 "cannot be served: $reason\$" "$data" -- nbdcrypt check "$data" "${hargs[@]}"
  local rc=0
  nbdcrypt check "$data" "${hargs[@]}" --json >"$T/$name.check.json" 2>/dev/null || rc=$?
  [ "$rc" = 1 ] || fail "$name: check --json exited $rc"
  "$PY" - "$T/$name.check.json" "$reason" <<'PYEOF' || fail "$name: check --json: $(cat "$T/$name.check.json")"
import json, re, sys
o = json.load(open(sys.argv[1]))
assert o["ok"] is False and re.fullmatch(sys.argv[2], o["error"]), o
PYEOF
  nbdcrypt info "$data" "${hargs[@]}" >"$T/$name.info" || fail "$name: info failed"
  grep -qE "^  problem: +$reason; it cannot be served\$" "$T/$name.info" ||
    fail "$name: info does not show the problem: $(cat "$T/$name.info")"
  nbdcrypt info "$data" "${hargs[@]}" --json >"$T/$name.json"
  "$PY" - "$T/$name.json" "$reason" <<'PYEOF' || fail "$name: info --json: $(cat "$T/$name.json")"
import json, re, sys
o = json.load(open(sys.argv[1]))
assert len(o["problems"]) == 1 and re.fullmatch(sys.argv[2], o["problems"][0]), o["problems"]
assert o["data_size"] == 0, o
PYEOF
  serve "$name" "$data" "${fargs[@]}"
  if nbdinfo --size "$(uri "$name")" >/dev/null 2>&1; then
    fail "$name: the filter served the export"
  fi
  log_has "$name" "nbdcrypt: export '': $reason\$" ||
    fail "$name: nbdkit's log lacks the reason: $(grep -i error "$T/$name.log")"
  server_stop "$name"
}

img=$T/far.img
new_disk "$img" 32M >/dev/null
set_segment "$img" offset $((1 << 50))
uuid=$(nbdcrypt info "$img" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
expect_unservable far "disk $uuid is truncated: $((32 * MiB)) bytes, but its data starts at $((1 << 50))" "$img"
pass "a segment at offset 2^50: check exits 1, info and nbdkit give the same reason"

img=$T/long.img
new_disk "$img" 32M >/dev/null
set_segment "$img" size $((1 << 30))
uuid=$(nbdcrypt info "$img" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
expect_unservable long "disk $uuid is truncated: its data segment needs $((1 << 30)) bytes at offset $((16 * MiB)) but the device has $((32 * MiB))" "$img"
pass "a fixed-size segment longer than the device: check exits 1, info and nbdkit give the same reason"

# Detached: the fixed size counts against the data device.
data=$T/short.data
hdr=$T/short.hdr
head -c $((8 * MiB)) /dev/urandom >"$data"
nbdcrypt encrypt "$data" --header "$hdr" >/dev/null 2>&1 || fail "encrypt --header failed"
set_segment "$hdr" size $((16 * MiB))
uuid=$(nbdcrypt info "$hdr" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
expect_unservable short "disk $uuid is truncated: its data segment needs $((16 * MiB)) bytes at offset 0 but the device has $((8 * MiB))" "$data" --header "$hdr"
pass "a detached header whose fixed size exceeds its data device: check --header exits 1, info --header and nbdkit agree"
