#!/usr/bin/env bash
# nbdcrypt@NAME.service, run without systemd: the installed unit's ExecStart
# and ExecStartPost, with the environment of its Environment= and of
# /etc/nbdcrypt/NAME.conf (here in $T), serve one disk.  ExecStartPost returns
# 0 only once the disk serves (a client reads it at once, no retry), on the
# default socket in the runtime directory and on TCP with PORT=; the data
# round-trips; SIGTERM stops the server with status 0 (no restart).  A disk
# that does not unlock makes ExecStart exit 1 (Restart=on-failure restarts
# it) and ExecStartPost exit 1: `systemctl start` would fail.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-install.sh"
need cmake nbdkit nbdinfo nbdcopy cmp
: "${NBDCRYPT_FILTER:?run through ctest}"
export NBDCRYPT_FILTER

install_destdir
grep -q '^Restart=on-failure$' "$UNITDIR/nbdcrypt@.service" || fail "nbdcrypt@.service: no Restart=on-failure"
mkdir -p "$T/etc/nbdcrypt"
nbdcrypt format "$T/vm1.img" --size 48M >/dev/null
head -c $((8 * 1024 * 1024)) /dev/urandom >"$T/data"

# serve_instance NAME URI: start, wait ready, round-trip 8 MiB, stop.
serve_instance() {
  local name=$1 uri=$2 t0 t1
  unit_start nbdcrypt@.service "$name"
  t0=$(date +%s)
  unit_ready nbdcrypt@.service "$name" || {
    sed 's/^/  | /' "$T/$name.ready" "$T/$name.log" >&2
    fail "$name: ExecStartPost failed"
  }
  t1=$(date +%s)
  [ $((t1 - t0)) -lt 60 ] || fail "$name: ExecStartPost took $((t1 - t0)) s"
  grep -qxF "nbdcrypt-service: serving $T/vm1.img (33554432 bytes) on $uri" "$T/$name.ready" ||
    fail "$name: ExecStartPost says: $(cat "$T/$name.ready")"
  # Ready means usable now: one attempt, no retry.
  size=$(nbdinfo --size "$uri") || fail "$name: $uri does not answer right after ExecStartPost"
  [ "$size" = $((32 * 1024 * 1024)) ] || fail "$name: export size $size, expected 32 MiB"
  nbdcopy "$T/data" "$uri" && nbdcopy "$uri" "$T/back" || fail "$name: nbdcopy through $uri failed"
  cmp_range "$T/data" 0 "$T/back" 0 $((8 * 1024 * 1024)) || fail "$name: data did not round-trip"
  kill -0 "$MAIN" || fail "$name: the main process has exited"
  unit_stop
  [ "$RC" = 0 ] || fail "$name: stopped with SIGTERM, the main process exited $RC (a restart)"
  pass "$name: ready only when it serves, data round-trips, SIGTERM exits 0"
}

# The default: a Unix socket in RUNTIME_DIRECTORY; quotes as systemd reads them.
cat >"$T/etc/nbdcrypt/vm1.conf" <<EOF2
# one disk
DISK=$T/vm1.img
CONFIG="$CFG"
NBDKIT_ARGS="--threads=4 nbdcrypt-discard=false"
EOF2
serve_instance vm1 "nbd+unix:///?socket=$T/run/nbdcrypt/vm1/nbd.sock"
grep -q -- "--threads=4" <<<"$(unit_values nbdcrypt@.service ExecStart vm1)" &&
  fail "NBDKIT_ARGS in the unit itself"

# TCP on loopback.
port=$(free_port)
printf 'DISK=%s\nCONFIG=%s\nPORT=%s\nBIND=127.0.0.1\n' "$T/vm1.img" "$CFG" "$port" >"$T/etc/nbdcrypt/tcp.conf"
serve_instance tcp "nbd://127.0.0.1:$port"

# Both SOCKET and PORT: refused before anything runs.
printf 'DISK=%s\nSOCKET=%s\nPORT=%s\n' "$T/vm1.img" "$T/x.sock" "$port" >"$T/etc/nbdcrypt/both.conf"
rc=0
_unit_run nbdcrypt@.service both ExecStart 2>"$T/both.err" || rc=$?
[ "$rc" = 1 ] && grep -q "sets both SOCKET=.* and PORT=" "$T/both.err" ||
  fail "SOCKET and PORT both set: status $rc, $(cat "$T/both.err")"

# A disk this host cannot unlock (not LUKS2 at all): both commands fail.
truncate -s 32M "$T/plain.img"
printf 'DISK=%s\nCONFIG=%s\n' "$T/plain.img" "$CFG" >"$T/etc/nbdcrypt/bad.conf"
unit_start nbdcrypt@.service bad
rc=0
unit_ready nbdcrypt@.service bad || rc=$?
[ "$rc" = 1 ] || fail "ExecStartPost of a disk that does not unlock exited $rc"
grep -q "exited before it served" "$T/bad.ready" || fail "ExecStartPost says: $(cat "$T/bad.ready")"
rc=0
wait "$MAIN" || rc=$?
[ "$rc" = 1 ] || fail "ExecStart of a disk that does not unlock exited $rc, expected 1"
grep -q "cannot serve $T/plain.img" "$T/bad.log" || fail "no reason in the log: $(cat "$T/bad.log")"
[ ! -e "$T/run/nbdcrypt/bad/nbd.sock" ] || fail "the failed server left its socket"
pass "a disk that does not unlock: ExecStart and ExecStartPost exit 1"
