#!/usr/bin/env bash
# Bad input never crashes the server: a disk that is not LUKS2, a truncated
# disk, a wrong KEK, a KEK id missing from the keystore, I/O errors from the plugin (nbdkit's error filter
# beneath ours).  Each gives the client an error and the log a clear line,
# and the server takes the next connection.  An unaligned FUA write works.
# A server started without its KEK recovers once the KEK is back.
. "$(dirname "$0")/lib-filter.sh"
need nbdinfo nbdsh cryptsetup

MiB=$((1024 * 1024))

# expect_refused NAME REGEX: connecting fails, the log says REGEX, the
# server is still up (and refuses a second time the same way).
expect_refused() {
  local name=$1 re=$2 i
  for i in 1 2; do
    if nbdinfo --size "$(uri "$name")" >/dev/null 2>"$T/client.err"; then
      fail "$name: connection $i succeeded"
    fi
    server_alive "$name" || fail "$name: server died after connection $i"
  done
  log_has "$name" "$re" || { sed 's/^/  | /' "$T/$name.log" | grep -v "debug:" >&2; fail "$name: log lacks /$re/"; }
  pass "$name: refused, server up, log: $(grep -Em1 -- "$re" "$T/$name.log" | sed 's/^nbdkit: //')"
}

# Not LUKS2 at all.
head -c $((32 * MiB)) /dev/urandom >"$T/random.img"
serve notluks "$T/random.img"
expect_refused notluks "export '': cannot unlock: .*(no LUKS2 header|not a LUKS)"
server_stop notluks

# A good disk, and a truncated copy (header intact, keyslots area cut).
img=$T/good.img
kek=$(new_disk "$img" 64M)
head -c $((1 * MiB)) "$img" >"$T/trunc.img"
serve trunc "$T/trunc.img"
expect_refused trunc "nbdcrypt: .*(beyond end|truncated|too small|short)"
server_stop trunc
uuid=$(nbdcrypt info "$img" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')

# A disk whose KEK id is missing from the keystore: the error names the disk
# uuid, the provider and the KEK id.
cp "$KEYSTORE" "$T/keystore.saved"
"$PY" - "$KEYSTORE" <<'PYEOF'
import json, sys
store = json.load(open(sys.argv[1]))
store["keys"].clear()
json.dump(store, open(sys.argv[1], "w"))
PYEOF
serve nokek "$img"
expect_refused nokek "export '': cannot unlock: .*$kek"
log_has nokek "$uuid" || fail "the error does not name the disk uuid $uuid"
log_has nokek "local" || fail "the error does not name the provider"
pass "missing KEK: the error names disk $uuid, provider local and KEK $kek"

# The KEK comes back (the KMS recovers): a connection after the retry
# interval unlocks without restarting nbdkit.
cp "$T/keystore.saved" "$KEYSTORE"
sleep 5.5
nbdinfo --size "$(uri nokek)" >/dev/null || fail "no recovery after the KEK came back"
n=$(grep -c "nbdcrypt: unlocked disk" "$T/nokek.log" || true)
[ "$n" = 1 ] || fail "unlocked $n times"
pass "a server started without its KEK unlocks once the KEK is back"
server_stop nokek

# A wrong KEK: same id, other key bytes.
"$PY" - "$KEYSTORE" "$kek" <<'PYEOF'
import base64, json, os, sys
store = json.load(open(sys.argv[1]))
store["keys"][sys.argv[2]]["key"] = base64.b64encode(os.urandom(32)).decode()
json.dump(store, open(sys.argv[1], "w"))
PYEOF
serve wrongkek "$img"
expect_refused wrongkek "export '': cannot unlock: .*(wrong|no keyslot|does not match|mismatch)"
server_stop wrongkek
cp "$T/keystore.saved" "$KEYSTORE"

# I/O errors from the plugin, injected beneath our filter once unlocked.
serve eio "$img" --filter=error error-rate=1 error-file="$T/inject" error=EIO
nbdsh -u "$(uri eio)" -c 'h.pwrite(b"\x11" * 8192, 0); h.flush()' || fail "write before errors"
touch "$T/inject"
for op in 'h.pread(4096, 0)' 'h.pread(100, 1000)' 'h.pwrite(b"x" * 4096, 0)' \
          'h.pwrite(b"x" * 700, 1000)' 'h.zero(4096, 8192)' 'h.zero(100, 8190)'; do
  if nbdsh -u "$(uri eio)" -c "h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN); $op" \
      2>"$T/client.err"; then
    fail "$op succeeded with injected EIO"
  fi
  grep -q "Input/output error" "$T/client.err" || fail "$op: client error: $(cat "$T/client.err")"
  server_alive eio || fail "server died on $op with injected EIO"
done
rm "$T/inject"
nbdsh -u "$(uri eio)" -c 'assert h.pread(8192, 0) == b"\x11" * 8192' ||
  fail "data wrong after the errors stopped"
log_has eio "nbdcrypt: plugin (read|write) of" || fail "no log line of ours for the I/O errors"
pass "plugin I/O errors reach the client as EIO, logged, server up, data intact"
server_stop eio

# An unaligned write with FUA succeeds (nbdkit's luks filter aborts here).
serve fua "$img"
nbdsh -u "$(uri fua)" -c '
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
assert h.can_fua()
h.pwrite(b"\xfa" * 4097, 4095, nbd.CMD_FLAG_FUA)
h.pwrite(b"\xfb" * 3, 10, nbd.CMD_FLAG_FUA)
assert h.pread(4097, 4095) == b"\xfa" * 4097
assert h.pread(3, 10) == b"\xfb" * 3
' || fail "unaligned FUA write"
server_alive fua || fail "server died on an unaligned FUA write"
pass "unaligned writes with FUA succeed"
server_stop fua
