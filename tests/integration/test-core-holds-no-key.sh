#!/usr/bin/env bash
# No key in a core dump: gcore (gdb, as root through ptrace: nbdkit and our
# CLI make themselves non-dumpable, which stops the kernel's core files, not a
# debugger) of a serving nbdkit with the filter after I/O (native provider),
# and of the CLI paused in the middle of a recrypt, holds none of the 16-byte
# quarters of the volume key(s) or of the KEK.  The core includes every
# thread's register file (NT_X86_XSTATE): a key left in a vector register
# fails the test too.  Both backends (CI runs it in the OpenSSL build too).
# The kmip provider and kms-wrapped variants are not here yet.
. "$(dirname "$0")/lib-filter.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need gcore nbdcopy cmp
[ "$(id -u)" = 0 ] || { echo "skip: gcore of a non-dumpable process needs root"; exit 77; }
# The ASan build's processes map terabytes of shadow memory.
[ -z "${NBDCRYPT_TEST_PRELOAD:-}" ] || { echo "skip: not in a sanitizer build"; exit 77; }

# core_has_no_key WHAT CORE HEX...: fail if a 16-byte quarter of any key is in CORE.
core_has_no_key() {
  local what=$1 core=$2
  shift 2
  "$PY" - "$core" "$@" <<'PYEOF' || fail "$what: key material in its core"
import mmap, sys
with open(sys.argv[1], "rb") as f:
    core = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
found = 0
for n, hexkey in enumerate(sys.argv[2:]):
    key = bytes.fromhex(hexkey)
    assert len(key) in (32, 64), len(key)
    for q in range(0, len(key), 16):
        part = key[q:q + 16]
        at = core.find(part)
        if at >= 0:
            found += 1
            print("key %d bytes %d..%d at core offset %d" % (n, q, q + 15, at), file=sys.stderr)
sys.exit(1 if found else 0)
PYEOF
}

# dump NAME PID: gcore of PID into $T/NAME.core (its size must be plausible).
dump() {
  gcore -o "$T/$1" "$2" >"$T/$1.gcore.log" 2>&1 || { cat "$T/$1.gcore.log" >&2; fail "gcore of $1 failed"; }
  mv "$T/$1.$2" "$T/$1.core"
  [ "$(stat -c %s "$T/$1.core")" -gt 1000000 ] || fail "core of $1 is implausibly small"
}

# 1. A serving nbdkit after writes and reads through the filter.
img=$T/disk.img
new_disk "$img" 48M >/dev/null
kek=$(kek_of "$img")
kek_bytes "$kek" "$T/kek.bin"
kek_hex=$(od -An -v -tx1 "$T/kek.bin" | tr -d ' \n')
dek=$(nbdcrypt_volume_key "$img")
[ ${#dek} = 128 ] && [ ${#kek_hex} = 64 ] || fail "key lengths: dek ${#dek}, kek ${#kek_hex} hex digits"
head -c 8M /dev/urandom >"$T/plain"
server_start s1 --threads=4 --filter="$NBDCRYPT_FILTER" file file="$img" nbdcrypt-config="$CFG"
nbdcopy "$T/plain" "$(uri s1)"
nbdcopy "$(uri s1)" "$T/back"
cmp -n $((8 * 1024 * 1024)) "$T/plain" "$T/back" || fail "read back differs"
dump nbdkit "$(cat "$T/s1.pid")"
# The search finds a quarter of a key planted at an odd offset.
{ head -c 1000001 /dev/urandom; printf '%s' "${dek:32:32}" | xxd -r -p; head -c 999 /dev/urandom; } >"$T/planted"
if (core_has_no_key planted "$T/planted" "$dek") 2>/dev/null; then
  fail "the search does not find a planted quarter of a key"
fi
core_has_no_key "serving nbdkit" "$T/nbdkit.core" "$dek" "$kek_hex"
pass "gcore of a serving nbdkit after I/O: no quarter of the volume key or of the KEK"
server_stop s1
rm -f "$T/nbdkit.core"

# 2. The CLI in the middle of a recrypt (held after each 16 MiB step).
NBDCRYPT_TEST_HOTZONE_DELAY_MS=4000 "$NBDCRYPT" recrypt "$img" --hotzone 16M --json >"$T/ev" 2>"$T/recrypt.err" &
pid=$!
for ((i = 0; i < 300; i++)); do
  grep -q '"done":[1-9]' "$T/ev" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
grep -q '"done":[1-9]' "$T/ev" || fail "recrypt made no step: $(cat "$T/recrypt.err")"
dump recrypt "$pid"
wait "$pid" || fail "recrypt failed: $(cat "$T/recrypt.err")"
new_dek=$(nbdcrypt_volume_key "$img")
[ "$new_dek" != "$dek" ] || fail "recrypt did not change the volume key"
core_has_no_key "recrypt" "$T/recrypt.core" "$dek" "$new_dek" "$kek_hex"
pass "gcore of the CLI mid-recrypt: no quarter of the old or new volume key or of the KEK"
