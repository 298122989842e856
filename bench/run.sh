#!/usr/bin/env bash
# nbdcrypt benchmark suite (issue 6): one command builds what it needs, then
# runs every workload against four servers over the same preallocated files
# of random data, and writes bench/REPORT.md.
#
#   plain    nbdkit file plugin
#   nbdcrypt nbdkit --filter=nbdcrypt over the file plugin (native provider),
#            libgcrypt backend (the default build)
#   nbdcrypt-openssl  the same, filter built with -DNBDCRYPT_CRYPTO_BACKEND=openssl
#            (its own copy of the image: image locks allow one server per image)
#   luks     nbdkit --filter=luks over the file plugin (LUKS1 image from
#            qemu-img create -f luks, short iter-time)
#   qemu     qemu-nbd serving the same LUKS1 image (driver=luks)
#
# Environment: BENCH_DIR (scratch, default a new directory under TMPDIR;
# needs ~5 GiB), BENCH_BUILD (build directory), RUNS (nbdcopy runs, default
# 5), FIO_RUNTIME (seconds per fio job, default 5), FIO_REPS (default 3),
# FIO_SEQ=1 (also the 1 MiB sequential fio jobs, not among the targets),
# RECRYPT_RUNS (default 3), BENCH_RECRYPT_BASE (the commit whose recrypt is
# "before issue 11", default 6871ceb: built from git, its CLI only),
# BENCH_SYSTEMS (default "plain nbdcrypt nbdcrypt-openssl luks qemu"), BENCH_REPORT (output,
# default bench/REPORT.md), BENCH_SKIP_BUILD=1 (use BENCH_BUILD as it is),
# BENCH_KEEP=1 (keep the scratch directory).
#
# Recrypt: "nbdcrypt recrypt" of a copy of the 1 GiB LUKS2 image, warm (the
# copy was just written and synced, so it is in the page cache), with both
# backends' CLIs and with the CLI of BENCH_RECRYPT_BASE, runs interleaved;
# each time includes a final sync.
#
# With the defaults the suite takes about 15 minutes on the 2-core machine
# of bench/REPORT.md (each phase's time is in machine.tsv and the report).
#
# Page cache: before each phase and after each write run every image (and
# the write source) is written back, dropped from the cache and read again,
# for every system alike (see warm), so all reads hit the page cache and
# every file is cached the same way; none of this is timed.  Only Unix sockets are used; only the servers started here are
# stopped, by pid.
set -euo pipefail
export LC_ALL=C
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3
RUNS=${RUNS:-5}
FIO_RUNTIME=${FIO_RUNTIME:-5}
FIO_REPS=${FIO_REPS:-3}
FIO_SEQ=${FIO_SEQ:-0}
RECRYPT_RUNS=${RECRYPT_RUNS:-3}
RECRYPT_BASE=${BENCH_RECRYPT_BASE:-6871ceb}
SYSTEMS=${BENCH_SYSTEMS:-plain nbdcrypt nbdcrypt-openssl luks qemu}
REPORT=${BENCH_REPORT:-$SRC/bench/REPORT.md}
BUILD=${BENCH_BUILD:-${TMPDIR:-/tmp}/nbdcrypt-bench-build}
SIZE=$((1024 * 1024 * 1024))
DATA_OFFSET=$((16 * 1024 * 1024))

for t in /usr/bin/time cmake nbdkit nbdcopy nbdinfo fio qemu-img qemu-nbd openssl; do
  command -v "$t" >/dev/null || { echo "bench: $t is not installed" >&2; exit 1; }
done

SUITE_START=$EPOCHREALTIME
PHASE_START=$EPOCHREALTIME
PHASES=()
phase_done() { # NAME: the time since the previous phase ended, for machine.tsv
  PHASES+=("phase_$1_s	$(echo "$EPOCHREALTIME - $PHASE_START" | bc -l)")
  PHASE_START=$EPOCHREALTIME
}

# ---- build ----------------------------------------------------------------
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  echo "== build ($BUILD)"
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" --target nbdcrypt nbdkit-nbdcrypt-filter nbdc_crypto -j2 >/dev/null
  cmake -S "$SRC" -B "$BUILD-openssl" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DNBDCRYPT_CRYPTO_BACKEND=openssl >/dev/null
  cmake --build "$BUILD-openssl" --target nbdcrypt nbdkit-nbdcrypt-filter nbdc_crypto -j2 >/dev/null
