#!/usr/bin/env bash
# Crash safety of the online recrypt: the server recrypting a 256 MiB disk
# (16 MiB hotzones) under a client's random writes (4..64 KiB, a flush every
# 8 writes) is SIGKILLed at 10 random points; each restart resumes it (the
# default nbdcrypt-reencrypt=resume) and first reads back every block whose
# last write was flushed before the kill: it holds that write, or one of the
# writes issued after it.  At the end the recrypt completes (new volume key,
# no requirement flag, cryptsetup opens it) and the check passes once more.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib-filter.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need cryptsetup

img=$T/disk.img
kek=$(new_disk "$img" 256M)
kek_bytes "$kek" "$T/kek.bin"
vk_old=$(cryptsetup_volume_key "$img" "$T/kek.bin")
journal=$T/journal

# Block contents name their block and the write's generation; the journal
# lists each writer's start ("s"), each write before it is issued ("w BLOCK
# COUNT GEN") and each flush once it returned ("f": the writes since the
# last "f" or "s" are durable).
cat >"$T/io.py" <<'PYEOF'
import hashlib, random, struct, sys, time
import nbd

BS = 4096

def block(i, gen):
    head = struct.pack("<QQ", i, gen)
    return head + hashlib.shake_128(head).digest(BS - 16)

def write(uri, journal, seed):
    h = nbd.NBD()
    h.connect_uri(uri)
    nblocks = h.get_size() // BS
    rnd = random.Random(seed)
    j = open(journal, "a", buffering=1)
    j.write("s\n")  # a new session: what the last one had in flight stays pending
    for count in range(1, 1 << 30):
        n = rnd.choice([1, 1, 2, 4, 16])
        b = rnd.randrange(nblocks - n)
        gen = seed * 10**7 + count
        j.write("w %d %d %d\n" % (b, n, gen))
        j.flush()
        h.pwrite(b"".join(block(b + k, gen) for k in range(n)), b * BS)
        time.sleep(0.002)  # a steady writer; keeps the journal and its checks small
        if count % 8 == 0:
            h.flush()
            j.write("f\n")
            j.flush()

def check(uri, journal):
    writes = {}  # block -> [(gen, durable)]
    pending = []
    for line in open(journal):
        f = line.split()
        if not f or (f[0] == "w" and len(f) != 4):
            continue  # the line the kill cut short
        if f[0] == "s":
            pending = []
        elif f[0] == "f":
            for b, gen in pending:
                writes[b][writes[b].index((gen, False))] = (gen, True)
            pending = []
        else:
            b0, n, gen = int(f[1]), int(f[2]), int(f[3])
            for b in range(b0, b0 + n):
                writes.setdefault(b, []).append((gen, False))
                pending.append((b, gen))
    h = nbd.NBD()
    h.connect_uri(uri)
    checked = 0
    for b, ws in sorted(writes.items()):
        last = max((k for k, (_, d) in enumerate(ws) if d), default=None)
        if last is None:
            continue
        allowed = {g for g, _ in ws[last:]}
        data = h.pread(BS, b * BS)
        i, gen = struct.unpack("<QQ", data[:16])
        if i != b or gen not in allowed or data != block(b, gen):
            sys.exit("block %d: holds %s, expected one of generations %s"
                     % (b, "generation %d" % gen if i == b else "something else", sorted(allowed)))
        checked += 1
    print(checked)

if sys.argv[1] == "write":
    write(sys.argv[2], sys.argv[3], int(sys.argv[4]))
else:
    check(sys.argv[2], sys.argv[3])
PYEOF
io() { "$PY" "$T/io.py" "$@"; }

: >"$journal"
half_way=0 checked=0
for cycle in $(seq 1 10); do
  args=()
  [ "$cycle" = 1 ] && args=(nbdcrypt-reencrypt=recrypt)
  export NBDCRYPT_TEST_HOTZONE_DELAY_MS=3000
  serve k$cycle "$img" "${args[@]}"
  unset NBDCRYPT_TEST_HOTZONE_DELAY_MS
  n=$(io check "$(uri k$cycle)" "$journal") || fail "after kill $((cycle - 1)): flushed data lost"
  checked=$((checked + n))
  io write "$(uri k$cycle)" "$journal" "$cycle" 2>/dev/null &
  writer=$!
  sleep "$((RANDOM % 15 + 2))e-1"
  kill -KILL "$(cat "$T/k$cycle.pid")"
  wait "$writer" 2>/dev/null && fail "the writer did not see the server die"
  server_stop k$cycle 2>/dev/null || true
  [ -n "$(requirements "$img")" ] && half_way=$((half_way + 1))
done
[ "$half_way" -ge 6 ] || fail "only $half_way of 10 kills hit the recrypt half way"
pass "10 SIGKILLs ($half_way of them with the recrypt half way), each restart resumed and found every flushed write ($checked block checks)"

# A slow machine may let the recrypt finish during the last cycles (each
# server recrypts while it checks the journal): then that server said so.
if [ -n "$(requirements "$img")" ]; then
  serve last "$img"
  io check "$(uri last)" "$journal" >/dev/null || fail "after the last kill: flushed data lost"
  for i in $(seq 1200); do log_has last "recrypt of disk .* finished" && break; sleep 0.1; done
  log_has last "recrypt of disk .* finished" ||
    { grep -v debug "$T/last.log" | grep nbdcrypt: >&2 || true; nbdcrypt info "$img" | grep operation >&2 || true
      fail "the recrypt did not finish within 120 s"; }
else
  grep -l "recrypt of disk .* finished" "$T"/k*.log >/dev/null ||
    { grep -h -v debug "$T"/k*.log | grep nbdcrypt: >&2 || true
      fail "no requirement flag is left, but no server said that the recrypt finished"; }
  serve last "$img"
fi
io check "$(uri last)" "$journal" >/dev/null || fail "after the recrypt finished: flushed data lost"
server_stop last
[ -z "$(requirements "$img")" ] || fail "requirement flag left"
vk_new=$(cryptsetup_volume_key "$img" "$T/kek.bin")
[ -n "$vk_new" ] && [ "$vk_new" != "$vk_old" ] || fail "the volume key did not change"
cryptsetup open --test-passphrase --key-file "$T/kek.bin" "$img" || fail "cryptsetup cannot open it"
pass "the resumed recrypt completed: new volume key, cryptsetup opens it, every flushed write intact"
