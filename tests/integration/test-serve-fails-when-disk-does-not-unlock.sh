#!/usr/bin/env bash
# nbdcrypt serve exits 1 with the reason when the disk cannot be unlocked (a
# disk bound to a KEK missing from the keystore; a plain image that is no
# LUKS2 disk at all), in the background and with --foreground, and leaves no
# server, socket or pidfile behind; a good disk still serves (exit 0, URI).
. "$(dirname "$0")/lib-filter.sh"
need nbdsh

kek=$(new_disk "$T/lost.img" 32M)
nbdcrypt kek destroy "$kek" --force
head -c 32M /dev/urandom >"$T/plain.img"
new_disk "$T/good.img" 32M >/dev/null

# refused IMAGE REGEX [serve args...]: serve exits 1, says REGEX and that it
# could not serve IMAGE, and no nbdkit of it is left.
refused() {
  local img=$1 re=$2 name
  shift 2
  name=$(basename "$img" .img)
  _servers+=("$name") # stopped at exit should serve wrongly succeed
  must_refuse 1 "$re" "$img" -- timeout 60 "$NBDCRYPT" serve "$img" --socket "$T/$name.sock" \
    --pidfile "$T/$name.pid" "$@"
  grep -Eq "^nbdcrypt: cannot serve $img: the first connection failed \(.*\); .*stopped nbdkit \(pid [0-9]+\)" \
    "$T/must_refuse.err" || fail "$img: no 'cannot serve' line: $(cat "$T/must_refuse.err")"
  [ ! -e "$T/$name.sock" ] || fail "$img: the socket of the stopped server is left"
  [ ! -e "$T/$name.pid" ] || fail "$img: the pidfile of the stopped server is left"
  if pgrep -f "file=$img" >/dev/null; then fail "$img: an nbdkit serving it still runs"; fi
}

refused "$T/lost.img" "kek $kek not found"
refused "$T/lost.img" "kek $kek not found" --foreground
pass "a disk whose KEK is gone: exit 1, the KEK named, no server left (background, foreground)"
refused "$T/plain.img" "LUKS2"
refused "$T/plain.img" "LUKS2" --foreground
pass "a plain image: exit 1, 'LUKS2' in the reason, no server left (background, foreground)"

u=$("$NBDCRYPT" serve "$T/good.img" --socket "$T/good.sock" --pidfile "$T/good.pid" -- -v 2>>"$T/good.log")
_servers+=(good)
[ "$u" = "nbd+unix:///?socket=$T/good.sock" ] || fail "good disk: printed '$u'"
nbdsh -u "$u" -c 'h.pwrite(b"\x5a" * 4096, 8192); assert h.pread(4096, 8192) == b"\x5a" * 4096'
pass "a good disk serves: exit 0, URI printed, data round-trips"