fi
# The CLI before issue 11 (its recrypt is the baseline), from git.
BASE_NBDCRYPT=$BUILD-base/nbdcrypt
if [ -z "${BENCH_SKIP_BUILD:-}" ] || [ ! -x "$BASE_NBDCRYPT" ]; then
  echo "== build the CLI of $RECRYPT_BASE ($BUILD-base)"
  rm -rf "$BUILD-base-src"
  mkdir -p "$BUILD-base-src"
  if git -C "$SRC" archive "$RECRYPT_BASE" | tar -x -C "$BUILD-base-src"; then
    cmake -S "$BUILD-base-src" -B "$BUILD-base" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD-base" --target nbdcrypt -j2 >/dev/null
  else
    echo "bench: cannot export $RECRYPT_BASE from git: no recrypt baseline" >&2
    BASE_NBDCRYPT=
  fi
fi
NBDCRYPT=$BUILD/nbdcrypt
FILTER=$BUILD/plugins/nbdkit-nbdcrypt-filter.so
FILTER_OPENSSL=$BUILD-openssl/plugins/nbdkit-nbdcrypt-filter.so
# One XTS speed program per backend; the libgcrypt one also measures
# libgcrypt called directly (what our wrapper costs).
cc -O2 -std=c17 -D_GNU_SOURCE -DXTS_SPEED_RAW_GCRYPT -I"$SRC/include" "$SRC/bench/xts-speed.c" \
  "$BUILD/libnbdc_crypto.a" "$BUILD/libnbdc_util.a" -lgcrypt -lcrypto -largon2 -o "$BUILD/xts-speed"
cc -O2 -std=c17 -D_GNU_SOURCE -I"$SRC/include" "$SRC/bench/xts-speed.c" \
  "$BUILD-openssl/libnbdc_crypto.a" "$BUILD-openssl/libnbdc_util.a" -lcrypto -largon2 \
  -o "$BUILD-openssl/xts-speed"
phase_done build

if [ -n "${BENCH_DIR:-}" ]; then
  D=$BENCH_DIR
  mkdir -p "$D"
else
  D=$(mktemp -d "${TMPDIR:-/tmp}/nbdcrypt-bench.XXXXXX")
fi
chmod 700 "$D"
RES=$D/results.tsv
: >"$RES"
echo "== scratch $D"

