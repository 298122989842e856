#!/usr/bin/env bash
# A missing, non-LUKS or misplaced detached header is refused with a message
# that names it, and nothing is written: nbdkit with nbdcrypt-header=, serve,
# check, info, rekey and enroll --header; the header file served as a disk;
# nbdcrypt-header= with dir= (one header, many disks) or twice; recrypt with a
# missing header.
. "$(dirname "$0")/lib-filter.sh"

MiB=$((1024 * 1024))
img=$T/data.img
hdr=$T/hdr.img
head -c $((16 * MiB)) /dev/urandom >"$img"
nbdcrypt encrypt "$img" --header "$hdr" >/dev/null 2>&1 || fail "encrypt --header failed"
nbdkit_filter() { "${_nbdkit[@]}" -f -U "$T/no.sock" --filter="$NBDCRYPT_FILTER" "$@"; }

# ---- a missing header file
missing=$T/missing.hdr
must_refuse 1 "nbdcrypt-header=$missing: cannot use the detached header: No such file" "$img" -- \
  nbdkit_filter file file="$img" nbdcrypt-header="$missing"
must_refuse 1 "header $missing: No such file" "$img" -- \
  nbdcrypt serve "$img" --header "$missing" --socket "$T/no.sock"
must_refuse 1 "cannot open $missing.*No such file" "$img" -- nbdcrypt check "$img" --header "$missing"
must_refuse 1 "cannot open $missing.*No such file" "$img" -- nbdcrypt info "$img" --header "$missing"
must_refuse 1 "cannot open $missing.*No such file" "$img" -- nbdcrypt rekey "$img" --header "$missing"
[ ! -e "$missing" ] || fail "a command created the missing header file"
pass "a missing header file: nbdkit, serve, check, info and rekey refuse, naming it"

# ---- a header file that holds no LUKS2 header
head -c $((16 * MiB)) /dev/zero >"$T/zero.hdr"
must_refuse 1 "cannot unlock: header $T/zero.hdr: no LUKS2 header" "$img" -- \
  nbdcrypt serve "$img" --header "$T/zero.hdr" --socket "$T/z.sock"
must_refuse 1 "zero.hdr: cannot be unlocked here: no LUKS2 header" "$img" -- \
  nbdcrypt check "$img" --header "$T/zero.hdr"
must_refuse 1 "zero.hdr: not a usable LUKS2 disk: no LUKS2 header" "$img" -- \
  nbdcrypt info "$img" --header "$T/zero.hdr"
pass "a header file without a LUKS2 header: serve, check and info refuse, naming it"

# ---- the data device given as its own header, and the header served as the data
must_refuse 1 "nbdcrypt-header=$img is the plugin's disk file=$img itself" "$img" -- \
  nbdkit_filter file file="$img" nbdcrypt-header="$img"
must_refuse 1 "--header $img is $img itself" "$img" -- nbdcrypt check "$img" --header "$img"
must_refuse 1 "--header $img is $img itself" "$img" -- nbdcrypt rekey "$img" --header "$img"
must_refuse 1 "data at offset 0 \\(a detached header\\): the data is not on this device" "$hdr" -- \
  nbdcrypt serve "$hdr" --socket "$T/h.sock"
must_refuse 1 "data at offset 0 \\(a detached header\\)" "$hdr" -- nbdcrypt check "$hdr"
pass "the data device as its own header, and the header file served as a disk, are refused"

# ---- one header is one disk: not with dir=, not twice
mkdir "$T/dir"
must_refuse 1 "nbdcrypt-header=$hdr cannot be used with dir=$T/dir: a detached header belongs to one disk" \
  "$hdr" -- nbdkit_filter file dir="$T/dir" nbdcrypt-header="$hdr"
must_refuse 1 "nbdcrypt-header: given twice" "$hdr" -- \
  nbdkit_filter file file="$img" nbdcrypt-header="$hdr" nbdcrypt-header="$hdr"
must_refuse 1 "header file $missing does not exist" "$img" -- nbdcrypt recrypt "$img" --header "$missing"
pass "nbdcrypt-header= with dir= or twice, and recrypt --header of a missing header, are refused"
