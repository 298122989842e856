#!/usr/bin/env bash
# Over nbdkit's nbd plugin with dynamic-export=true (each client's export
# name passed on to the remote server, here qemu-nbd serving a disk as export
# "vm1") the filter starts without opening the plugin (it used to die on an
# assertion) and the export reads and writes correctly, aligned and not; an
# export the remote server lacks is refused and the server stays up.  The
# disk then reads back the same when served by the file plugin.
. "$(dirname "$0")/lib-filter.sh"
need qemu-nbd nbdcopy nbdinfo nbdsh cmp

MiB=$((1024 * 1024))
img=$T/disk.img
new_disk "$img" 64M >/dev/null
head -c $((16 * MiB)) /dev/urandom >"$T/plain"

qnbd_start q raw "$img" -x vm1
server_start dyn --filter="$NBDCRYPT_FILTER" nbd socket="$T/q.qsock" dynamic-export=true
euri() { echo "nbd+unix:///$1?socket=$T/dyn.sock"; }

nbdcopy --connections=2 "$T/plain" "$(euri vm1)"
nbdsh -u "$(euri vm1)" -c '
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
h.pwrite(b"\x5a" * 100, 4000)
h.pwrite(b"\xa5" * 513, 1234567)
h.flush()
'
"$PY" - "$T/plain" <<'PYEOF'
import sys
p = bytearray(open(sys.argv[1], "rb").read())
p[4000:4100] = b"\x5a" * 100
p[1234567:1234567 + 513] = b"\xa5" * 513
open(sys.argv[1], "wb").write(p)
PYEOF
nbdcopy --connections=2 "$(euri vm1)" "$T/back"
cmp_range "$T/back" 0 "$T/plain" 0 $((16 * MiB)) || fail "export vm1 does not read back what was written"
server_alive dyn || fail "server died"
pass "nbd dynamic-export=true: 16 MiB plus unaligned writes read back through export vm1"

must_refuse 1 "server has no export named 'nosuch'" - -- nbdinfo --size "$(euri nosuch)"
server_alive dyn || fail "server died on an export the remote server lacks"
nbdsh -u "$(euri vm1)" -c 'assert h.pread(100, 4000) == b"\x5a" * 100' || fail "vm1 after the refusal"
n=$(grep -c "nbdcrypt: unlocked disk [^ ]* for export 'vm1'" "$T/dyn.log" || true)
conns=$(grep -c 'nbdcrypt: open readonly=[01] exportname="vm1"' "$T/dyn.log" || true)
[ "$n" = 1 ] && [ "$conns" -ge 3 ] || fail "vm1 unlocked $n times for $conns connections"
pass "an export qemu-nbd lacks is refused, the server stays up; vm1 unlocked once for $conns connections"
server_stop dyn
qnbd_stop q

serve alone "$img"
nbdcopy "$(uri alone)" "$T/alone"
server_stop alone
cmp_range "$T/alone" 0 "$T/plain" 0 $((16 * MiB)) || fail "the disk served by the file plugin differs"
pass "the disk served by the file plugin afterwards reads back the same"
