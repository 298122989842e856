#!/usr/bin/env bash
# The installed systemd units (an instance of each template) pass
# `systemd-analyze verify` without a single message: every directive known to
# systemd 252, the commands executable at their installed paths, the man
# pages of Documentation= found.  systemd-analyze needs no running systemd:
# it loads the units from a root that holds the DESTDIR install and a copy
# of the system's own units (the targets ours are ordered after).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-install.sh"
need cmake systemd-analyze man

install_destdir
sysunits=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
[ -f "$sysunits/sysinit.target" ] || fail "no sysinit.target in $sysunits"
mkdir -p "$ROOT$sysunits"
cp -a "$sysunits/." "$ROOT$sysunits/"
# The install's units must not have been replaced by the system's copies.
grep -q '^ExecStart=/usr/libexec/nbdcrypt/nbdcrypt-service disk %i$' "$UNITDIR/nbdcrypt@.service" ||
  fail "nbdcrypt@.service is not the installed one"

# Documentation= is checked against the installed pages (none with NBDCRYPT_MAN=OFF).
man=--man=yes
grep -q '^NBDCRYPT_MAN:BOOL=OFF$' "$NBDCRYPT_BUILDDIR/CMakeCache.txt" && man=--man=no
for unit in nbdcrypt@vm1.service nbdcrypt-dir@vms.service; do
  rc=0
  MANPATH=$ROOT/usr/share/man systemd-analyze verify "$man" --root="$ROOT" "$unit" >"$T/verify.out" 2>&1 ||
    rc=$?
  if [ $rc != 0 ] || [ -s "$T/verify.out" ]; then
    sed 's/^/  | /' "$T/verify.out" >&2
    fail "systemd-analyze verify $unit: status $rc"
  fi
  pass "systemd-analyze verify $unit"
done
