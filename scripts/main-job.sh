#!/usr/bin/env bash
# The main job, one command as root on a fresh Debian 12 machine: install what
# is needed, build, create a native keystore, a KEK and a 1 GiB sparse LUKS2
# disk (if absent), and serve the disk decrypted on a Unix socket and on
# localhost TCP in the foreground, printing how to attach it.  Ctrl-C stops.
#
# nbdkit cannot listen on a Unix socket and TCP at once, and two servers over
# the same image would be two writers with two views of it.  So one nbdkit
# (with the nbdcrypt filter) owns the image and serves the Unix socket, and a
# second nbdkit (nbd plugin, no filter) re-exports that socket on TCP: one
# writer, the TCP clients go through it.
#
# Settings (environment):
#   NBDCRYPT_STATE   directory of the disk, keystore and configuration (/var/lib/nbdcrypt)
#   NBDCRYPT_DISK    the disk image ($NBDCRYPT_STATE/disk.img)
#   NBDCRYPT_SIZE    size of a new disk (1G)
#   NBDCRYPT_CONFIG  key provider configuration ($NBDCRYPT_STATE/config.json, created
#                    with one native provider if absent)
#   NBDCRYPT_SOCKET  Unix socket (/run/nbdcrypt/disk.sock)
#   NBDCRYPT_PORT    TCP port on 127.0.0.1 (10809)
#   NBDCRYPT_BUILD   build directory (build)
#   NBDCRYPT_NO_INSTALL=1  do not apt-get anything
#   NBDCRYPT_NO_BUILD=1    use the nbdcrypt and filter already built in NBDCRYPT_BUILD
#   NBDKIT           the nbdkit command (nbdkit)
#
# One main job per state directory: a second run while the first still
# serves (its lock on $NBDCRYPT_STATE/main-job.lock is held by the job and
# its servers), or while any server answers on NBDCRYPT_SOCKET, is refused
# with exit 1; it never removes a live server's socket.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=${NBDCRYPT_STATE:-/var/lib/nbdcrypt}
disk=${NBDCRYPT_DISK:-$state/disk.img}
size=${NBDCRYPT_SIZE:-1G}
config=${NBDCRYPT_CONFIG:-$state/config.json}
sock=${NBDCRYPT_SOCKET:-/run/nbdcrypt/disk.sock}
port=${NBDCRYPT_PORT:-10809}
build=${NBDCRYPT_BUILD:-$top/build}
read -r -a nbdkit <<<"${NBDKIT:-nbdkit}"

say() { printf 'main-job: %s\n' "$*" >&2; }
die() { printf 'main-job: error: %s\n' "$*" >&2; exit 1; }

# ---- one main job per state directory -------------------------------------
# flock on a descriptor the servers inherit: the lock lives as long as the
# job or any server it started, and the kernel drops it when they are gone.
umask 077
mkdir -p "$state" "$(dirname "$sock")"
exec 9>>"$state/main-job.lock"
if ! flock -n 9; then
  other=$(cat "$state/main-job.pid" 2>/dev/null || true)
  die "another main-job${other:+ (pid $other)} is serving $disk from $state; stop it first (Ctrl-C there${other:+, or kill $other})"
fi
echo $$ >"$state/main-job.pid"

# ---- packages -------------------------------------------------------------
. "$top/scripts/deps.sh"
serve_packages=(nbdkit libnbd-bin qemu-utils nbd-client fuse3 e2fsprogs)
if [ "${NBDCRYPT_NO_INSTALL:-0}" != 1 ]; then
  nbdcrypt_install_packages "${NBDCRYPT_BUILD_PACKAGES[@]}" "${serve_packages[@]}" ||
    die "cannot install the packages (run as root)"
fi

# ---- build ----------------------------------------------------------------
if [ "${NBDCRYPT_NO_BUILD:-0}" != 1 ]; then
  say "building in $build"
  cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target nbdcrypt nbdkit-nbdcrypt-filter \
    >/dev/null || die "build failed (rerun: cmake --build $build)"
