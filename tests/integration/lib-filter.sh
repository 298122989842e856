# Helpers for the filter's integration tests (sourced after nothing else):
# lib.sh (temporary directory $T, test keystore, fail/pass/need) plus
# starting and stopping nbdkit servers by pid.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${NBDCRYPT_FILTER:?run through ctest (NBDCRYPT_FILTER is the filter .so)}"
[ -f "$NBDCRYPT_FILTER" ] || fail "filter $NBDCRYPT_FILTER is not built"
need nbdkit

# nbdsh runs "python3": Debian's, which has the nbd module.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

# NBDCRYPT_TEST_NBDKIT: the nbdkit command of server_start, e.g. a wrapper
# that runs it under valgrind.  In the ASan build ctest sets it (and NBDKIT,
# for "nbdcrypt serve") to tests/sanitize/nbdkit-sanitize.sh, which preloads
# the sanitizer runtime and sends its reports to $NBDCRYPT_TEST_SANITIZER_LOG.PID.
read -r -a _nbdkit <<<"${NBDCRYPT_TEST_NBDKIT:-nbdkit}"
export NBDCRYPT_TEST_SANITIZER_LOG=$T/sanitizer

_servers=()
on_exit 'for _s in "${_servers[@]}"; do server_stop "$_s"; done; sanitizer_check'

# server_start NAME NBDKIT-ARGS...: run "nbdkit -f -U $T/NAME.sock ARGS" in
# the background, log in $T/NAME.log, pid in $T/NAME.pid; returns once it
# listens (at most 30 s).  The filter is not added: pass --filter="$NBDCRYPT_FILTER".
server_start() {
  local name=$1 i
  shift
  rm -f "$T/$name.sock" "$T/$name.pid"
  [ -f "$T/$name.log" ] && wc -l <"$T/$name.log" >"$T/$name.logstart" || echo 0 >"$T/$name.logstart"
  "${_nbdkit[@]}" -f -v -U "$T/$name.sock" -P "$T/$name.pid" "$@" 2>>"$T/$name.log" &
  _servers+=("$name")
  for ((i = 0; i < 300; i++)); do
    if [ -s "$T/$name.pid" ] && [ -S "$T/$name.sock" ]; then
      return 0
    fi
    if ! kill -0 $! 2>/dev/null; then
      sed 's/^/  | /' "$T/$name.log" >&2
      fail "nbdkit $name exited while starting"
    fi
    sleep 0.1
  done
  fail "nbdkit $name did not start within 30 s"
}

# serve NAME IMAGE [FILTER-ARGS...]: the filter over the file plugin.
serve() {
  local name=$1 img=$2
  shift 2
  server_start "$name" --filter="$NBDCRYPT_FILTER" file file="$img" "$@"
}

# server_open_handles NAME: how many plugin and filter handles the server has
# open, from what its -v log says since it started (nbdkit logs "LAYER: open
# returned handle" and "LAYER: close" for every layer of every connection).
# A server not started by server_start ("nbdcrypt serve") counts when it runs
# with -v and logs to $T/NAME.log.  A failed open logs "open returned handle
# (nil)" and is never closed: only handles 0x... count.
server_open_handles() {
  local log opened closed start=0
  [ -f "$T/$1.log" ] || { echo 0; return; }
  [ -f "$T/$1.logstart" ] && start=$(cat "$T/$1.logstart")
  log=$(tail -n "+$((start + 1))" "$T/$1.log")
  opened=$(grep -Ec ': debug: [A-Za-z0-9_.-]+: open returned handle 0x' <<<"$log" || true)
  closed=$(grep -Ec ': debug: [A-Za-z0-9_.-]+: close$' <<<"$log" || true)
  echo $((opened - closed))
}

# server_stop NAME: SIGTERM the server by its pid, wait up to 10 s, then SIGKILL.
# Before the signal it waits (at most 10 s) until the server has closed the
# handles of clients that have gone: once nbdkit is told to quit it no longer
# closes a connection's handles (free_connection skips the close when quit is
# set), so a SIGTERM that lands while a client's disconnect is still being
# handled leaves them unfreed, and LeakSanitizer reports that in the ASan build.
server_stop() {
  local name=$1 pid i
  [ -s "$T/$name.pid" ] || return 0
  pid=$(cat "$T/$name.pid")
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null && [ "$(server_open_handles "$name")" -gt 0 ] || break
    sleep 0.1
  done
  rm -f "$T/$name.pid"
  stop_pid "$pid"
}

# server_alive NAME: true while its process runs.
server_alive() {
  [ -s "$T/$1.pid" ] && kill -0 "$(cat "$T/$1.pid")" 2>/dev/null
}

