#!/usr/bin/env bash
# A detached header must be LUKS2: a cryptsetup LUKS1 detached header
# (luksFormat --type luks1 --header, payload offset 0) and a whole LUKS1 disk
# given as a header are refused by the filter (nbdcrypt-header=), serve,
# check, info (also as JSON) and enroll --convert --header, each saying that
# a detached LUKS1 header is not supported; nothing is written.
. "$(dirname "$0")/lib-filter.sh"
need cryptsetup nbdinfo

MiB=$((1024 * 1024))
printf 'luks1 detached' >"$T/pass"
data=$T/data.img
hdr=$T/luks1.hdr
head -c $((8 * MiB)) /dev/urandom >"$data"
truncate -s 2M "$hdr"
cryptsetup luksFormat --type luks1 -q --pbkdf-force-iterations 1000 --key-file "$T/pass" \
  --header "$hdr" "$data"
disk=$T/disk.img
truncate -s 8M "$disk"
cryptsetup luksFormat --type luks1 -q --pbkdf-force-iterations 1000 --key-file "$T/pass" "$disk"
data_sha=$(sha_file "$data")
msg="a detached LUKS1 header is not supported, only a detached LUKS2 header"

# ---- the CLI: check, info, info --json, enroll --convert, serve
must_refuse 1 "luks1.hdr: cannot be unlocked here: $msg \(LUKS1 header: payload offset 0" "$hdr" -- \
  nbdcrypt check "$data" --header "$hdr"
must_refuse 1 "luks1.hdr: $msg \(LUKS1 header: payload offset 0" "$hdr" -- \
  nbdcrypt info "$data" --header "$hdr"
must_refuse 1 "$msg" "$hdr" -- nbdcrypt info "$data" --header "$hdr" --json
"$PY" - "$T/must_refuse.out" "$data" <<'PYEOF' || fail "info --json of a LUKS1 header: $(cat "$T/must_refuse.out")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["target"] == sys.argv[2], j
assert j["luks2"] is False and j["luks1"] is True, j
assert "a detached LUKS1 header is not supported" in j["error"], j
PYEOF
must_refuse 1 "cannot enroll .*$msg" "$hdr" -- \
  nbdcrypt enroll "$data" --header "$hdr" --passphrase-file "$T/pass" --convert
must_refuse 1 "$msg" "$hdr" -- \
  nbdcrypt serve "$data" --header "$hdr" --socket "$T/no.sock" -- nbdcrypt-keyfile="$T/pass"
[ "$(sha_file "$data")" = "$data_sha" ] || fail "a refused command changed the data device"
pass "a cryptsetup LUKS1 detached header: check, info (text and JSON), enroll --convert and serve refuse it, naming why"

# A whole LUKS1 disk (payload offset 2 MiB) named as the header of the data.
must_refuse 1 "cannot be unlocked here: $msg \(LUKS1 disk [0-9a-f-]+ given as the header\)" \
  "$disk" -- nbdcrypt check "$data" --header "$disk"
must_refuse 1 "disk.img: $msg \(LUKS1 disk [0-9a-f-]+ given as the header\)" "$disk" -- \
  nbdcrypt info "$data" --header "$disk"
pass "a whole LUKS1 disk given as --header: check and info refuse it"

# ---- the filter: the client is refused, the log says why, the server stays up
serve h "$data" nbdcrypt-header="$hdr" nbdcrypt-keyfile="$T/pass"
if nbdinfo --size "$(uri h)" >/dev/null 2>&1; then fail "a LUKS1 detached header was served"; fi
server_alive h || fail "the server died on a LUKS1 detached header"
log_has h "cannot unlock: header $hdr: $msg" || fail "the log does not say why the LUKS1 header is refused"
server_stop h
[ "$(sha_file "$data")" = "$data_sha" ] || fail "the filter changed the data device"
pass "the filter refuses nbdcrypt-header= naming a LUKS1 header, says why, and stays up"
