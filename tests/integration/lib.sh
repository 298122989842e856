# Shared helpers for nbdcrypt's shell integration tests (sourced).
# Each test gets its own temporary directory, removed on exit, and a native
# keystore inside it, so tests never touch the user's keys.
set -euo pipefail

: "${NBDCRYPT:?run through ctest (NBDCRYPT is the path of the nbdcrypt binary)}"
: "${NBDCRYPT_TOOLS:=$(dirname "$NBDCRYPT")/tests}"

# Debian's python3 (python3-libnbd, python3-cryptography), not another one on PATH.
PY=/usr/bin/python3

T=$(mktemp -d "${TMPDIR:-/tmp}/nbdcrypt-test.XXXXXX")
chmod 700 "$T"
_cleanup_hooks=()
_cleanup_failed=
_cleanup() {
  local rc=$? h
  for h in "${_cleanup_hooks[@]}"; do eval "$h" || true; done
  if [ -n "$_cleanup_failed" ] && { [ $rc = 0 ] || [ $rc = 77 ]; }; then rc=1; fi
  rm -rf "$T"
  exit $rc
}
trap _cleanup EXIT
on_exit() { _cleanup_hooks+=("$1"); }
# cleanup_fail MESSAGE: from an on_exit hook, report MESSAGE and fail the test.
cleanup_fail() {
  echo "FAIL: $*" >&2
  _cleanup_failed=1
}