# qnbd_start NAME FORMAT IMAGE [QEMU-NBD-ARGS...]: a persistent qemu-nbd for
# IMAGE on $T/NAME.qsock (4 clients at once), pid in $T/NAME.qpid, stopped by
# pid on exit.
qnbd_start() {
  local name=$1 format=$2 img=$3
  shift 3
  rm -f "$T/$name.qsock" "$T/$name.qpid"
  qemu-nbd --fork --persistent --shared=4 -f "$format" -k "$T/$name.qsock" \
    --pid-file="$T/$name.qpid" "$@" "$img"
  [ -s "$T/$name.qpid" ] || fail "qemu-nbd $name did not start"
  on_exit "qnbd_stop $name"
}

# qnbd_stop NAME: stop the qemu-nbd of qnbd_start by its pid.
qnbd_stop() {
  local pid
  [ -s "$T/$1.qpid" ] || return 0
  pid=$(cat "$T/$1.qpid")
  rm -f "$T/$1.qpid"
  stop_pid "$pid"
}

# qsock_uri NAME: the NBD URI of qemu-nbd NAME.
qsock_uri() { echo "nbd+unix:///?socket=$T/$1.qsock"; }

# uri NAME: the NBD URI of server NAME.
uri() { echo "nbd+unix:///?socket=$T/$1.sock"; }

# log_has NAME REGEX: true when the server's log matches (extended regex).
log_has() { grep -Eq -- "$2" "$T/$1.log"; }

# new_disk IMAGE SIZE [format args...]: a sparse LUKS2 disk bound to a new
# KEK of the test keystore; prints the KEK id.
new_disk() {
  local img=$1 size=$2
  shift 2
  nbdcrypt format "$img" --size "$size" "$@"
}

# data_offset IMAGE: the data segment's offset in bytes (nbdcrypt info --json).
data_offset() {
  nbdcrypt info "$1" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data_offset"])'
}

# no_plaintext_blocks PLAIN IMAGE: fail if any 4 KiB block of PLAIN appears
# 4 KiB-aligned in IMAGE.
no_plaintext_blocks() {
  "$PY" - "$1" "$2" <<'PYEOF' || fail "plaintext found in $2"
import sys
bs = 4096
plain = open(sys.argv[1], "rb").read()
blocks = {plain[i:i + bs] for i in range(0, len(plain), bs)}
blocks.discard(bytes(bs))
with open(sys.argv[2], "rb") as f:
    off = 0
    while True:
        b = f.read(bs)
        if not b:
            break
        if b in blocks:
            print("plaintext block at image offset", off, file=sys.stderr)
            sys.exit(1)
        off += bs
PYEOF
}

# xts_py encrypt|decrypt VKFILE SECTOR_SIZE FIRST_UNIT <IN >OUT: aes-xts-plain64
# with python3-cryptography, an implementation independent of libnbdcrypt.
cat >"$T/xts.py" <<'PYEOF'
import sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
op, key, ss, unit = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3]), int(sys.argv[4])
data = sys.stdin.buffer.read()
assert len(data) % ss == 0, "input is not whole sectors"
out = bytearray()
for i in range(0, len(data), ss):
    tweak = (unit + i // 512).to_bytes(8, "little") + bytes(8)
    c = Cipher(algorithms.AES(key), modes.XTS(tweak))
    ctx = c.encryptor() if op == "encrypt" else c.decryptor()
    out += ctx.update(data[i:i + ss]) + ctx.finalize()
sys.stdout.buffer.write(out)
PYEOF
xts_py() { "$PY" "$T/xts.py" "$@"; }

# fuse_setup: a mount point $mnt for nbdfuse, unmounted at exit.
# fuse_mount URI: nbdfuse serves the export as the file $mnt/disk (at most
# 10 s to appear); fuse_umount unmounts it and waits (10 s) for nbdfuse to exit.
fuse_setup() {
  need nbdfuse fusermount3
  [ -c /dev/fuse ] || fail "/dev/fuse is absent: nbdfuse cannot run"
  mnt=$T/mnt
  mkdir "$mnt"
  on_exit fuse_umount
}
fuse_mount() {
  rm -f "$T/fuse.pid"
  nbdfuse -P "$T/fuse.pid" "$mnt/disk" "$1" 2>>"$T/fuse.log" &
  local i
  for ((i = 0; i < 100; i++)); do
    [ -s "$T/fuse.pid" ] && [ -f "$mnt/disk" ] && return 0
    sleep 0.1
  done
  cat "$T/fuse.log" >&2
  fail "nbdfuse did not mount"
}
fuse_umount() {
  [ -s "$T/fuse.pid" ] || return 0
  local pid i
  pid=$(cat "$T/fuse.pid")
  rm -f "$T/fuse.pid"
  fusermount3 -u "$mnt" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill "$pid" 2>/dev/null || true
}