declare -A PID
stop_server() { # NAME: SIGTERM by pid, wait up to 10 s, then SIGKILL
  local p=${PID[$1]:-} i
  [ -n "$p" ] || return 0
  unset "PID[$1]"
  kill "$p" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
stop_all() { local s; for s in "${!PID[@]}"; do stop_server "$s"; done; }
cleanup() {
  stop_all
  [ -n "${BENCH_DIR:-}" ] || [ -n "${BENCH_KEEP:-}" ] || rm -rf "$D"
}
trap cleanup EXIT

# ---- machine ----------------------------------------------------------------
{
  echo "cpu	$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "cores	$(nproc)"
  echo "cpu_flags	$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'aes|vaes|avx2|avx512f|vpclmulqdq' | tr '\n' ' ')"
  echo "mem	$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel	$(uname -r)"
  echo "openssl	$(openssl version)"
  echo "nbdkit	$(nbdkit --version | head -1)"
  echo "nbdcopy	$(nbdcopy --version | head -1)"
  echo "qemu	$(qemu-nbd --version | head -1)"
  echo "fio	$(fio --version)"
  echo "cc	$(cc --version | head -1)"
  echo "commit	$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$SRC" diff --quiet HEAD -- plugins src bench 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "date	$(date -u +%Y-%m-%dT%H:%MZ)"
  echo "params	RUNS=$RUNS FIO_RUNTIME=$FIO_RUNTIME FIO_REPS=$FIO_REPS FIO_SEQ=$FIO_SEQ RECRYPT_RUNS=$RECRYPT_RUNS systems: $SYSTEMS"
  echo "recrypt_base	$(git -C "$SRC" rev-parse --short "$RECRYPT_BASE" 2>/dev/null || echo "$RECRYPT_BASE")"
  echo "load_at_start	$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$D/machine.tsv"
echo "== openssl speed"
timeout 60 openssl speed -seconds 2 -bytes 4096 -evp aes-256-xts 2>/dev/null |
  awk '/^AES-256-XTS/ {sub(/k$/, "", $2); print "openssl_xts_4096_MBps\t" $2 / 1000}' >>"$D/machine.tsv"
timeout 60 openssl speed -seconds 2 -evp aes-256-xts 2>/dev/null |
  awk '/^AES-256-XTS|^type/ {print "openssl_speed\t" $0}' >>"$D/machine.tsv"
echo "== xts engine, both backends"
"$BUILD/xts-speed" >>"$D/machine.tsv"
"$BUILD-openssl/xts-speed" >>"$D/machine.tsv"
phase_done cipher

# ---- data -------------------------------------------------------------------
CFG=$D/config.json
cat >"$CFG" <<JSON
{"providers": {"local": {"type": "native", "keystore": "$D/keys/keystore.json"}},
 "default_provider": "local"}
JSON
if [ -n "${BENCH_DIR:-}" ] && [ -s "$D/luks1.img" ] && [ -s "$D/payload" ]; then
  echo "== data: reusing the images in $D"
else
  echo "== data (1 GiB of random bytes, four images)"
  printf 'bench-passphrase' >"$D/pass"
  chmod 600 "$D/pass"
  head -c "$SIZE" /dev/urandom >"$D/random.bin"
  cp "$D/random.bin" "$D/plain.img"
  NBDCRYPT_CONFIG=$CFG "$NBDCRYPT" format "$D/crypt.img" --size $((SIZE + DATA_OFFSET)) >/dev/null
  dd if="$D/random.bin" of="$D/crypt.img" bs=4M seek=$((DATA_OFFSET / 4194304)) conv=notrunc status=none
  # qemu's PBKDF calibration fails now and then on a short iter-time
  # ("Unable to get accurate CPU usage"): try a few times.
  for i in 1 2 3 4 5; do
    qemu-img create -q -f luks --object secret,id=sec0,file="$D/pass" \
      -o key-secret=sec0,iter-time=10 "$D/luks1.img" "$SIZE" && break
    [ "$i" -lt 5 ] || exit 1
  done
  payload=$(cryptsetup luksDump "$D/luks1.img" | awk '/^Payload offset:/ {print $3 * 512}')
  dd if="$D/random.bin" of="$D/luks1.img" bs=512 seek=$((payload / 512)) conv=notrunc status=none \
    iflag=fullblock obs=4M
  echo "$payload" >"$D/payload"
fi
[ -s "$D/crypt-openssl.img" ] || cp --sparse=always "$D/crypt.img" "$D/crypt-openssl.img"
echo "luks1_payload_offset	$(cat "$D/payload")" >>"$D/machine.tsv"
sync
phase_done data

# warm: write back dirty pages, drop every image from the page cache and read
# them all again.  The page cache must be in the same state for every
# system, not only full: on Linux 6.x ext4 caches files in large folios when
# they are read sequentially (readahead) but in whatever size the writer used
# when they were written, and a 4 KiB buffered write into a large folio
# costs several times more than into a 4 KiB page.
IMAGES=("$D/random.bin" "$D/plain.img" "$D/crypt.img" "$D/crypt-openssl.img" "$D/luks1.img")
warm() {
  sync
  "$PY" -c 'import os, sys
for f in sys.argv[1:]:
    fd = os.open(f, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)' "${IMAGES[@]}"
  cat "${IMAGES[@]}" >/dev/null
}

# ---- servers ------------------------------------------------------------------
sock() { echo "$D/$1.sock"; }
uri() { echo "nbd+unix:///?socket=$(sock "$1")"; }

start_server() { # NAME [extra nbdkit args]
  local name=$1 i
  shift
  rm -f "$(sock "$name")"
  case $name in
  plain) nbdkit -f "$@" -U "$(sock "$name")" file file="$D/plain.img" 2>>"$D/$name.log" & ;;
  nbdcrypt)
    nbdkit -f "$@" -U "$(sock "$name")" --filter="$FILTER" file file="$D/crypt.img" \
      nbdcrypt-config="$CFG" 2>>"$D/$name.log" & ;;
  nbdcrypt-openssl)
    nbdkit -f "$@" -U "$(sock "$name")" --filter="$FILTER_OPENSSL" file \
      file="$D/crypt-openssl.img" nbdcrypt-config="$CFG" 2>>"$D/$name.log" & ;;
  luks)
    nbdkit -f "$@" -U "$(sock "$name")" --filter=luks file file="$D/luks1.img" \
      passphrase=+"$D/pass" 2>>"$D/$name.log" & ;;
  qemu)
    qemu-nbd --persistent --shared=0 --socket="$(sock "$name")" --cache=writeback --aio=threads \
      --object secret,id=sec0,file="$D/pass" \
      --image-opts driver=luks,key-secret=sec0,file.driver=file,file.filename="$D/luks1.img" \
      2>>"$D/$name.log" & ;;
  esac
  PID[$name]=$!
  for ((i = 0; i < 3000; i++)); do
    [ -S "$(sock "$name")" ] && return 0
    kill -0 "${PID[$name]}" 2>/dev/null || { cat "$D/$name.log" >&2; echo "bench: $name exited" >&2; exit 1; }
    sleep 0.01
  done
  echo "bench: $name did not start within 30 s" >&2
  exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)
