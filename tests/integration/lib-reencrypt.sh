# Helpers for the re-encryption tests (sourced after lib.sh).

# The nbdcrypt CLI built with a fault-injecting bdev over its devices
# (tests/support/cli_faults.c: NBDCRYPT_TEST_FAIL_WRITE_AT=N,
# NBDCRYPT_TEST_KILL_AT_WRITE=N, NBDCRYPT_TEST_COUNT_WRITES=FILE).
NBDCRYPT_FAULTS=$NBDCRYPT_TOOLS/nbdcrypt-faults
[ -x "$NBDCRYPT_FAULTS" ] || fail "$NBDCRYPT_FAULTS is missing (build the tests)"

# A 64 MiB plaintext image of random data in $T/plain.img, its SHA-256 in $PLAIN_SHA.
make_plain() {
  head -c "${1:-64M}" /dev/urandom >"$T/plain.img"
  PLAIN_SHA=$(sha256sum <"$T/plain.img" | cut -d' ' -f1)
}

sha_of() { sha256sum <"$1" | cut -d' ' -f1; }

# kek_of IMG: the KEK id of the first nbdcrypt token.
kek_of() {
  nbdcrypt info "$1" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tokens"][0]["kek_id"])'
}

# plain_sha_of IMG: decrypt a copy with nbdcrypt and hash it.
plain_sha_of() {
  cp --sparse=always "$1" "$T/verify.img"
  nbdcrypt decrypt "$T/verify.img" >/dev/null 2>&1 || fail "decrypt of a copy of $1 failed"
  sha_of "$T/verify.img"
  rm -f "$T/verify.img"
}

# requirements IMG: the requirement flags, space separated ("" when none).
requirements() {
  nbdcrypt info "$1" --json | "$PY" -c 'import json,sys; print(" ".join(json.load(sys.stdin)["requirements"]))'
}

# detach_header IMG HDR DATA: a cryptsetup detached header for IMG (segment
# offset 16 MiB rewritten to 0, checksums recomputed) and its data copied to
# DATA, so that cryptsetup 2.6 (which decrypts only detached headers) can
# decrypt it offline.
detach_header() {
  head -c 16M "$1" >"$2"
  tail -c +16777217 "$1" >"$3"
  "$PY" - "$2" <<'PYEOF'
import hashlib, json, struct, sys
path = sys.argv[1]
buf = bytearray(open(path, "rb").read())
hdr_size = struct.unpack(">Q", buf[8:16])[0]
for base in (0, hdr_size):
    area = bytes(buf[base + 4096:base + hdr_size])
    meta = json.loads(area.rstrip(b"\0").decode())
    for seg in meta["segments"].values():
        seg["offset"] = "0"
    text = json.dumps(meta, separators=(",", ":")).encode()
    buf[base + 4096:base + hdr_size] = text + b"\0" * (hdr_size - 4096 - len(text))
    buf[base + 448:base + 512] = b"\0" * 64
    csum = hashlib.sha256(bytes(buf[base:base + hdr_size])).digest()
    buf[base + 448:base + 448 + 32] = csum
open(path, "wb").write(buf)
PYEOF
}

# kill_after_first_step CMD ARGS...: run "nbdcrypt CMD ARGS --hotzone 16M
# --json", held 3 s after every step, and SIGKILL it as soon as its first
# step is done (waits at most 15 s for it), so that the disk is certainly
# left half way.  Progress events in $T/ev.
kill_after_first_step() {
  DELAY_MS=3000 paused_after_first_step "$@"
  kill -KILL "$PAUSED_PID"
  wait "$PAUSED_PID" 2>/dev/null || true
}
