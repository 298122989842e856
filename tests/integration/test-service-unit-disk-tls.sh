#!/usr/bin/env bash
# nbdcrypt@NAME.service with NBDKIT_ARGS="--tls=require --tls-psk=FILE"
# (serving other hosts), run without systemd: the server takes no plain
# client, so the ready step cannot connect; it returns 0 once nbdkit listens
# (its pidfile), says the disk was not checked, and a TLS client then reads
# back what it wrote; a plain client is refused.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-install.sh"
need cmake nbdkit nbdinfo nbdcopy cmp
: "${NBDCRYPT_FILTER:?run through ctest}"
export NBDCRYPT_FILTER

install_destdir
mkdir -p "$T/etc/nbdcrypt"
nbdcrypt format "$T/vm1.img" --size 40M >/dev/null
# nbdkit's PSK file: USERNAME:HEX-KEY (what psktool writes).
(umask 077 && printf 'alice:%s\n' "$(od -An -v -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$T/keys.psk")
port=$(free_port)
cat >"$T/etc/nbdcrypt/tls.conf" <<EOF2
DISK=$T/vm1.img
CONFIG=$CFG
PORT=$port
READY_TIMEOUT=30
NBDKIT_ARGS="--tls=require --tls-psk=$T/keys.psk"
EOF2
unit_start nbdcrypt@.service tls
rc=0
unit_ready nbdcrypt@.service tls || rc=$?
[ $rc = 0 ] || { sed 's/^/  | /' "$T/tls.ready" "$T/tls.log" >&2; fail "ExecStartPost exited $rc"; }
grep -qF "to TLS clients only (not checked)" "$T/tls.ready" || fail "ExecStartPost says: $(cat "$T/tls.ready")"

tls_uri="nbds://alice@127.0.0.1:$port/?tls-psk-file=$T/keys.psk"
head -c $((4 * 1024 * 1024)) /dev/urandom >"$T/data"
nbdcopy "$T/data" "$tls_uri" && nbdcopy "$tls_uri" "$T/back" || fail "nbdcopy over TLS failed"
cmp_range "$T/data" 0 "$T/back" 0 $((4 * 1024 * 1024)) || fail "data did not round-trip over TLS"
if nbdinfo --size "nbd://127.0.0.1:$port" >/dev/null 2>&1; then
  fail "a plain client was served by a --tls=require server"
fi
unit_stop
[ "$RC" = 0 ] || fail "stopped with SIGTERM, the main process exited $RC"
pass "TLS-only server: ready once nbdkit listens, TLS clients served, plain refused"
