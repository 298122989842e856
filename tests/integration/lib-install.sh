# shellcheck shell=bash
# Helpers for the tests of the installed tree and the systemd units (sourced
# after lib.sh).  Nothing is installed outside $T: `cmake --install` runs
# with DESTDIR=$T/root and prefix /usr, as a package build does.
: "${NBDCRYPT_BUILDDIR:?run through ctest (NBDCRYPT_BUILDDIR is the build directory)}"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ROOT=$T/root

# install_destdir: install the build into $ROOT (prefix /usr); sets UNITDIR
# (the units' directory inside $ROOT) and HELPER (the installed helper).
# The build's install_manifest.txt then lists this install until the test
# exits, when the one of a real install (if any) is put back, so that a
# later `uninstall` removes what that install put down.
install_destdir() {
  local manifest=$NBDCRYPT_BUILDDIR/install_manifest.txt
  if [ -f "$manifest" ]; then
    cp -p "$manifest" "$T/install_manifest.saved"
    on_exit 'cp -p "$T/install_manifest.saved" "$NBDCRYPT_BUILDDIR/install_manifest.txt"'
  else
    on_exit 'rm -f "$NBDCRYPT_BUILDDIR/install_manifest.txt"'
  fi
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

# The tests run the units' commands as their own processes, with what the
# unit and systemd would give them: the unit's environment (unit_env), the
# RuntimeDirectory= (under $T/run), and for ExecStartPost $MAINPID.  The
# installed helper runs the installed nbdcrypt ($ROOT/usr/bin) and the build's
# filter (NBDCRYPT_FILTER, set by ctest; nbdkit's filter directory holds no
# nbdcrypt filter before a real install).
_unit_mains=()
on_exit 'for _m in "${_unit_mains[@]}"; do stop_pid "$_m"; done'

# _unit_prepare UNIT INSTANCE KEY: the unit's environment in ENVS (with
# RUNTIME_DIRECTORY and the installed nbdcrypt) and KEY's command in CMD.
_unit_prepare() {
  local unit=$1 inst=$2 key=$3 line
  ENVS=()
  while IFS= read -r line; do
    # systemd drops one pair of surrounding double quotes of a value.
    if [[ "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)=\"(.*)\"$ ]]; then
      line=${BASH_REMATCH[1]}=${BASH_REMATCH[2]}
    fi
    ENVS+=("$line")
  done < <(unit_env "$unit" "$inst" "$T/etc/nbdcrypt")
  mkdir -p "$T/run/nbdcrypt/$inst"
  ENVS+=("RUNTIME_DIRECTORY=$T/run/nbdcrypt/$inst" "NBDCRYPT_BIN=$ROOT/usr/bin/nbdcrypt")
  unit_cmd "$unit" "$key" "$inst"
}

# _unit_run UNIT INSTANCE KEY [VAR=VALUE...]: run KEY's command in the
# foreground with the unit's environment (and VAR=VALUE).
_unit_run() {
  _unit_prepare "$1" "$2" "$3"
  shift 3
  env "${ENVS[@]}" "$@" "${CMD[@]}"
}

# unit_start UNIT INSTANCE: ExecStart in the background, stderr (the
# journal) in $T/INSTANCE.log; its pid (the helper execs the server) in MAIN.
unit_start() {
  _unit_prepare "$1" "$2" ExecStart
  env "${ENVS[@]}" "${CMD[@]}" 2>>"$T/$2.log" &
  MAIN=$!
  _unit_mains+=("$MAIN")
}

# unit_ready UNIT INSTANCE: ExecStartPost for the MAIN of unit_start; its
# status is the function's, its output in $T/INSTANCE.ready.
unit_ready() {
  _unit_run "$1" "$2" ExecStartPost MAINPID="$MAIN" >"$T/$2.ready" 2>&1
}

# unit_stop: stop MAIN as systemd does (SIGTERM), wait for it; its status in RC.
unit_stop() {
  kill -TERM "$MAIN"
  RC=0
  wait "$MAIN" || RC=$?
}

# free_port: a TCP port of 127.0.0.1 that nothing listens on now.
free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
