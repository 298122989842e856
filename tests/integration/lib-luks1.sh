# Helpers for the LUKS1 tests (sourced after lib.sh or lib-filter.sh).

# qemu_luks1 IMAGE SIZE PASSFILE: a LUKS1 disk made by qemu-img create -f luks
# (aes-256-xts-plain64, pbkdf2-sha256) with a short PBKDF2 benchmark.  qemu's
# benchmark now and then fails with "Unable to get accurate CPU usage" on a
# loaded machine (a thread charged no CPU tick for its first round): up to ten tries.
qemu_luks1() {
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    rm -f "$1"
    if qemu-img create -q -f luks --object "secret,id=s0,file=$3" \
      -o key-secret=s0,iter-time=10 "$1" "$2" 2>"$T/qemu-img.err"; then
      return 0
    fi
    grep -q "Unable to get accurate CPU usage" "$T/qemu-img.err" || break
  done
  cat "$T/qemu-img.err" >&2
  fail "qemu-img create -f luks failed"
}
