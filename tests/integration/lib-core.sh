# tests/integration/lib-core.sh: look for key material in a gcore of a
# process.  gcore (gdb, as root through ptrace: nbdkit and our CLI make
# themselves non-dumpable, which stops the kernel's core files, not a
# debugger) writes every mapping and every thread's register file
# (NT_X86_XSTATE): a key left in a vector register is found too.
need gcore xxd
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

# core_search_works: the search finds a quarter of a key planted at an odd offset.
core_search_works() {
  local key
  key=$(head -c 64 /dev/urandom | od -An -v -tx1 | tr -d ' \n')
  { head -c 1000001 /dev/urandom; printf '%s' "${key:32:32}" | xxd -r -p; head -c 999 /dev/urandom; } >"$T/planted"
  if (core_has_no_key planted "$T/planted" "$key") 2>/dev/null; then
    fail "the search does not find a planted quarter of a key"
  fi
  rm -f "$T/planted"
}

# dump NAME PID: gcore of PID into $T/NAME.core (its size must be plausible).
dump() {
  gcore -o "$T/$1" "$2" >"$T/$1.gcore.log" 2>&1 || { cat "$T/$1.gcore.log" >&2; fail "gcore of $1 failed"; }
  mv "$T/$1.$2" "$T/$1.core"
  [ "$(stat -c %s "$T/$1.core")" -gt 1000000 ] || fail "core of $1 is implausibly small"
}

# recrypt_paused_core NAME IMAGE [RECRYPT ARGS...]: start "nbdcrypt recrypt"
# on IMAGE held 4 s after each 16 MiB step, gcore it into $T/NAME.core after
# its first step, then let it finish (it must succeed).
recrypt_paused_core() {
  local name=$1 img=$2 pid i
  shift 2
  NBDCRYPT_TEST_HOTZONE_DELAY_MS=4000 "$NBDCRYPT" recrypt "$img" --hotzone 16M --json "$@" \
    >"$T/$name.ev" 2>"$T/$name.err" &
  pid=$!
  for ((i = 0; i < 300; i++)); do
    grep -q '"done":[1-9]' "$T/$name.ev" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  grep -q '"done":[1-9]' "$T/$name.ev" || fail "recrypt made no step: $(cat "$T/$name.err")"
  dump "$name" "$pid"
  wait "$pid" || fail "recrypt failed: $(cat "$T/$name.err")"
}