# sanitizer_check (an on_exit hook, after the test's servers have exited): in
# the ASan build, any sanitizer report of a process the test ran with the
# runtime preloaded (nbdkit with our filter, cryptsetup with our token plugin)
# fails the test: an error, or a leak found at exit.  ASan and LSan write to
# $NBDCRYPT_TEST_SANITIZER_LOG.PID; UBSan, beside ASan, there too or, without
# a log path, to stderr, i.e. a server's log.
sanitizer_check() {
  local f re='^==[0-9]+==ERROR: |: runtime error: '
  for f in "$NBDCRYPT_TEST_SANITIZER_LOG".* "$T"/*.log; do
    [ -e "$f" ] && grep -Eq -- "$re" "$f" || continue
    sed -En "/$re/,\$p" "$f" | grep -v '^nbdkit: debug: ' | sed 's/^/  | /' >&2
    cleanup_fail "sanitizer report in $(basename "$f")"
  done
}

fail() { echo "FAIL: $*" >&2; exit 1; }

# stop_pid PID: SIGTERM a process this test started, wait up to 10 s for it to
# exit, then SIGKILL it.
stop_pid() {
  local i
  kill "$1" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$1" 2>/dev/null || true
}
pass() { echo "ok: $*"; }
need() {
  local t
  for t in "$@"; do command -v "$t" >/dev/null || fail "required tool '$t' is not installed"; done
}

# A configuration with one native provider "local" whose keystore lives in $T.
CFG=$T/config.json
KEYSTORE=$T/keys/keystore.json
cat >"$CFG" <<JSON
{"providers": {"local": {"type": "native", "keystore": "$KEYSTORE"}},
 "default_provider": "local"}
JSON
export NBDCRYPT_CONFIG=$CFG

nbdcrypt() { "$NBDCRYPT" "$@"; }

# kek_bytes ID FILE: write the raw 32 bytes of native KEK ID to FILE (0600),
# reading the keystore format directly (an operator's emergency path).
kek_bytes() {
  (umask 077 && "$PY" - "$KEYSTORE" "$1" "$2" <<'PYEOF'
import base64, json, sys
store = json.load(open(sys.argv[1]))
key = base64.b64decode(store["keys"][sys.argv[2]]["key"], validate=True)
assert len(key) == 32, len(key)
open(sys.argv[3], "wb").write(key)
PYEOF
  )
}

# cs_disk IMAGE SIZE PASSFILE [luksFormat args...]: a disk made by cryptsetup
# with a fast pbkdf2 passphrase keyslot.
cs_disk() {
  local img=$1 size=$2 pass=$3
  shift 3
  truncate -s "$size" "$img"
  cryptsetup luksFormat --type luks2 -q --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
    --key-file "$pass" "$@" "$img"
}

# cryptsetup_volume_key IMG KEYFILE [cryptsetup args...]: the volume key as hex.
cryptsetup_volume_key() {
  local img=$1 key=$2
  shift 2
  cryptsetup luksDump --dump-volume-key --key-file "$key" -q "$@" "$img" |
    sed -n '/MK dump:/,$p' | sed 's/MK dump://' | tr -d ' \t\n'
}

# nbdcrypt_volume_key IMG: the volume key nbdcrypt unlocks, as hex.
nbdcrypt_volume_key() {
  rm -f "$T/vk.bin"
  nbdcrypt info "$1" --dump-volume-key "$T/vk.bin" >/dev/null
  od -An -v -tx1 "$T/vk.bin" | tr -d ' \n'
}

# sha_file FILE: the SHA-256 of FILE, hex.
sha_file() { sha256sum <"$1" | cut -d' ' -f1; }

# must_refuse RC REGEX IMAGE -- CMD...: CMD must exit with status RC, say
# something matching the extended REGEX on stderr, and leave IMAGE (a file;
# "-" for none) byte for byte as it was.
must_refuse() {
  local want=$1 re=$2 img=$3 before= rc=0
  shift 3
  [ "$1" = -- ] || fail "must_refuse: usage: RC REGEX IMAGE -- CMD..."
  shift
  [ "$img" = - ] || before=$(sha_file "$img")
  "$@" >"$T/must_refuse.out" 2>"$T/must_refuse.err" || rc=$?
  if [ "$rc" != "$want" ]; then
    sed 's/^/  | /' "$T/must_refuse.err" >&2
    fail "'$*' exited $rc, expected $want"
  fi
  if ! grep -Eq -- "$re" "$T/must_refuse.err"; then
    sed 's/^/  | /' "$T/must_refuse.err" >&2
    fail "'$*': no message matching /$re/ on stderr"
  fi
  if [ "$img" != - ] && [ "$(sha_file "$img")" != "$before" ]; then
    fail "'$*' was refused but changed $img"
  fi
}

# cmp_range A OFF_A B OFF_B LEN: LEN bytes of file A at OFF_A equal LEN bytes
# of file B at OFF_B; both files must hold the whole range (no compare of a
# shorter stream can pass).
cmp_range() {
  local a=$1 oa=$2 b=$3 ob=$4 len=$5 sa sb
  sa=$(stat -c %s "$a") sb=$(stat -c %s "$b")
  [ $((oa + len)) -le "$sa" ] || fail "cmp_range: $a has $sa bytes, range ends at $((oa + len))"
  [ $((ob + len)) -le "$sb" ] || fail "cmp_range: $b has $sb bytes, range ends at $((ob + len))"
  cmp -s <(tail -c +$((oa + 1)) "$a" | head -c "$len") <(tail -c +$((ob + 1)) "$b" | head -c "$len")
}

# paused_after_first_step CMD ARGS...: start "nbdcrypt CMD ARGS --hotzone 16M
# --json" held DELAY_MS (default 20000) ms after every step, and return once
# its first step is done (at most 15 s), the operation then holding its disk.
# Its pid in PAUSED_PID (killed at exit), progress events in $T/ev, stderr in
# $T/paused.err.
paused_after_first_step() {
  local i
  rm -f "$T/ev" # else the loop below may read an earlier run's events
  NBDCRYPT_TEST_HOTZONE_DELAY_MS=${DELAY_MS:-20000} "$NBDCRYPT" "$@" --hotzone 16M --json \
    >"$T/ev" 2>"$T/paused.err" &
  PAUSED_PID=$!
  on_exit "kill -KILL $PAUSED_PID 2>/dev/null"
  for ((i = 0; i < 300; i++)); do
    grep -q '"done":[1-9]' "$T/ev" && return 0
    kill -0 "$PAUSED_PID" 2>/dev/null || fail "nbdcrypt $1 ended early: $(cat "$T/paused.err")"
    sleep 0.05
  done
  fail "nbdcrypt $1 made no step within 15 s"
}
