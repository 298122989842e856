#!/usr/bin/env bash
# A plugin that accepts any context and picks the image by export name
# (nbdkit's sh plugin, a small script) serves each export under its own DEK:
# data written to export a is encrypted with a's key and b's with b's (each
# image decrypts independently with its own volume key, and not with the
# other's), a reads back a's data and b b's, and a plain export is refused
# alone.  (The filter used to unlock once per server and serve every export
# with the first one's key.)
. "$(dirname "$0")/lib-filter.sh"
need nbdcopy nbdinfo nbdsh cryptsetup cmp dd

MiB=$((1024 * 1024))
dir=$T/images
mkdir "$dir"
ka=$(nbdcrypt kek create)
kb=$(nbdcrypt kek create)
nbdcrypt format "$dir/a.img" --size 48M --kek "$ka" >/dev/null
nbdcrypt format "$dir/b.img" --size 48M --kek "$kb" >/dev/null
head -c $((24 * MiB)) /dev/urandom >"$dir/plain.img"
off=$(data_offset "$dir/a.img")
head -c $((8 * MiB)) /dev/urandom >"$T/pa"
head -c $((8 * MiB)) /dev/urandom >"$T/pb"

# In the ASan build nbdkit runs with the sanitizer runtime preloaded, which
# its children inherit: the script drops it, or bash's own leaks at exit
# would be reported.
cat >"$T/pick.sh" <<EOF
#!/usr/bin/env -S -u LD_PRELOAD bash
# nbdkit sh plugin: export NAME is the image $dir/NAME.img.
dir='$dir'
EOF
cat >>"$T/pick.sh" <<'EOF'
case "$1" in
  thread_model) echo parallel ;;
  list_exports) echo NAMES; echo a; echo b; echo plain ;;
  default_export) echo a ;;
  open)
    case "$3" in
      a | b | plain) echo "$3" ;;
      *) echo "no image for export '$3'" >&2; exit 1 ;;
    esac ;;
  get_size) stat -L -c %s "$dir/$2.img" ;;
  can_write | can_flush) exit 0 ;;
  flush) exit 0 ;;
  pread) exec dd if="$dir/$2.img" bs=64K iflag=skip_bytes,count_bytes skip="$4" count="$3" status=none ;;
  pwrite) exec dd of="$dir/$2.img" bs=64K oflag=seek_bytes seek="$4" conv=notrunc,fsync status=none ;;
  *) exit 2 ;;
esac
EOF
chmod +x "$T/pick.sh"

server_start pick --filter="$NBDCRYPT_FILTER" sh "$T/pick.sh"
euri() { echo "nbd+unix:///$1?socket=$T/pick.sock"; }

nbdcopy "$T/pa" "$(euri a)"
nbdcopy "$T/pb" "$(euri b)"
must_refuse 1 "server has no export named 'plain'" "$dir/plain.img" -- nbdinfo --size "$(euri plain)"
log_has pick "nbdcrypt: export 'plain': cannot unlock: .*no LUKS2 header" ||
  fail "the log does not name the refused export 'plain'"
nbdcopy "$(euri a)" "$T/ba"
nbdcopy "$(euri b)" "$T/bb"
cmp_range "$T/ba" 0 "$T/pa" 0 $((8 * MiB)) || fail "export a does not read back a's data"
cmp_range "$T/bb" 0 "$T/pb" 0 $((8 * MiB)) || fail "export b does not read back b's data"
# The default export is the plugin's "a", the same volume.
nbdsh -u "$(uri pick)" -c 'import sys; sys.stdout.buffer.write(h.pread(65536, 0))' >"$T/def"
cmp_range "$T/def" 0 "$T/pa" 0 65536 || fail "the default export does not read as a"
for e in a b; do
  n=$(grep -c "nbdcrypt: unlocked disk [^ ]* for export '$e'" "$T/pick.log" || true)
  [ "$n" = 1 ] || fail "export $e unlocked $n times"
done
pass "sh plugin by export name: a and b read back their own 8 MiB, plain refused, one unlock each"
server_stop pick

# Each image holds its data under its own volume key, and not the other's.
for e in a b; do
  k=$ka
  [ $e = b ] && k=$kb
  kek_bytes "$k" "$T/kek-$e.bin"
  cryptsetup_volume_key "$dir/$e.img" "$T/kek-$e.bin" | "$PY" -c \
    'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))' >"$T/vk-$e"
  [ "$(stat -c %s "$T/vk-$e")" = 64 ] || fail "$e.img: no volume key from cryptsetup"
  dd if="$dir/$e.img" bs=$MiB iflag=skip_bytes skip="$off" count=8 status=none >"$T/cipher-$e"
done
xts_py decrypt "$T/vk-a" 4096 0 <"$T/cipher-a" >"$T/dec-aa"
xts_py decrypt "$T/vk-b" 4096 0 <"$T/cipher-b" >"$T/dec-bb"
xts_py decrypt "$T/vk-a" 4096 0 <"$T/cipher-b" >"$T/dec-ba"
cmp_range "$T/dec-aa" 0 "$T/pa" 0 $((8 * MiB)) || fail "a.img does not decrypt to a's data"
cmp_range "$T/dec-bb" 0 "$T/pb" 0 $((8 * MiB)) || fail "b.img does not decrypt to b's data"
cmp_range "$T/dec-ba" 0 "$T/pb" 0 4096 && fail "b.img's data decrypts with a's key"
pass "a.img and b.img decrypt to their data with their own keys; b.img's not with a's key"
