#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# Destructive commands ask as cryptsetup does when stdin is a terminal (a
# real pty here): "Are you sure? (Type 'yes' in capital letters)".  YES goes
# on; anything else aborts with exit 1 and the image unchanged.
# --batch-mode, -q and --yes skip the question; without a terminal nothing
# is asked (as cryptsetup).  Covered: format --force over a disk, decrypt,
# kek destroy --force.
. "$(dirname "$0")/lib.sh"

# on_tty ANSWER CMD...: run CMD with stdin a pty (stdout, stderr: files
# $T/tty.out, $T/tty.err); once the question is on stderr, type ANSWER and
# a newline (ANSWER "-": expect no question).  Exit status: CMD's; CMD's
# stderr is copied to ours at the end.
on_tty() {
  "$PY" - "$T" "$@" <<'PYEOF'
import os, subprocess, sys, time
tdir, answer, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
master, slave = os.openpty()
with open(tdir + "/tty.out", "wb") as out, open(tdir + "/tty.err", "wb") as err:
    p = subprocess.Popen(cmd, stdin=slave, stdout=out, stderr=err, start_new_session=True)
os.close(slave)
deadline = time.monotonic() + 15
if answer != "-":
    while b"Are you sure? (Type 'yes' in capital letters): " not in open(tdir + "/tty.err", "rb").read():
        if p.poll() is not None:
            sys.exit("ended without asking: " + open(tdir + "/tty.err").read())
        if time.monotonic() > deadline:
            p.kill(); sys.exit("no question within 15 s")
        time.sleep(0.02)
    os.write(master, answer.encode() + b"\n")
try:
    rc = p.wait(timeout=max(1, deadline - time.monotonic()))
except subprocess.TimeoutExpired:
    p.kill(); sys.exit("did not end within 15 s")
sys.stderr.write(open(tdir + "/tty.err", errors="replace").read())  # for must_refuse
sys.exit(rc)
PYEOF
}

asked() { grep -q "Are you sure? (Type 'yes' in capital letters)" "$T/tty.err"; }

# format --force over a LUKS2 disk
nbdcrypt format "$T/disk.img" --size 32M >/dev/null
for answer in yes no "" "YES please"; do
  must_refuse 1 "operation aborted: not confirmed \(type YES to go on\); nothing was changed" \
    "$T/disk.img" -- on_tty "$answer" "$NBDCRYPT" format "$T/disk.img" --force
done
grep -q "This will overwrite data on $T/disk.img irrevocably: it holds" "$T/tty.err" ||
  fail "the question does not say what is overwritten: $(cat "$T/tty.err")"
pass "format --force on a terminal: an answer other than YES aborts, disk unchanged"

before=$(sha_file "$T/disk.img")
on_tty YES "$NBDCRYPT" format "$T/disk.img" --force || fail "format --force answered YES: $(cat "$T/tty.err")"
[ "$(sha_file "$T/disk.img")" != "$before" ] || fail "YES did not format"
nbdcrypt check "$T/disk.img" >/dev/null || fail "the disk formatted after YES does not unlock"
pass "format --force on a terminal: YES formats"

for opt in --batch-mode -q --yes; do
  before=$(sha_file "$T/disk.img")
  on_tty - "$NBDCRYPT" format "$T/disk.img" --force $opt || fail "format $opt: $(cat "$T/tty.err")"
  if asked; then fail "format $opt asked"; fi
  [ "$(sha_file "$T/disk.img")" != "$before" ] || fail "format $opt did not format"
done
on_tty - "$NBDCRYPT" --batch-mode format "$T/disk.img" --force || fail "nbdcrypt --batch-mode format"
if asked; then fail "nbdcrypt --batch-mode format asked"; fi
before=$(sha_file "$T/disk.img")
nbdcrypt format "$T/disk.img" --force </dev/null >/dev/null || fail "format --force without a terminal"
[ "$(sha_file "$T/disk.img")" != "$before" ] || fail "format --force without a terminal did not format"
pass "--batch-mode, -q, --yes and no terminal: no question"

# decrypt
must_refuse 1 "operation aborted" "$T/disk.img" -- on_tty no "$NBDCRYPT" decrypt "$T/disk.img"
grep -q "This decrypts $T/disk.img in place" "$T/tty.err" || fail "decrypt question: $(cat "$T/tty.err")"
on_tty YES "$NBDCRYPT" decrypt "$T/disk.img" || fail "decrypt answered YES: $(cat "$T/tty.err")"
nbdcrypt info "$T/disk.img" >/dev/null 2>&1 && fail "the disk still has a LUKS2 header after decrypt"
pass "decrypt on a terminal asks; YES decrypts"

# kek destroy --force
kek=$(nbdcrypt kek create)
must_refuse 1 "operation aborted" "$KEYSTORE" -- on_tty NO "$NBDCRYPT" kek destroy "$kek" --force
grep -q "This destroys kek $kek for good" "$T/tty.err" || fail "destroy question: $(cat "$T/tty.err")"
nbdcrypt kek list | grep -q "^$kek " || fail "kek $kek gone after an aborted destroy"
on_tty YES "$NBDCRYPT" kek destroy "$kek" --force || fail "destroy answered YES: $(cat "$T/tty.err")"
if nbdcrypt kek list 2>/dev/null | grep -q "^$kek "; then fail "kek $kek still there after YES"; fi
pass "kek destroy --force on a terminal asks; YES destroys"
