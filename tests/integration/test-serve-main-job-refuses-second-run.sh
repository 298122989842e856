#!/usr/bin/env bash
# scripts/main-job.sh run twice: while the first run serves, the second is
# refused (exit 1, naming the first one's pid) and leaves the first one's
# socket and servers alone; a socket some other server answers on is not
# removed either; once the first run has stopped, a new run serves again.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib.sh"
need nbdkit nbdinfo flock
: "${NBDCRYPT_SRCDIR:?run through ctest}"

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
export NBDCRYPT_STATE=$T/state NBDCRYPT_SOCKET=$T/run/disk.sock NBDCRYPT_PORT=$(free_port)
export NBDCRYPT_BUILD=$(dirname "$NBDCRYPT") NBDCRYPT_NO_INSTALL=1 NBDCRYPT_NO_BUILD=1
export NBDCRYPT_SIZE=64M
unset NBDCRYPT_CONFIG # the job makes its own in its state directory
job=$NBDCRYPT_SRCDIR/scripts/main-job.sh
U="nbd+unix:///?socket=$NBDCRYPT_SOCKET"

jobs_started=()
on_exit 'for _j in "${jobs_started[@]}"; do stop_pid "$_j"; done'
# start_job NAME: run the job in the background until it says it serves.
start_job() {
  local i
  bash "$job" >"$T/$1.out" 2>"$T/$1.err" &
  job_pid=$!
  jobs_started+=("$job_pid")
  for ((i = 0; i < 600; i++)); do
    grep -q "Ctrl-C stops both servers" "$T/$1.out" && return 0
    kill -0 "$job_pid" 2>/dev/null || fail "job $1 exited: $(cat "$T/$1.err")"
    sleep 0.1
  done
  fail "job $1 did not serve within 60 s: $(cat "$T/$1.err")"
}

start_job first
first=$job_pid
size=$(nbdinfo --size "$U")
must_refuse 1 "another main-job \(pid $first\) is serving .* stop it first" - -- bash "$job"
[ -S "$NBDCRYPT_SOCKET" ] || fail "the refused run removed the first one's socket"
[ "$(nbdinfo --size "$U")" = "$size" ] || fail "the first job's disk no longer serves"
[ "$(nbdinfo --size "nbd://127.0.0.1:$NBDCRYPT_PORT")" = "$size" ] || fail "its TCP export is gone"
kill -0 "$first" || fail "the first job is gone"
pass "a second run while the first serves: exit 1, pid named, first one untouched"

# Another state directory, same socket: refused because the socket answers.
must_refuse 1 "a server is already listening on $NBDCRYPT_SOCKET" - \
  -- env NBDCRYPT_STATE="$T/state2" NBDCRYPT_PORT="$(free_port)" bash "$job"
[ "$(nbdinfo --size "$U")" = "$size" ] || fail "the first job's socket stopped serving"
pass "a run of another state on a live socket: exit 1, socket untouched"

stop_pid "$first"
[ ! -e "$NBDCRYPT_SOCKET" ] || fail "the stopped job left its socket"
start_job second
[ "$(nbdinfo --size "$U")" = "$size" ] || fail "the second job does not serve the disk"
stop_pid "$job_pid"
pass "after the first job stopped, a new run serves the same disk"