fi
nbdcrypt=$build/nbdcrypt
filter=$build/plugins/nbdkit-nbdcrypt-filter.so
[ -x "$nbdcrypt" ] && [ -f "$filter" ] || die "build produced no nbdcrypt or filter"

# ---- keystore, KEK, disk --------------------------------------------------
if [ ! -e "$config" ]; then
  say "creating $config (native keystore $state/keystore.json)"
  printf '{"providers": {"local": {"type": "native", "keystore": "%s"}},\n "default_provider": "local"}\n' \
    "$state/keystore.json" >"$config"
fi
export NBDCRYPT_CONFIG=$config
if [ ! -e "$disk" ]; then
  say "creating a $size sparse LUKS2 disk $disk bound to a new KEK"
  kek=$("$nbdcrypt" format "$disk" --size "$size") || die "nbdcrypt format failed"
  say "KEK $kek in $state/keystore.json"
fi
"$nbdcrypt" check "$disk" >/dev/null || die "this host cannot unlock $disk (see above)"

# ---- serve ----------------------------------------------------------------
# A socket that answers belongs to a live server (of another state
# directory, or not ours at all): leave it.  One that does not is stale.
if [ -e "$sock" ]; then
  if nbdinfo --list "nbd+unix:///?socket=$sock" >/dev/null 2>&1; then
    die "a server is already listening on $sock; stop it or choose another NBDCRYPT_SOCKET"
  fi
  say "removing the stale socket $sock"
  rm -f "$sock"
fi
pids=()
cleanup() {
  local p
  [ ${#pids[@]} -gt 0 ] || return 0
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -f "$sock"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${nbdkit[@]}" -f -U "$sock" --filter="$filter" file file="$disk" nbdcrypt-config="$config" &
pids+=($!)
for ((i = 0; i < 300; i++)); do
  [ -S "$sock" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || die "nbdkit with the filter exited"
  sleep 0.1
done
[ -S "$sock" ] || die "nbdkit did not create $sock"
# A first connection proves the disk unlocked before we advertise it.
nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null || die "the disk does not open (see the nbdkit errors above)"

"${nbdkit[@]}" -f -i 127.0.0.1 -p "$port" nbd socket="$sock" &
pids+=($!)
for ((i = 0; i < 300; i++)); do
  nbdinfo --size "nbd://127.0.0.1:$port" >/dev/null 2>&1 && break
  kill -0 "${pids[1]}" 2>/dev/null || die "the TCP nbdkit exited (port $port in use?)"
  sleep 0.1
done

unix_uri="nbd+unix:///?socket=$sock"
tcp_uri="nbd://127.0.0.1:$port"
cat <<EOF

nbdcrypt is serving $disk decrypted ($(nbdinfo --size "$unix_uri") bytes):
  Unix socket: $unix_uri
  TCP:         $tcp_uri   (localhost only, re-exported from the socket)

Attach it:
  kernel block device:
    modprobe nbd && nbd-client -unix $sock /dev/nbd0 -b 4096
    nbd-client -d /dev/nbd0   # detach
  qemu:
    qemu-img info '$unix_uri'
    qemu-img convert -n -O raw guest.raw '$tcp_uri'   # write an image into it
    qemu-io -f raw '$tcp_uri' -c 'write -P 0xab 4097 513' -c 'read -P 0xab 4097 513'
  nbdcopy:
    nbdcopy '$tcp_uri' backup.raw   # plaintext copy out
    nbdcopy backup.raw '$unix_uri'   # and back in
  nbdfuse (the disk as a file):
    mkdir -p /mnt/nbdcrypt && nbdfuse /mnt/nbdcrypt/disk '$unix_uri' &
    mkfs.ext4 /mnt/nbdcrypt/disk; fusermount3 -u /mnt/nbdcrypt

Ctrl-C stops both servers.
EOF
wait -n "${pids[@]}" || true
say "a server exited; stopping"
