#!/usr/bin/env bash
# A real install (`cmake --install build --prefix /usr`, no DESTDIR) is what a
# host gets: nbdkit then finds the filter by its name (`--filter=nbdcrypt`),
# `man nbdkit-nbdcrypt-filter` and `man nbdcrypt` find their pages, the
# installed nbdcrypt runs from PATH; and the uninstall target removes every
# file the install put down.  The test refuses to run (fails) when any of
# those files exists already: it never overwrites nor removes a file it did
# not install.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib.sh"
: "${NBDCRYPT_BUILDDIR:?run through ctest (NBDCRYPT_BUILDDIR is the build directory)}"
need cmake man nbdkit
[ "$(id -u)" = 0 ] || fail "a real install into /usr needs root (CI runs as root)"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

# What the install would put down: a DESTDIR install of the same build lists it.
manifest=$NBDCRYPT_BUILDDIR/install_manifest.txt
if [ -f "$manifest" ]; then
  cp -p "$manifest" "$T/install_manifest.saved"
  on_exit 'cp -p "$T/install_manifest.saved" "$NBDCRYPT_BUILDDIR/install_manifest.txt"'
else
  on_exit 'rm -f "$NBDCRYPT_BUILDDIR/install_manifest.txt"'
fi
DESTDIR=$T/probe cmake --install "$NBDCRYPT_BUILDDIR" --prefix /usr >"$T/probe.log" 2>&1 ||
  fail "cmake --install into a DESTDIR failed: $(tail -5 "$T/probe.log")"
sort "$manifest" >"$T/files"
[ -s "$T/files" ] || fail "the install lists no files"
while read -r f; do
  [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f exists already; not installing over it"
done <"$T/files"

# From here on a failure must still uninstall what was installed.
on_exit 'xargs -r -d "\n" rm -f <"$T/files"'
cmake --install "$NBDCRYPT_BUILDDIR" --prefix /usr >"$T/install.log" 2>&1 ||
  fail "cmake --install --prefix /usr failed: $(tail -5 "$T/install.log")"
diff <(sort "$manifest") "$T/files" >&2 || fail "the real install put down other files than the DESTDIR one"

# nbdkit finds the filter by name in its filter directory.
out=$(nbdkit --filter=nbdcrypt memory 1G --help 2>&1) ||
  fail "nbdkit --filter=nbdcrypt memory 1G --help failed: $out"
grep -q 'nbdcrypt-config=' <<<"$out" || fail "nbdkit --filter=nbdcrypt --help does not show the filter's keys: $out"
pass "nbdkit --filter=nbdcrypt loads the installed filter by name"

# The installed CLI runs from PATH, and man finds the pages by name.
[ "$(type -P nbdcrypt)" = /usr/bin/nbdcrypt ] || fail "nbdcrypt on PATH is $(type -P nbdcrypt), not /usr/bin/nbdcrypt"
command nbdcrypt --version | grep -q '^nbdcrypt [0-9]' || fail "the installed nbdcrypt does not run"
if grep -q '^NBDCRYPT_MAN:BOOL=OFF$' "$NBDCRYPT_BUILDDIR/CMakeCache.txt"; then
  fail "this build installs no man pages (NBDCRYPT_MAN=OFF: pandoc missing?)"
fi
for page in nbdkit-nbdcrypt-filter nbdcrypt; do
  where=$(man -w "$page" 2>&1) || fail "man -w $page: $where"
  [ "$where" = "/usr/share/man/man1/$page.1" ] || fail "man -w $page finds $where"
  LC_ALL=C MANWIDTH=100 MANPAGER=cat man "$page" >"$T/$page.txt" 2>"$T/man.err" ||
    fail "man $page failed: $(cat "$T/man.err")"
  # (grep reads all of it: grep -q would end a pipe early and col see SIGPIPE)
  [ "$(col -bx <"$T/$page.txt" | grep -Ec "^ +$page +- ")" -ge 1 ] || fail "man $page shows no NAME line"
done
pass "man nbdkit-nbdcrypt-filter and man nbdcrypt show the installed pages"

cmake --build "$NBDCRYPT_BUILDDIR" --target uninstall >"$T/uninstall.log" 2>&1 ||
  fail "the uninstall target failed: $(tail -5 "$T/uninstall.log")"
while read -r f; do
  [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is left after uninstall"
done <"$T/files"
nbdkit --filter=nbdcrypt memory 1G --help >/dev/null 2>&1 && fail "nbdkit still finds the filter after uninstall"
pass "uninstall removed the $(wc -l <"$T/files") installed files"
