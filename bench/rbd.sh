#!/usr/bin/env bash
# nbdcrypt over Ceph RBD (issue 15): the one-node cluster of
# tests/integration/lib-ceph.sh (one monitor, one memstore OSD, loopback),
# three ways to serve an RBD image of the same plaintext size:
#
#   raw       qemu-nbd rbd:POOL/raw (no encryption)
#   proxy     nbdkit nbd socket=<the raw qemu-nbd>: nbdcrypt's path without
#             the filter (nbdcrypt's ratio is taken to this)
#   nbdcrypt  nbdkit --filter=nbdcrypt nbd socket=<qemu-nbd rbd:POOL/crypt>
#   librbd    qemu-nbd --image-opts driver=rbd,...,encrypt.format=luks2
#             (librbd's own LUKS2 encryption, image made by "rbd encryption
#             format ... luks2")
#
# Workloads: nbdcopy write (random data) and read of the whole plaintext,
# fio 4 KiB randwrite and randread (nbd engine, iodepth 16).  Prints a table
# with each figure, nbdcrypt's ratio to proxy and librbd's ratio to raw (each
# to the same path without its encryption).  A memstore OSD keeps the data in RAM, so this measures
# the encryption path's cost against a fast store on this machine, not a
# networked cluster (published figures for librbd LUKS2 in user space:
# ~60 % of raw for writes, ~87 % for reads).
#
# Environment: BENCH_BUILD (build directory, default ./build), BENCH_SIZE
# (plaintext bytes, default 1 GiB), RUNS (nbdcopy runs, default 3),
# FIO_RUNTIME (seconds per fio job, default 10), BENCH_REPORT (also write
# the table there).  Run as root (the cluster runs as this user).  A short
# smoke run: BENCH_SIZE=$((64<<20)) RUNS=1 FIO_RUNTIME=2 bench/rbd.sh
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BENCH_BUILD:-$SRC/build}
export NBDCRYPT=$BUILD/nbdcrypt NBDCRYPT_FILTER=$BUILD/plugins/nbdkit-nbdcrypt-filter.so
[ -x "$NBDCRYPT" ] && [ -f "$NBDCRYPT_FILTER" ] || { echo "bench: build nbdcrypt first ($BUILD)" >&2; exit 1; }
SIZE=${BENCH_SIZE:-$((1024 * 1024 * 1024))}
RUNS=${RUNS:-3}
FIO_RUNTIME=${FIO_RUNTIME:-10}
MiB=$((1024 * 1024))
(( SIZE % MiB == 0 )) || { echo "bench: BENCH_SIZE must be a multiple of 1 MiB" >&2; exit 1; }
# memstore holds every image in RAM: three images plus headroom
export CEPH_MEMSTORE_BYTES=$((3 * (SIZE + 16 * MiB) + 512 * MiB))

# The test helpers: $T (scratch, removed at exit), servers and qemu-nbd by pid.
. "$SRC/tests/integration/lib-ceph.sh"
need nbdcopy fio qemu-nbd bc

echo "== cluster" >&2
ceph_start
rbd_cmd create --size $((SIZE / MiB))M "$CEPH_POOL/raw"
rbd_cmd create --size $((SIZE / MiB + 16))M "$CEPH_POOL/crypt"
rbd_cmd create --size $((SIZE / MiB + 16))M "$CEPH_POOL/librbd"
head -c 32 /dev/urandom | base64 -w0 >"$T/pass"
rbd_cmd encryption format "$CEPH_POOL/librbd" luks2 "$T/pass"

rbd_qnbd_start raw raw
rbd_qnbd_start crypt crypt
nbdcrypt format "$(qsock_uri crypt)" >/dev/null
server_start proxy nbd socket="$T/raw.qsock"
server_start nbdcrypt --filter="$NBDCRYPT_FILTER" nbd socket="$T/crypt.qsock"
# librbd decrypting inside qemu-nbd
rm -f "$T/librbd.qsock"
qemu-nbd --fork --persistent --shared=4 -k "$T/librbd.qsock" --pid-file="$T/librbd.qpid" \
  --object "secret,id=pw,file=$T/pass" --image-opts \
  "driver=rbd,pool=$CEPH_POOL,image=librbd,conf=$CEPH_CONF,user=admin,encrypt.format=luks2,encrypt.key-secret=pw"
on_exit "qnbd_stop librbd"
_ceph_qnbd+=(librbd)

declare -A URI=([raw]=$(qsock_uri raw) [proxy]=$(uri proxy) [nbdcrypt]=$(uri nbdcrypt) [librbd]=$(qsock_uri librbd))
for s in raw proxy nbdcrypt librbd; do
  got=$(nbdinfo --size "${URI[$s]}")
  [ "$got" = "$SIZE" ] || { echo "bench: $s serves $got bytes, want $SIZE" >&2; exit 1; }
done
head -c "$SIZE" /dev/urandom >"$T/src"

now() { date +%s.%N; }
mibs() { echo "scale=1; $SIZE / $MiB / ($2 - $1)" | bc; } # START END -> MiB/s
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A R
for s in raw proxy nbdcrypt librbd; do
  echo "== $s" >&2
  w=() r=()
  for ((i = 0; i < RUNS; i++)); do
    t0=$(now); nbdcopy "$T/src" "${URI[$s]}"; t1=$(now); w+=("$(mibs "$t0" "$t1")")
    t0=$(now); nbdcopy "${URI[$s]}" null:; t1=$(now); r+=("$(mibs "$t0" "$t1")")
  done
  R[$s.copy-write]=$(printf '%s\n' "${w[@]}" | median)
  R[$s.copy-read]=$(printf '%s\n' "${r[@]}" | median)
  for rw in randwrite randread; do
    fio --name=b --ioengine=nbd --uri="${URI[$s]}" --rw=$rw --bs=4k --iodepth=16 \
      --size="$SIZE" --time_based --runtime="$FIO_RUNTIME" --ramp_time=1 \
      --output-format=json >"$T/fio.json"
    R[$s.fio-$rw]=$("$PY" -c '
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]  # after the nbd engine line "connected to NBD server"
print(round(j[sys.argv[2]]["iops"]))' "$T/fio.json" "${rw#rand}")
  done
done

table() {
  echo "RBD image of $((SIZE / MiB)) MiB plaintext, memstore OSD; nbdcopy median of $RUNS runs (MiB/s), fio 4 KiB iodepth 16 ${FIO_RUNTIME} s (IOPS)"
  echo
  echo "| workload | raw (qemu-nbd) | proxy (nbdkit nbd) | nbdcrypt | nbdcrypt/proxy | librbd LUKS2 | librbd/raw |"
  echo "|---|---|---|---|---|---|---|"
  for k in copy-write copy-read fio-randwrite fio-randread; do
    printf '| %s | %s | %s | %s | %s %% | %s | %s %% |\n' "$k" "${R[raw.$k]}" "${R[proxy.$k]}" \
      "${R[nbdcrypt.$k]}" "$(echo "scale=0; 100 * ${R[nbdcrypt.$k]} / ${R[proxy.$k]}" | bc)" "${R[librbd.$k]}" \
      "$(echo "scale=0; 100 * ${R[librbd.$k]} / ${R[raw.$k]}" | bc)"
  done
}
table | tee "${BENCH_REPORT:-/dev/null}"