now() { echo "$EPOCHREALTIME"; }
# The systems in the order of run R: rotated by R - 1 and reversed on even
# runs, so that no system always runs right after the same other one (e.g.
# while its dirty pages are still being written back).
order() {
  local -a a=($SYSTEMS)
  local n=${#a[@]} i
  for ((i = 0; i < n; i++)); do
    if (($1 % 2)); then echo "${a[(i + $1 - 1) % n]}"; else echo "${a[(n - 1 - i + $1 - 1) % n]}"; fi
  done
}
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RES"; } # workload system run metric value
load1() { cut -d' ' -f1 /proc/loadavg; } # 1-minute load average, noted with every measurement
# Machine-wide busy and steal ticks (/proc/stat): the CPU time used during a
# run by anything other than the server and the client is busy - server -
# client.  The load average alone cannot tell: it counts the benchmark's own
# runnable server threads (dozens during the luks filter's writes).
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9; exit}' /proc/stat; }
record_other() { # WORKLOAD SYSTEM RUN BEFORE("busy steal") SERVER_TICKS CLIENT_CPU_S
  local b0 s0 b1 s1
  read -r b0 s0 <<<"$4"
  read -r b1 s1 <<<"$(machine_ticks)"
  record "$1" "$2" "$3" other_cpu_s "$(echo "($b1 - $b0 - $5) / $CLK_TCK - $6" | bc -l)"
  record "$1" "$2" "$3" steal_s "$(echo "($s1 - $s0) / $CLK_TCK" | bc -l)"
}

for s in $SYSTEMS; do start_server "$s"; done
for s in $SYSTEMS; do
  got=$(nbdinfo --size "$(uri "$s")")
  [ "$got" = "$SIZE" ] || { echo "bench: $s exports $got bytes, not $SIZE" >&2; exit 1; }
done

# ---- nbdcopy: 1 GiB sequential, runs interleaved pair by pair ------------------
nbdcopy_run() { # WORKLOAD SYSTEM RUN
  local w=$1 s=$2 r=$3 t0 t1 c0 c1 p=${PID[$2]}
  record "nbdcopy-$w" "$s" "$r" load1 "$(load1)"
  local m0
  m0=$(machine_ticks)
  c0=$(cpu_ticks "$p")
  t0=$(now)
  if [ "$w" = read ]; then
    timeout 600 /usr/bin/time -f '%U %S' -o "$D/client.cpu" nbdcopy "$(uri "$s")" null:
  else
    timeout 600 /usr/bin/time -f '%U %S' -o "$D/client.cpu" nbdcopy "$D/random.bin" "$(uri "$s")"
  fi
  t1=$(now)
  c1=$(cpu_ticks "$p")
  record "nbdcopy-$w" "$s" "$r" client_cpu_s "$(awk '{print $1 + $2}' "$D/client.cpu")"
  record "nbdcopy-$w" "$s" "$r" wall_s "$(echo "$t1 - $t0" | bc -l)"
  record "nbdcopy-$w" "$s" "$r" cpu_s "$(echo "($c1 - $c0) / $CLK_TCK" | bc -l)"
  record_other "nbdcopy-$w" "$s" "$r" "$m0" "$((c1 - c0))" "$(awk '{print $1 + $2}' "$D/client.cpu")"
}

for w in read write; do
  echo "== nbdcopy $w"
  warm
  for ((r = 1; r <= RUNS; r++)); do
    for s in $(order "$r"); do
      nbdcopy_run "$w" "$s" "$r"
      if [ "$w" = write ]; then warm; fi
    done
    echo "   run $r (load $(load1)): $(awk -F'\t' -v w="nbdcopy-$w" -v r="$r" '$1==w && $3==r && $4=="wall_s" {printf "%s %.2fs  ", $2, $5}' "$RES")"
  done
