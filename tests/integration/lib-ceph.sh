# shellcheck shell=bash
# A one-node Ceph cluster for the RBD tests (sourced; it loads lib-filter.sh,
# so a test sources only this file and is not rerun in the ASan build: the
# cluster costs time and the filter's code paths are those of the nbd tests):
# one monitor and one OSD on a memory object store, on 127.0.0.1 only, cephx
# on, every file (ceph.conf, fsid, keyrings, data, logs, sockets) in
# $T/ceph.  No manager: RBD needs only the monitor and the OSDs.  The daemons
# run in the foreground (-f) as this test's children and are stopped by pid.
#
#   ceph_start            start the cluster and create pool $CEPH_POOL
#   ceph_cmd ARGS...      the ceph CLI as client.admin on this cluster
#   rbd_cmd ARGS...       the rbd CLI likewise
#   rbd_spec IMAGE        qemu's rbd: filename of $CEPH_POOL/IMAGE
#   rbd_qnbd_start NAME IMAGE [ARGS]  qemu-nbd serving the RBD image on
#                         $T/NAME.qsock (lib-filter.sh's qnbd_start)
#   ceph_stop             stop those qemu-nbd, then the daemons (an exit hook)
. "$(dirname "${BASH_SOURCE[0]}")/lib-filter.sh"
need ceph-mon ceph-osd ceph-authtool monmaptool ceph rbd rados

CEPH_DIR=$T/ceph
CEPH_CONF=$CEPH_DIR/ceph.conf
CEPH_KEYRING=$CEPH_DIR/client.admin.keyring # the keyring = $name default finds it
CEPH_POOL=nbdc
_ceph_pids=()

# ceph_free_port: a TCP port on 127.0.0.1 that nothing listens on now.
ceph_free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

ceph_cmd() { timeout 60 ceph --conf "$CEPH_CONF" --id admin --keyring "$CEPH_KEYRING" --connect-timeout 20 "$@"; }
rbd_cmd() { timeout 120 rbd --conf "$CEPH_CONF" --id admin --keyring "$CEPH_KEYRING" "$@"; }
rados_cmd() { timeout 60 rados --conf "$CEPH_CONF" --id admin --keyring "$CEPH_KEYRING" "$@"; }

# rbd_spec IMAGE: the qemu rbd: filename of image IMAGE of the pool
# (":" in a path would need escaping; $T has none).
rbd_spec() {
  echo "rbd:$CEPH_POOL/$1:conf=$CEPH_CONF:id=admin:keyring=$CEPH_KEYRING"
}

