#!/usr/bin/env bash
# nbdcrypt-dir@NAME.service, run without systemd: the installed unit's
# ExecStart and ExecStartPost, with DIR= of /etc/nbdcrypt/NAME.conf (here in
# $T), serve a directory of two disks bound to different KEKs, one export
# each under its own DEK, plus a plain image.  ExecStartPost returns 0 once
# nbdkit listens, having unlocked both disks and named the plain export that
# does not unlock (which does not stop the others); each export returns its
# own data; SIGTERM stops nbdkit with status 0.  Without the dir= the
# directory's disks are not served: a conf without DIR= exits 1.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-install.sh"
need cmake nbdkit nbdinfo nbdcopy cmp
: "${NBDCRYPT_FILTER:?run through ctest}"
export NBDCRYPT_FILTER
MiB=$((1024 * 1024))

install_destdir
mkdir -p "$T/etc/nbdcrypt" "$T/vms"
ka=$(nbdcrypt kek create)
kb=$(nbdcrypt kek create)
[ -n "$ka" ] && [ "$ka" != "$kb" ] || fail "kek create gave '$ka' and '$kb'"
nbdcrypt format "$T/vms/a.img" --size 48M --kek "$ka" >/dev/null
nbdcrypt format "$T/vms/b.img" --size 48M --kek "$kb" >/dev/null
truncate -s 16M "$T/vms/plain.img"
head -c $((4 * MiB)) /dev/urandom >"$T/da"
head -c $((4 * MiB)) /dev/urandom >"$T/db"

printf 'DIR=%s\nCONFIG="%s"\nNBDKIT_ARGS="--threads=4"\n' "$T/vms" "$CFG" >"$T/etc/nbdcrypt/vms.conf"
sock=$T/run/nbdcrypt/vms/nbd.sock
euri() { echo "nbd+unix:///$1?socket=$sock"; }

unit_start nbdcrypt-dir@.service vms
unit_ready nbdcrypt-dir@.service vms || {
  sed 's/^/  | /' "$T/vms.ready" "$T/vms.log" >&2
  fail "ExecStartPost failed"
}
grep -qxF "nbdcrypt-service: 2 disk(s) of $T/vms unlocked at start, 1 did not" "$T/vms.ready" ||
  fail "ExecStartPost says: $(cat "$T/vms.ready")"
grep -q "warning: export 'plain.img' does not unlock" "$T/vms.ready" ||
  fail "the plain export is not named: $(cat "$T/vms.ready")"
grep -q "nbdcrypt: export 'plain.img'" "$T/vms.log" || fail "no reason in nbdkit's log for plain.img"
kill -0 "$MAIN" || fail "nbdkit exited"
[ "$(cat "$T/run/nbdcrypt/vms/nbdkit.pid")" = "$MAIN" ] || fail "the pidfile does not hold the main pid"
pass "ready: both disks unlocked, the plain export named"

for e in a b; do
  size=$(nbdinfo --size "$(euri $e.img)") || fail "export $e.img does not answer"
  [ "$size" = $((32 * MiB)) ] || fail "export $e.img: size $size, expected 32 MiB"
  nbdcopy "$T/d$e" "$(euri $e.img)" || fail "write to $e.img failed"
done
for e in a b; do
  nbdcopy "$(euri $e.img)" "$T/back-$e" || fail "read of $e.img failed"
  cmp_range "$T/d$e" 0 "$T/back-$e" 0 $((4 * MiB)) || fail "export $e.img does not return its own data"
done
pass "each export returns its own data"

unit_stop
[ "$RC" = 0 ] || fail "nbdkit stopped with SIGTERM exited $RC"
vka=$(nbdcrypt_volume_key "$T/vms/a.img")
vkb=$(nbdcrypt_volume_key "$T/vms/b.img")
[ ${#vka} = 128 ] && [ "$vka" != "$vkb" ] || fail "a.img and b.img do not have two DEKs"
pass "SIGTERM exits 0; two disks, two DEKs"

printf 'CONFIG=%s\n' "$CFG" >"$T/etc/nbdcrypt/nodir.conf"
rc=0
_unit_run nbdcrypt-dir@.service nodir ExecStart 2>"$T/nodir.err" || rc=$?
[ "$rc" = 1 ] && grep -q "nodir.conf does not set DIR=" "$T/nodir.err" ||
  fail "a conf without DIR=: status $rc, $(cat "$T/nodir.err")"
pass "a conf without DIR= is refused"