done
# The written data must read back as what was written.
for s in $SYSTEMS; do
  timeout 600 nbdcopy "$(uri "$s")" "$D/check.bin"
  cmp -s "$D/check.bin" "$D/random.bin" || { echo "bench: $s did not read back the written data" >&2; exit 1; }
  rm -f "$D/check.bin"
done
stop_all
phase_done nbdcopy

# ---- fio: fresh servers, peak RSS after the fio load -----------------------------
fio_run() { # NAME SYSTEM REP fio args...
  local name=$1 s=$2 r=$3 c0 c1 p=${PID[$2]}
  shift 3
  record "fio-$name" "$s" "$r" load1 "$(load1)"
  local m0
  m0=$(machine_ticks)
  c0=$(cpu_ticks "$p")
  timeout $((FIO_RUNTIME + 120)) /usr/bin/time -f '%U %S' -o "$D/client.cpu" fio --name=b --ioengine=nbd --uri="$(uri "$s")" \
    --numjobs=2 --iodepth=16 --time_based --runtime="$FIO_RUNTIME" --ramp_time=1 \
    --group_reporting --output-format=json --output="$D/fio.json" "$@" >/dev/null
  c1=$(cpu_ticks "$p")
  record_other "fio-$name" "$s" "$r" "$m0" "$((c1 - c0))" "$(awk '{print $1 + $2}' "$D/client.cpu")"
  "$PY" - "$D/fio.json" "$name" "$s" "$r" "$(echo "($c1 - $c0) / $CLK_TCK" | bc -l)" >>"$RES" <<'EOF'
import json, sys
path, name, system, rep, cpu = sys.argv[1:6]
job = json.load(open(path))["jobs"][0]
io = job["read"] if job["read"]["io_bytes"] else job["write"]
gib = io["io_bytes"] / 2**30
print(f"fio-{name}\t{system}\t{rep}\tiops\t{io['iops']}")
print(f"fio-{name}\t{system}\t{rep}\tMiBps\t{io['bw_bytes'] / 2**20}")
print(f"fio-{name}\t{system}\t{rep}\tlat_us\t{io['clat_ns']['mean'] / 1000}")
EOF
}

echo "== fio"
for s in $SYSTEMS; do start_server "$s"; done
warm
# Workload by workload, every system back to back, so that the pairs whose
# ratio is taken ran next to each other.
for ((r = 1; r <= FIO_REPS; r++)); do
  # After every write job its dirty pages are written back (sync, not
  # timed), so the next job does not run during that writeback.
  for s in $(order "$r"); do fio_run randread-4k "$s" "$r" --rw=randread --bs=4k; done
  for s in $(order "$r"); do fio_run randwrite-4k "$s" "$r" --rw=randwrite --bs=4k; sync; done
  for s in $(order "$r"); do fio_run randread-1m "$s" "$r" --rw=randread --bs=1m; done
  for s in $(order "$r"); do fio_run randwrite-1m "$s" "$r" --rw=randwrite --bs=1m; sync; done
  if [ "$FIO_SEQ" = 1 ]; then
    for s in $(order "$r"); do
      fio_run seqread-1m "$s" "$r" --rw=read --bs=1m --size=512m --offset_increment=512m
    done
    for s in $(order "$r"); do
      fio_run seqwrite-1m "$s" "$r" --rw=write --bs=1m --size=512m --offset_increment=512m
      sync
    done
  fi
  warm
  echo "   rep $r (load $(load1)): $(awk -F'\t' -v r="$r" '$3==r && $4=="iops" && $1 ~ /4k/ {printf "%s %s %.0f  ", $1, $2, $5}' "$RES")"
done
for s in $SYSTEMS; do
  record rss "$s" 1 vmhwm_mib "$(awk '/VmHWM/ {print $2 / 1024}' "/proc/${PID[$s]}/status")"
done
stop_all
phase_done fio

# ---- time to first byte: a fresh server, its first and second connection ---------
echo "== time to first byte"
ttfb() { # SYSTEM REP
  local s=$1 t0
  t0=$(now)
  start_server "$s"
  "$PY" - "$(uri "$s")" "$t0" "$s" "$2" >>"$RES" <<'EOF'
import sys, time, nbd
uri, t0, system, rep = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
for conn in (1, 2):
    start = time.time()
    h = nbd.NBD()
    h.connect_uri(uri)
    h.pread(4096, 0)
    end = time.time()
    h.shutdown()
    print(f"ttfb\t{system}\t{rep}\tconn{conn}_ms\t{(end - start) * 1000}")
    if conn == 1:
        print(f"ttfb\t{system}\t{rep}\tlaunch_to_first_byte_ms\t{(end - t0) * 1000}")
EOF
  stop_server "$s"
}
for ((r = 1; r <= RUNS; r++)); do
  for s in $SYSTEMS; do ttfb "$s" "$r"; done
