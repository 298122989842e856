# Helpers for the tests of the installed tree and the systemd units (sourced
# after lib.sh).  Nothing is installed outside $T: `cmake --install` runs
# with DESTDIR=$T/root and prefix /usr, as a package build does.
: "${NBDCRYPT_BUILDDIR:?run through ctest (NBDCRYPT_BUILDDIR is the build directory)}"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ROOT=$T/root

# install_destdir: install the build into $ROOT (prefix /usr); sets UNITDIR
# (the units' directory inside $ROOT) and HELPER (the installed helper).
# The build's install_manifest.txt then lists this install.
install_destdir() {
  DESTDIR=$ROOT cmake --install "$NBDCRYPT_BUILDDIR" --prefix /usr >"$T/install.log" 2>&1 || {
    sed 's/^/  | /' "$T/install.log" >&2
    fail "cmake --install into DESTDIR failed"
  }
  UNITDIR=$(dirname "$(find "$ROOT" -name 'nbdcrypt@.service' -print -quit)")
  [ -d "$UNITDIR" ] || fail "no nbdcrypt@.service installed (see $T/install.log)"
  HELPER=$ROOT/usr/libexec/nbdcrypt/nbdcrypt-service
  [ -x "$HELPER" ] || fail "no executable $HELPER installed"
}

# unit_values UNIT KEY INSTANCE: the values of KEY= in [Service] of the
# installed UNIT (a template), one a line, with %i replaced by INSTANCE.
unit_values() {
  sed -n '/^\[Service\]/,/^\[/p' "$UNITDIR/$1" | sed -n "s/^$2=//p" | sed "s/%i/$3/g"
}

# unit_env UNIT INSTANCE CONFDIR: the environment the unit gives its
# commands, as NAME=VALUE lines: Environment= first, then the
# EnvironmentFile= (whose @NBDCRYPT_SYSCONFDIR@ path is looked up in CONFDIR,
# files there overriding Environment= as systemd does).
unit_env() {
  local unit=$1 inst=$2 confdir=$3 f
  unit_values "$unit" Environment "$inst"
  while read -r f; do
    f=${f#-}
    grep -Ev '^[[:space:]]*(#|$)' "$confdir/$(basename "$f")"
  done < <(unit_values "$unit" EnvironmentFile "$inst")
}

# unit_cmd UNIT KEY INSTANCE: the one command line of KEY (ExecStart,
# ExecStartPost) as words, its program mapped into $ROOT, in the array CMD.
unit_cmd() {
  local line
  line=$(unit_values "$1" "$2" "$3")
  [ -n "$line" ] && [ "$(printf '%s\n' "$line" | wc -l)" = 1 ] ||
    fail "$1: expected one $2= line, got '$line'"
  read -r -a CMD <<<"$line"
  case ${CMD[0]} in
  /*) CMD[0]=$ROOT${CMD[0]} ;;
  *) fail "$1: $2 runs '${CMD[0]}', not an absolute path" ;;
  esac
}
