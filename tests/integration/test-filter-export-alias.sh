#!/usr/bin/env bash
# Two export names of one image (the file plugin with file= ignores the
# export name): each name is its own export entry, but both are the same
# disk, so they share one read-modify-write lock.  8 connections, half under
# each name, 16 requests in flight each, write disjoint sub-sector ranges of
# the same sectors, plus whole-sector writes under a third name in between:
# every sector ends as the sequential model predicts (no writer's bytes lost
# to a read-modify-write under the other name).
. "$(dirname "$0")/lib-filter.sh"
need nbdsh

img=$T/disk.img
new_disk "$img" 64M >/dev/null
serve al "$img" --threads=16

"$PY" - "$T/al.sock" <<'PYEOF' || fail "concurrent writes under two names of one disk"
import multiprocessing as mp
import random
import sys

import nbd

SOCK = sys.argv[1]
SS = 4096
WRITERS = 8
ROUNDS = 6
SECTORS = 512         # odd sectors: sub-sector writers; even: whole-sector writer
INFLIGHT = 16
BG = 0x77


def connect(name):
    h = nbd.NBD()
    h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
    h.set_export_name(name)
    h.connect_unix(SOCK)
    return h


def slot(k):
    return k * 512 + (k % 3), (k + 1) * 512 - 1 - (k % 2)


def run(h, reqs):
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
    h = connect("one" if k % 2 == 0 else "two")
    barrier.wait()
    rng = random.Random(k)
    for rnd in range(ROUNDS):
        lo, hi = slot(k)
        secs = list(range(1, SECTORS, 2))
        rng.shuffle(secs)
        run(h, [(s * SS + lo, bytes([k + 1 + 16 * rnd]) * (hi - lo)) for s in secs])
    h.flush()
    h.shutdown()


def whole_writer(barrier):
    h = connect("three")
    barrier.wait()
    for rnd in range(ROUNDS):
        run(h, [(s * SS, bytes([0xE0 + rnd]) * SS) for s in range(0, SECTORS, 2)])
    h.flush()
    h.shutdown()


h = connect("one")
h.pwrite(bytes([BG]) * (SECTORS * SS), 0)
h.flush()
barrier = mp.Barrier(WRITERS + 1)
procs = [mp.Process(target=sub_writer, args=(k, barrier)) for k in range(WRITERS)]
procs.append(mp.Process(target=whole_writer, args=(barrier,)))
for p in procs:
    p.start()
for p in procs:
    p.join(timeout=240)
    if p.exitcode != 0:
        sys.exit("a writer failed (exit code %r)" % p.exitcode)

data = connect("two").pread(SECTORS * SS, 0)
model = bytearray([BG]) * SS
for k in range(WRITERS):
    lo, hi = slot(k)
    model[lo:hi] = bytes([k + 1 + 16 * (ROUNDS - 1)]) * (hi - lo)
errors = 0
for s in range(SECTORS):
    exp = bytes(model) if s % 2 else bytes([0xE0 + ROUNDS - 1]) * SS
    got = data[s * SS:(s + 1) * SS]
    if got != exp:
        errors += 1
        if errors <= 5:
            bad = next(i for i in range(SS) if got[i] != exp[i])
            print("sector %d differs at byte %d: got %#x, expected %#x"
                  % (s, bad, got[bad], exp[bad]), file=sys.stderr)
if errors:
    sys.exit("%d of %d sectors differ from the sequential model" % (errors, SECTORS))
PYEOF
server_alive al || fail "server died"
for e in one two three; do
  n=$(grep -c "nbdcrypt: unlocked disk [^ ]* for export '$e'" "$T/al.log" || true)
  [ "$n" = 1 ] || fail "export $e unlocked $n times"
done
n=$(grep -c "nbdcrypt: export '[a-z]*' is disk [^ ]*, as export '[a-z]*': one lock for both" "$T/al.log" || true)
[ "$n" = 2 ] || fail "$n exports share a read-modify-write lock, expected 2 (two and three with one)"
pass "3 names of one disk share one lock: 8 sub-sector writers under 2 names + whole-sector writes: every sector as predicted"
