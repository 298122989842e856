#!/usr/bin/env bash
# Concurrency: 8 connections at once, each with 16 requests in flight, write
# sub-sector ranges (unaligned, sharing every 4 KiB sector with the other
# writers) while another connection writes whole sectors in between.  The
# result is what a sequential model predicts for every sector: no writer's
# bytes are lost to another's read-modify-write and no sector is torn.
# Overlapping writes of two connections to the same bytes leave exactly one
# of the two patterns, never a mixture.
. "$(dirname "$0")/lib-filter.sh"
need nbdsh

img=$T/disk.img
new_disk "$img" 64M >/dev/null
serve c "$img" --threads=16

"$PY" - "$(uri c)" <<'PYEOF' || fail "concurrency"
import multiprocessing as mp
import random
import sys

import nbd

URI = sys.argv[1]
SS = 4096
WRITERS = 8
ROUNDS = 3
SECTORS = 96          # region A: sub-sector writers only
B0, BN = 96, 64       # region B: odd sectors sub-sector, even sectors whole
C0, CN = 160, 32      # region C: two writers, same bytes
INFLIGHT = 16
BG = 0x77


def connect():
    h = nbd.NBD()
    h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
    h.connect_uri(URI)
    return h


def slot(k):
    """Writer k's byte range inside a sector: disjoint, unaligned at both ends."""
    return k * 512 + (k % 3), (k + 1) * 512 - 1 - (k % 2)


def value(k, rnd):
    return (k + 1) + 16 * rnd


def run(h, reqs):
    """Issue (offset, data) writes with at most INFLIGHT in flight."""
    pending = []
    for off, data in reqs:
        while len(pending) >= INFLIGHT:
            h.poll(-1)
            pending = [c for c in pending if not h.aio_command_completed(c)]
        pending.append(h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), off))
    while pending:
        h.poll(-1)
        pending = [c for c in pending if not h.aio_command_completed(c)]


def sub_writer(k, barrier):
    h = connect()
    barrier.wait()
    rng = random.Random(k)
    for rnd in range(ROUNDS):
        lo, hi = slot(k)
        secs = list(range(SECTORS)) + [s for s in range(B0, B0 + BN) if s % 2]
        rng.shuffle(secs)
        run(h, [(s * SS + lo, bytes([value(k, rnd)]) * (hi - lo)) for s in secs])
    h.flush()
    h.shutdown()


def whole_writer(barrier):
    h = connect()
    barrier.wait()
    for rnd in range(ROUNDS):
        run(h, [(s * SS, bytes([0xE0 + rnd]) * SS) for s in range(B0, B0 + BN) if s % 2 == 0])
    h.flush()
    h.shutdown()


def overlap_writer(k, barrier):
    h = connect()
    barrier.wait()
    for rnd in range(ROUNDS * 4):
        run(h, [(s * SS + 100 + k, bytes([0xA0 + k]) * 1000) for s in range(C0, C0 + CN)])
    h.flush()
    h.shutdown()


h = connect()
h.pwrite(bytes([BG]) * ((C0 + CN) * SS), 0)
h.flush()

barrier = mp.Barrier(WRITERS + 3)
procs = [mp.Process(target=sub_writer, args=(k, barrier)) for k in range(WRITERS)]
procs.append(mp.Process(target=whole_writer, args=(barrier,)))
procs += [mp.Process(target=overlap_writer, args=(k, barrier)) for k in (0, 1)]
for p in procs:
    p.start()
for p in procs:
    p.join(timeout=240)
    if p.exitcode != 0:
        sys.exit("a writer failed (exit code %r)" % p.exitcode)

data = h.pread((C0 + CN) * SS, 0)
errors = 0


def expect_sector(s, exp):
    global errors
    got = data[s * SS:(s + 1) * SS]
    if got != exp:
        errors += 1
        if errors <= 5:
            bad = next(i for i in range(SS) if got[i] != exp[i])
            print("sector %d differs at byte %d: got %#x, expected %#x"
                  % (s, bad, got[bad], exp[bad]), file=sys.stderr)


model = bytearray([BG]) * SS
for k in range(WRITERS):
    lo, hi = slot(k)
    model[lo:hi] = bytes([value(k, ROUNDS - 1)]) * (hi - lo)
for s in list(range(SECTORS)) + [s for s in range(B0, B0 + BN) if s % 2]:
    expect_sector(s, bytes(model))
for s in range(B0, B0 + BN, 2):
    expect_sector(s, bytes([0xE0 + ROUNDS - 1]) * SS)
for s in range(C0, C0 + CN):
    sec = data[s * SS:(s + 1) * SS]
    # The final content is writer 0's or writer 1's last write, whole.
    options = []
    for last in (0, 1):
        m = bytearray([BG]) * SS
        first = 1 - last
        m[100 + first:100 + first + 1000] = bytes([0xA0 + first]) * 1000
        m[100 + last:100 + last + 1000] = bytes([0xA0 + last]) * 1000
        options.append(bytes(m))
    if sec not in options:
        errors += 1
        print("sector %d: overlapping writes left a mixture" % s, file=sys.stderr)
if errors:
    sys.exit("%d sectors differ from the sequential model" % errors)
print("%d sectors as the model predicts" % (C0 + CN))
PYEOF
server_alive c || fail "server died"
pass "8 sub-sector writers + 1 whole-sector writer + 2 overlapping writers: every sector as predicted"