done

# Unlock work happens once per server: with nbdkit -v the filter logs
# "unlocked disk" once, at start, and never again for later connections.
if [[ " $SYSTEMS " == *" nbdcrypt "* ]]; then
  : >"$D/nbdcrypt.log"
  start_server nbdcrypt -v
  for _ in 1 2 3; do nbdinfo --size "$(uri nbdcrypt)" >/dev/null; done
  stop_server nbdcrypt
  record unlock nbdcrypt 1 unlocks_for_3_connections "$(grep -c 'nbdcrypt: unlocked disk' "$D/nbdcrypt.log" || true)"
  record unlock nbdcrypt 1 connections_seen "$(grep -c 'newstyle negotiation: flags: global' "$D/nbdcrypt.log" || true)"
fi

phase_done ttfb

# ---- recrypt: 1 GiB from a warm cache, both backends and the baseline ------------
declare -A RECRYPT_BIN=([nbdcrypt]=$NBDCRYPT [nbdcrypt-openssl]=$BUILD-openssl/nbdcrypt)
[ -z "$BASE_NBDCRYPT" ] || RECRYPT_BIN[before-issue-11]=$BASE_NBDCRYPT
RECRYPT_SYSTEMS=(nbdcrypt nbdcrypt-openssl rewrite-floor)
[ -z "$BASE_NBDCRYPT" ] || RECRYPT_SYSTEMS+=(before-issue-11)
# rewrite-floor: the same warm copy rewritten in place by dd, no cipher, one
# fdatasync: what writing every block of the image back durably costs on this
# disk, the floor of any in-place recrypt
recrypt_argv() { # SYSTEM IMAGE: sets CMD
  if [ "$1" = rewrite-floor ]; then
    CMD=(dd if="$2" of="$2" bs=16M conv=notrunc,fdatasync status=none)
  else
    CMD=("${RECRYPT_BIN[$1]}" recrypt "$2")
  fi
}
echo "== recrypt 1 GiB, warm cache (${RECRYPT_SYSTEMS[*]})"
for ((r = 1; r <= RECRYPT_RUNS; r++)); do
  n=${#RECRYPT_SYSTEMS[@]}
  for ((i = 0; i < n; i++)); do # rotated each run
    s=${RECRYPT_SYSTEMS[(i + r - 1) % n]}
    cp "$D/crypt.img" "$D/recrypt.img"
    sync
    cat "$D/recrypt.img" >/dev/null
    record recrypt-warm "$s" "$r" load1 "$(load1)"
    t0=$(now)
    recrypt_argv "$s" "$D/recrypt.img"
    NBDCRYPT_CONFIG=$CFG timeout 600 /usr/bin/time -f '%U %S' -o "$D/recrypt.cpu" \
      "${CMD[@]}" >/dev/null 2>"$D/recrypt.err" ||
      { cat "$D/recrypt.err" >&2; echo "bench: recrypt with $s failed" >&2; exit 1; }
    sync
    t1=$(now)
    record recrypt-warm "$s" "$r" wall_s "$(echo "$t1 - $t0" | bc -l)"
    record recrypt-warm "$s" "$r" cpu_s "$(awk '{print $1 + $2}' "$D/recrypt.cpu")"
    rm -f "$D/recrypt.img"
  done
  echo "   run $r (load $(load1)): $(awk -F'\t' -v r="$r" '$1=="recrypt-warm" && $3==r && $4=="wall_s" {printf "%s %.2fs  ", $2, $5}' "$RES")"
done
phase_done recrypt

# ---- report -----------------------------------------------------------------
{
  printf '%s\n' "${PHASES[@]}"
  echo "phase_total_s	$(echo "$EPOCHREALTIME - $SUITE_START" | bc -l)"
} >>"$D/machine.tsv"
"$PY" "$SRC/bench/report.py" "$D/machine.tsv" "$RES" "$SRC/bench/optimisations.md" >"$REPORT"
cp "$RES" "$D/machine.tsv" "$SRC/bench/" 2>/dev/null || true
echo "== wrote $REPORT"
