#!/usr/bin/env bash
# One nbdkit serves a directory of disks (file dir=), each export under its
# own DEK: two nbdcrypt disks bound to different KEKs and one plain image.
# The list shows all three; each encrypted export round-trips 64 MiB through
# nbdcopy, unlocked once for all its connections; the plain export is refused
# on its own (named in the server log; the client's connection fails) while
# the others keep serving.  Afterwards each image served alone returns its
# own data, and each decrypts independently (cryptsetup's volume key from its
# own KEK, python XTS) to its data.
. "$(dirname "$0")/lib-filter.sh"
need nbdcopy nbdinfo nbdsh cryptsetup cmp

MiB=$((1024 * 1024))
dir=$T/vms
mkdir "$dir"
ka=$(nbdcrypt kek create)
kb=$(nbdcrypt kek create)
[ -n "$ka" ] && [ "$ka" != "$kb" ] || fail "kek create gave '$ka' and '$kb'"
nbdcrypt format "$dir/a.img" --size 96M --kek "$ka" >/dev/null
nbdcrypt format "$dir/b.img" --size 96M --kek "$kb" >/dev/null
head -c $((32 * MiB)) /dev/urandom >"$dir/plain.img"
plain_sha=$(sha_file "$dir/plain.img")
off=$(data_offset "$dir/a.img")
[ "$(data_offset "$dir/b.img")" = "$off" ] || fail "a.img and b.img have different data offsets"
head -c $((64 * MiB)) /dev/urandom >"$T/pa"
head -c $((64 * MiB)) /dev/urandom >"$T/pb"

server_start vms --filter="$NBDCRYPT_FILTER" file dir="$dir"
# euri EXPORT: the URI of export EXPORT of the server.
euri() { echo "nbd+unix:///$1?socket=$T/vms.sock"; }

# The filter passes the plugin's export list through.
names=$(nbdsh -c "
h.set_opt_mode(True)
h.connect_unix('$T/vms.sock')
names = []
h.opt_list(lambda name, desc: names.append(name) or 0)
print(' '.join(sorted(names)))
h.opt_abort()
") || fail "NBD_OPT_LIST failed"
[ "$names" = "a.img b.img plain.img" ] || fail "export list: '$names'"
# nbdinfo --list details every export it can open and names the one it
# cannot (its --json output is not valid JSON when one fails: text here).
rc=0
nbdinfo --list "$(euri "")" >"$T/list.out" 2>"$T/list.err" || rc=$?
[ "$rc" = 1 ] || fail "nbdinfo --list exited $rc, expected 1 (plain.img cannot be opened)"
grep -q "for export: plain.img" "$T/list.err" || fail "nbdinfo --list does not name plain.img: $(cat "$T/list.err")"
listed=$(awk -F'"' '/^export=/ {print $2}' "$T/list.out" | sort | tr '\n' ' ')
[ "$listed" = "a.img b.img " ] || fail "nbdinfo --list detailed '$listed'"
sizes=$(grep -c "export-size: $((96 * MiB - off)) " "$T/list.out" || true)
[ "$sizes" = 2 ] || fail "nbdinfo --list: $sizes exports of $((96 * MiB - off)) bytes: $(cat "$T/list.out")"
pass "list: a.img b.img plain.img; nbdinfo --list details a.img and b.img, names plain.img as failing"

# The plain image is refused on its own, twice (the second time from the
# retry window), the client's failure and the server's log naming it.
for i in 1 2; do
  must_refuse 1 "server has no export named 'plain.img'" "$dir/plain.img" -- nbdinfo --size "$(euri plain.img)"
done
server_alive vms || fail "server died on the plain export"
log_has vms "error: nbdcrypt: export 'plain.img': cannot unlock: .*no LUKS2 header" ||
  fail "the log does not name the refused export and the cause"
attempts=$(grep -c "nbdcrypt: export 'plain.img': cannot unlock: no LUKS2 header\$" "$T/vms.log" || true)
log_has vms "nbdcrypt: export 'plain.img': cannot unlock: no LUKS2 header \(retrying at most every 5 s\)" ||
  fail "a connection inside the retry window did not repeat the last error"
[ "$attempts" -ge 1 ] && [ "$attempts" -le 2 ] || fail "plain.img: $attempts unlock attempts in a few seconds"
pass "plain.img refused (client: $(grep -m1 -o "server has no export[^:]*" "$T/must_refuse.err")); log: $(
  grep -m1 -o "nbdcrypt: export 'plain.img'.*" "$T/vms.log")"

# The encrypted exports still serve, each its own data, several connections each.
nbdcopy "$T/pa" "$(euri a.img)"
nbdcopy "$T/pb" "$(euri b.img)"
nbdcopy "$(euri a.img)" "$T/ba"
nbdcopy "$(euri b.img)" "$T/bb"
cmp_range "$T/ba" 0 "$T/pa" 0 $((64 * MiB)) || fail "a.img: 64 MiB read back differ"
cmp_range "$T/bb" 0 "$T/pb" 0 $((64 * MiB)) || fail "b.img: 64 MiB read back differ"
pass "a.img and b.img: 64 MiB each written and read back equal with nbdcopy, after the refusal"

# One unlock per export, however many connections.
for e in a.img b.img; do
  conns=$(grep -c "nbdcrypt: open readonly=[01] exportname=\"$e\"" "$T/vms.log" || true)
  n=$(grep -c "nbdcrypt: unlocked disk [^ ]* for export '$e'" "$T/vms.log" || true)
  [ "$conns" -ge 4 ] || fail "$e: only $conns connections, the count proves nothing"
  [ "$n" = 1 ] || fail "$e: unlocked $n times for $conns connections"
  pass "$e: unlocked once for $conns connections"
done
n=$(grep -c "nbdcrypt: unlocked disk" "$T/vms.log" || true)
[ "$n" = 2 ] || fail "$n unlocks in all, expected 2"
server_stop vms
[ "$(sha_file "$dir/plain.img")" = "$plain_sha" ] || fail "plain.img was changed"

# Each image served alone returns its own data.
for e in a b; do
  serve alone-$e "$dir/$e.img"
  nbdcopy "$(uri alone-$e)" "$T/alone-$e"
  server_stop alone-$e
  cmp_range "$T/alone-$e" 0 "$T/p$e" 0 $((64 * MiB)) || fail "$e.img served alone: data differ"
done
pass "after the server stopped, a.img and b.img served alone return their own data"

# Independent decryption: each image's volume key from cryptsetup with its
# own KEK as key file, python XTS.
for e in a b; do
  k=$ka
  [ $e = b ] && k=$kb
  kek_bytes "$k" "$T/kek-$e.bin"
  cryptsetup_volume_key "$dir/$e.img" "$T/kek-$e.bin" | "$PY" -c \
    'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))' >"$T/vk-$e"
  [ "$(stat -c %s "$T/vk-$e")" = 64 ] || fail "$e.img: no 64-byte volume key from cryptsetup"
  dd if="$dir/$e.img" bs=$MiB iflag=skip_bytes skip="$off" count=64 status=none |
    xts_py decrypt "$T/vk-$e" 4096 0 >"$T/dec-$e"
  cmp_range "$T/dec-$e" 0 "$T/p$e" 0 $((64 * MiB)) || fail "$e.img does not decrypt to its data"
done
cmp -s "$T/vk-a" "$T/vk-b" && fail "a.img and b.img have the same volume key"
cryptsetup open --test-passphrase --key-file "$T/kek-a.bin" "$dir/b.img" 2>/dev/null &&
  fail "b.img opens with a.img's KEK"
pass "a.img and b.img decrypt independently with their own volume keys (different), to their data"
