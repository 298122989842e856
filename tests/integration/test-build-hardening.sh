#!/usr/bin/env bash
# A release build is hardened: nbdcrypt is a PIE, and it, the filter and the
# token plugin are linked with full RELRO (a GNU_RELRO segment, BIND_NOW);
# nbdcrypt calls glibc's checked functions (_FORTIFY_SOURCE) and the stack
# protector; the compile flags say _FORTIFY_SOURCE=3 where glibc has it
# (2.34 and later).  Skipped in Debug and sanitizer builds, which are not.
. "$(dirname "$0")/lib.sh"
: "${NBDCRYPT_BUILDDIR:?run through ctest}"
need readelf nm
cache=$NBDCRYPT_BUILDDIR/CMakeCache.txt
cached() { sed -n "s/^$1:[A-Z]*=//p" "$cache"; }
type=$(cached CMAKE_BUILD_TYPE)
case $type in
Release | RelWithDebInfo | MinSizeRel) ;;
*) echo "skip: a $type build is not hardened"; exit 77 ;;
esac
[ "$(cached NBDCRYPT_SANITIZE)" != ON ] || { echo "skip: sanitizer build"; exit 77; }
[ "$(cached NBDCRYPT_HARDEN)" != OFF ] || fail "NBDCRYPT_HARDEN=OFF in a $type build"

exe=$NBDCRYPT
filter=$NBDCRYPT_BUILDDIR/plugins/nbdkit-nbdcrypt-filter.so
token=$NBDCRYPT_BUILDDIR/plugins/libcryptsetup-token-nbdcrypt.so
readelf -h "$exe" | grep -q 'Type: *DYN' || fail "$exe is not position-independent"
readelf -d "$exe" | grep -q 'FLAGS_1.*PIE' || fail "$exe has no PIE flag"
for f in "$exe" "$filter" "$token"; do
  readelf -lW "$f" | grep -q GNU_RELRO || fail "$(basename "$f"): no GNU_RELRO segment"
  readelf -d "$f" | grep -Eq '\(FLAGS\).*BIND_NOW|FLAGS_1.*NOW' || fail "$(basename "$f"): not linked -z now"
done
syms=$(nm -D --undefined-only "$exe")
grep -q '__stack_chk_fail' <<<"$syms" || fail "nbdcrypt does not use the stack protector"
grep -Eq '__(memcpy|snprintf|vsnprintf|read|fprintf)_chk' <<<"$syms" ||
  fail "nbdcrypt calls none of glibc's checked functions (_FORTIFY_SOURCE)"

flags=$NBDCRYPT_BUILDDIR/CMakeFiles/nbdcrypt.dir/flags.make
glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
want=2
[ "$(printf '%s\n2.34\n' "$glibc" | sort -V | head -1)" = 2.34 ] && want=3
grep -q -- "-D_FORTIFY_SOURCE=$want" "$flags" ||
  fail "glibc $glibc: expected -D_FORTIFY_SOURCE=$want in $(grep -o -- '-D_FORTIFY_SOURCE=[0-9]' "$flags")"
grep -q -- '-fstack-protector-strong' "$flags" || fail "no -fstack-protector-strong in the compile flags"
pass "hardened $type build: PIE, relro/now, stack protector, _FORTIFY_SOURCE=$want (glibc $glibc)"
