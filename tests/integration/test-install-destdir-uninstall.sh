#!/usr/bin/env bash
# `cmake --install build --prefix /usr` into a DESTDIR installs everything a
# host needs (the CLI, the filter in nbdkit's filter directory, the token
# plugin, three man pages that `man -l` renders, the bash completion, both
# systemd units and their helper), and the uninstall target, with the same
# DESTDIR, removes every file it installed: the tree holds no file afterwards.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-install.sh"
need cmake man

install_destdir
manifest=$NBDCRYPT_BUILDDIR/install_manifest.txt
[ -s "$manifest" ] || fail "no install_manifest.txt after the install"

filterdir=$(pkg-config --variable=filterdir nbdkit)
# A build configured with -DNBDCRYPT_MAN=OFF (no pandoc) installs no pages.
man=1
grep -q '^NBDCRYPT_MAN:BOOL=OFF$' "$NBDCRYPT_BUILDDIR/CMakeCache.txt" && man=0
want=(
  usr/bin/nbdcrypt
  "${filterdir#/}/nbdkit-nbdcrypt-filter.so"
  usr/share/bash-completion/completions/nbdcrypt
  usr/libexec/nbdcrypt/nbdcrypt-service
)
[ $man = 0 ] || want+=(usr/share/man/man1/{nbdcrypt,nbdkit-nbdcrypt-filter,libcryptsetup-token-nbdcrypt}.1)
for f in "${want[@]}"; do
  [ -f "$ROOT/$f" ] || fail "not installed: /$f"
done
[ -n "$(find "$ROOT" -name libcryptsetup-token-nbdcrypt.so)" ] || fail "token plugin not installed"
for u in nbdcrypt@.service nbdcrypt-dir@.service; do
  [ -f "$UNITDIR/$u" ] || fail "unit $u not installed"
done
# Every file in the tree is in the manifest, and the other way round.
diff <(cd "$ROOT" && find . \( -type f -o -type l \) | sed 's/^\.//' | sort) <(sort "$manifest") >&2 ||
  fail "the installed files and install_manifest.txt differ"
pass "installed $(wc -l <"$manifest") files into DESTDIR"

# The units name the installed programs of the prefix, not the build tree.
grep -q "^ExecStart=/usr/libexec/nbdcrypt/nbdcrypt-service disk %i$" "$UNITDIR/nbdcrypt@.service" ||
  fail "nbdcrypt@.service does not run /usr/libexec/nbdcrypt/nbdcrypt-service"
grep -q '^NBDCRYPT_BIN=${NBDCRYPT_BIN:-/usr/bin/nbdcrypt}$' "$ROOT/usr/libexec/nbdcrypt/nbdcrypt-service" ||
  fail "the helper does not run /usr/bin/nbdcrypt"

# The installed programs run: nbdcrypt, and nbdkit loads the installed filter.
"$ROOT/usr/bin/nbdcrypt" --version | grep -q '^nbdcrypt [0-9]' || fail "the installed nbdcrypt does not run"
nbdkit --filter="$ROOT${filterdir}/nbdkit-nbdcrypt-filter.so" null --help 2>&1 | grep -q 'nbdcrypt-config=' ||
  fail "nbdkit does not load the installed filter"

# man -l renders each page: its NAME line, and text from its body.
check_man() {
  local page=$1 name_re=$2 body=$3 out
  out=$(MANWIDTH=100 man -l "$ROOT/usr/share/man/man1/$page.1" 2>"$T/man.err" | col -bx) ||
    fail "man -l $page.1 failed: $(cat "$T/man.err")"
  # troff's layout warnings (a long URI that cannot be broken) are not errors.
  if grep -Ev "warning.*(cannot adjust line|can't break line)" "$T/man.err" | grep -q .; then
    fail "man -l $page.1: $(cat "$T/man.err")"
  fi
  grep -Eq "^ +$name_re" <<<"$out" || fail "$page(1) has no NAME line matching /$name_re/"
  grep -Fq -- "$body" <<<"$out" || fail "$page(1) lacks '$body'"
  grep -Eq "^$page\\(1\\) " <<<"$out" || fail "$page(1): no '$page(1)' title line"
}
if [ $man = 1 ]; then
  check_man nbdcrypt 'nbdcrypt +- +create, +inspect +and +serve' 'EXIT STATUS'
  check_man nbdkit-nbdcrypt-filter 'nbdkit-nbdcrypt-filter +- +serve +a +LUKS2 +disk' 'nbdcrypt-keyslot=N'
  check_man libcryptsetup-token-nbdcrypt 'libcryptsetup-token-nbdcrypt +- +the +cryptsetup +token' \
    'cryptsetup open --token-only'
  # man finds them by name in the installed tree's man directory.
  MANPATH=$ROOT/usr/share/man man -w nbdkit-nbdcrypt-filter >/dev/null ||
    fail "man -w nbdkit-nbdcrypt-filter does not find the page under $ROOT/usr/share/man"
  pass "man -l renders the three pages"
else
  echo "skip: man pages (NBDCRYPT_MAN=OFF)"
fi

DESTDIR=$ROOT cmake --build "$NBDCRYPT_BUILDDIR" --target uninstall >"$T/uninstall.log" 2>&1 || {
  sed 's/^/  | /' "$T/uninstall.log" >&2
  fail "the uninstall target failed"
}
left=$(find "$ROOT" \( -type f -o -type l \) -print)
[ -z "$left" ] || fail "files left after uninstall: $left"
[ -d "$ROOT/usr/bin" ] || fail "uninstall removed more than the files (no $ROOT/usr/bin)"
pass "uninstall removed every installed file"