# _ceph_die WHAT: fail with the tail of every daemon log.
_ceph_die() {
  local f
  echo "FAIL: ceph: $1" >&2
  for f in "$CEPH_DIR"/log/*.log; do
    [ -e "$f" ] || continue
    echo "  --- $(basename "$f") (last 25 lines)" >&2
    tail -n 25 "$f" | sed 's/^/  | /' >&2
  done
  exit 1
}

_ceph_qnbd=()
rbd_qnbd_start() {
  local name=$1 image=$2
  shift 2
  qnbd_start "$name" raw "$(rbd_spec "$image")" "$@"
  _ceph_qnbd+=("$name")
}

# A qemu-nbd still connected to the cluster is stopped first: librbd waits
# for a cluster that has gone.
ceph_stop() {
  local p
  for p in "${_ceph_qnbd[@]}"; do qnbd_stop "$p"; done
  _ceph_qnbd=()
  # the OSD first: it tells the monitor it goes down (and waits for it)
  for ((p = ${#_ceph_pids[@]} - 1; p >= 0; p--)); do stop_pid "${_ceph_pids[p]}"; done
  _ceph_pids=()
}

ceph_start() {
  local port fsid osd_uuid i
  mkdir -p "$CEPH_DIR"/{mon,osd,log,run}
  port=$(ceph_free_port)
  fsid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$port]
public network = 127.0.0.0/8
ms bind msgr1 = false
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $CEPH_DIR/run
admin socket = $CEPH_DIR/run/\$name.asok
log file = $CEPH_DIR/log/\$name.log
pid file = $CEPH_DIR/run/\$name.pid
keyring = $CEPH_DIR/\$name.keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
mon warn on pool no redundancy = false
auth allow insecure global id reclaim = false
client mount timeout = 30
rados mon op timeout = 30
rados osd op timeout = 60
[mon]
mon data = $CEPH_DIR/mon/\$name
mon cluster log file = $CEPH_DIR/log/cluster.log
mon data avail warn = 1
mon data avail crit = 0
[osd]
osd data = $CEPH_DIR/osd/\$name
osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-1073741824}
osd memory target = 536870912
osd max object name len = 460
osd max object namespace len = 64
osd op num threads per shard = 1
osd op num shards = 1
osd class load list = *
osd class default list = *
# a dead client's watch (a killed qemu-nbd) expires after 6 s, not 30
osd client watch timeout = 6
EOF
  # Keyrings: the monitor's, client.admin's (imported into the monitor's)
  # and the OSD bootstrap key.
  ceph-authtool --create-keyring "$CEPH_DIR/mon.keyring" --gen-key -n mon. \
    --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$CEPH_KEYRING" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$CEPH_DIR/mon.keyring" --import-keyring "$CEPH_KEYRING" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" \
    "$CEPH_DIR/monmap" >/dev/null
  ceph-mon --conf "$CEPH_CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" \
    --keyring "$CEPH_DIR/mon.keyring" 2>"$CEPH_DIR/log/mon-mkfs.err" ||
    _ceph_die "ceph-mon --mkfs failed: $(cat "$CEPH_DIR/log/mon-mkfs.err")"
  ceph-mon --conf "$CEPH_CONF" -i a -f 2>>"$CEPH_DIR/log/mon.a.err" &
  _ceph_pids+=($!)
  for ((i = 0; i < 300; i++)); do
    ceph_cmd mon stat >/dev/null 2>&1 && break
    kill -0 "${_ceph_pids[0]}" 2>/dev/null || _ceph_die "ceph-mon exited while starting"
    sleep 0.1
  done
  ((i < 300)) || _ceph_die "the monitor did not answer within 30 s"

  # One OSD: registered with the monitor, its store made and its key added.
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  ceph_cmd osd new "$osd_uuid" >"$CEPH_DIR/osd.id" 2>"$CEPH_DIR/log/osd-new.err" ||
    _ceph_die "ceph osd new failed: $(cat "$CEPH_DIR/log/osd-new.err")"
  [ "$(cat "$CEPH_DIR/osd.id")" = 0 ] || _ceph_die "osd new gave id $(cat "$CEPH_DIR/osd.id")"
  mkdir -p "$CEPH_DIR/osd/osd.0"
  ceph-authtool --create-keyring "$CEPH_DIR/osd.0.keyring" --gen-key -n osd.0 >/dev/null
  ceph_cmd auth add osd.0 osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
    -i "$CEPH_DIR/osd.0.keyring" >/dev/null 2>&1 || _ceph_die "auth add osd.0 failed"
  ceph-osd --conf "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" \
    >/dev/null 2>"$CEPH_DIR/log/osd-mkfs.err" ||
    _ceph_die "ceph-osd --mkfs failed: $(tail -5 "$CEPH_DIR/log/osd-mkfs.err")"
  ceph-osd --conf "$CEPH_CONF" -i 0 -f 2>>"$CEPH_DIR/log/osd.0.err" &
  _ceph_pids+=($!)
  for ((i = 0; i < 120; i++)); do
    [ "$(ceph_cmd osd stat -f json 2>/dev/null | "$PY" -c \
      'import json,sys; print(json.load(sys.stdin)["num_up_osds"])' 2>/dev/null)" = 1 ] && break
    kill -0 "${_ceph_pids[1]}" 2>/dev/null || _ceph_die "ceph-osd exited while starting"
    sleep 0.25
  done
  ((i < 120)) || _ceph_die "osd.0 was not up within 30 s"

  ceph_cmd osd pool create "$CEPH_POOL" 8 8 >/dev/null 2>&1 || _ceph_die "pool create failed"
  ceph_cmd osd pool set "$CEPH_POOL" size 1 --yes-i-really-mean-it >/dev/null 2>&1 ||
    _ceph_die "pool size 1 refused"
  rbd_cmd pool init "$CEPH_POOL" 2>"$CEPH_DIR/log/pool-init.err" ||
    _ceph_die "rbd pool init failed: $(cat "$CEPH_DIR/log/pool-init.err")"
  # Healthy enough for us: an object written and read back (the PGs are
  # active; without a manager "ceph health" cannot say so).
  echo probe >"$CEPH_DIR/probe"
  rados_cmd -p "$CEPH_POOL" put probe "$CEPH_DIR/probe" 2>"$CEPH_DIR/log/probe.err" ||
    _ceph_die "writing an object failed: $(cat "$CEPH_DIR/log/probe.err")"
  rados_cmd -p "$CEPH_POOL" rm probe
}
on_exit ceph_stop
