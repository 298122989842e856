#!/usr/bin/env bash
# The online recrypt under each nbdkit thread model: with the file plugin
# (parallel) its workers read ahead through the engine's plugin context
# while it writes, and say so; under a serialize_requests server
# (noparallel filter) it makes one plugin request at a time and still
# finishes with the data intact; a serialize_all_requests or
# serialize_connections server, which allows no second handle busy beside a
# client's, refuses to start or resume it with a message that says why and
# how to finish offline, and the disk is unchanged.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib-filter.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need nbdcopy nbdinfo

img=$T/disk.img
new_disk "$img" 64M >/dev/null
head -c 48M /dev/urandom >"$T/plain.bin"
serve w "$img"
nbdcopy "$T/plain.bin" "$(uri w)"
server_stop w

recrypt_online() { # NAME NBDKIT-ARGS...: recrypt online to the end; data intact, new volume key
  local name=$1 vk
  shift
  vk=$(nbdcrypt_volume_key "$img")
  server_start "$name" --filter="$NBDCRYPT_FILTER" "$@" nbdcrypt-reencrypt=recrypt
  nbdinfo --size "$(uri "$name")" >/dev/null
  for _ in $(seq 300); do log_has "$name" "recrypt of disk .* finished" && break; sleep 0.1; done
  log_has "$name" "recrypt of disk .* finished" || fail "$name: the recrypt did not finish in 30 s"
  nbdcopy "$(uri "$name")" "$T/$name.bin"
  server_stop "$name"
  cmp "$T/plain.bin" <(head -c 48M "$T/$name.bin") || fail "$name: data differs after the recrypt"
  [ -z "$(requirements "$img")" ] || fail "$name: requirement flag left"
  [ "$(nbdcrypt_volume_key "$img")" != "$vk" ] || fail "$name: the volume key did not change"
}

recrypt_online p file file="$img"
log_has p "recrypt of disk .* started at 0% .*it reads ahead while it writes \(parallel plugin\)" ||
  fail "the file plugin's recrypt does not say it reads in parallel: $(grep -m1 'started at' "$T/p.log")"
pass "parallel plugin: the workers read ahead while the engine writes; data intact, new volume key"

recrypt_online s --filter=noparallel file file="$img" serialize=requests
log_has s "recrypt of disk .* started at 0% .*one plugin request at a time \(serialize_requests plugin\)" ||
  fail "the serialized recrypt does not say so: $(grep -m1 'started at' "$T/s.log")"
pass "serialize_requests server: one plugin request at a time; data intact, new volume key"

refused() { # NAME SERIALIZE MODEL WHAT HOW
  server_start "$1" --filter="$NBDCRYPT_FILTER" --filter=noparallel file file="$img" \
    serialize="$2" nbdcrypt-reencrypt=recrypt
  if nbdinfo --size "$(uri "$1")" >/dev/null 2>&1; then fail "$1: served with serialize=$2"; fi
  log_has "$1" "cannot $4 a recrypt online: the server's thread model is $3 .*\); $5" ||
    fail "$1: no clear refusal: $(grep -m1 'cannot unlock' "$T/$1.log")"
  server_stop "$1"
}
sum=$(sha_file "$img")
refused a all-requests serialize_all_requests run "run nbdcrypt recrypt offline"
refused c connections serialize_connections run "run nbdcrypt recrypt offline"
[ "$(sha_file "$img")" = "$sum" ] || fail "a refusal changed the disk"
pass "serialize_all_requests and serialize_connections servers refuse an online recrypt, disk unchanged"

kill_after_first_step recrypt "$img"
[ -n "$(requirements "$img")" ] || fail "the offline recrypt was not left half way"
sum=$(sha_file "$img")
server_start h --filter="$NBDCRYPT_FILTER" --filter=noparallel file file="$img" serialize=all-requests
if nbdinfo --size "$(uri h)" >/dev/null 2>&1; then fail "served a half-way disk with serialize=all-requests"; fi
log_has h "cannot resume a recrypt online: the server's thread model is serialize_all_requests .*\); finish it offline with nbdcrypt recrypt --resume" ||
  fail "no clear refusal of the resume: $(grep -m1 'cannot unlock' "$T/h.log")"
server_stop h
[ "$(sha_file "$img")" = "$sum" ] || fail "the refused resume changed the disk"
nbdcrypt recrypt --resume "$img" >/dev/null || fail "the offline resume failed"
serve f "$img"
nbdcopy "$(uri f)" "$T/f.bin"
server_stop f
cmp "$T/plain.bin" <(head -c 48M "$T/f.bin") || fail "data differs after the offline resume"
pass "a half-way disk on a serialize_all_requests server: resume refused, disk unchanged, offline resume finishes it"
