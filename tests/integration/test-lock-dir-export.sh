#!/usr/bin/env bash
# One writer per disk under file dir=: an export's image is locked from its
# first connection on.  Once a.img has been served, recrypt and qemu-io refuse
# it (image unchanged); an image a paused recrypt holds (b.img) is refused as
# that export alone, naming the holder in the server's log, while a.img keeps
# serving; once the recrypt has finished, b.img's export serves.
. "$(dirname "$0")/lib-filter.sh"
need nbdsh qemu-io

dir=$T/vms
mkdir "$dir"
nbdcrypt format "$dir/a.img" --size 48M >/dev/null
nbdcrypt format "$dir/b.img" --size 48M >/dev/null

server_start vms --filter="$NBDCRYPT_FILTER" file dir="$dir"
euri() { echo "nbd+unix:///$1?socket=$T/vms.sock"; }

nbdsh -u "$(euri a.img)" -c 'h.pwrite(b"\xa1" * 65536, 0)'
pid=$(cat "$T/vms.pid")
must_refuse 1 "$dir/a.img is in use by another process \\(pid $pid, nbdkit\\)" "$dir/a.img" -- \
  nbdcrypt recrypt "$dir/a.img"
must_refuse 1 'Failed to get "write" lock' "$dir/a.img" -- qemu-io -f raw -c 'write 0 4096' "$dir/a.img"
pass "a served dir= export's image: recrypt and qemu-io refused, image unchanged"

# A recrypt of b.img paused after its first step (test hook: 20 s per step).
paused_after_first_step recrypt "$dir/b.img"
re_pid=$PAUSED_PID
must_refuse 1 "server has no export named 'b.img'" "$dir/b.img" -- nbdinfo --size "$(euri b.img)"
log_has vms "$dir/b.img is in use by another process \\(pid $re_pid, nbdcrypt\\)" ||
  fail "the server log does not name the recrypt holding b.img"
nbdsh -u "$(euri a.img)" -c 'assert h.pread(65536, 0) == b"\xa1" * 65536'
server_alive vms || fail "the server died"
pass "an export whose image a recrypt holds is refused alone, naming the holder; a.img still serves"

kill -KILL "$re_pid"
wait "$re_pid" 2>/dev/null || true
nbdcrypt recrypt "$dir/b.img" >/dev/null 2>&1 || fail "resuming the killed recrypt of b.img"
# The export's lock is retried on its next connection (unlock retry window: 5 s).
ok=
for ((i = 0; i < 40; i++)); do
  if nbdsh -u "$(euri b.img)" -c 'h.pwrite(b"\xb2" * 4096, 0); assert h.pread(4096, 0) == b"\xb2" * 4096' 2>/dev/null; then
    ok=1
    break
  fi
  sleep 0.25
done
[ -n "$ok" ] || fail "b.img's export does not serve after the recrypt finished"
pass "once the recrypt has finished, b.img's export serves"
server_stop vms
