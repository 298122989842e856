#!/usr/bin/env bash
# The online and offline recrypt share one progress record: a recrypt
# started offline (nbdcrypt recrypt) and SIGKILLed after its first step is
# resumed by the filter (the default nbdcrypt-reencrypt=resume) and
# finished while served; one started online and SIGKILLed half way is
# finished offline with nbdcrypt recrypt --resume.  Data intact both times,
# the volume key new each time.
# nbdcrypt-test: serial
. "$(dirname "$0")/lib-filter.sh"
. "$(dirname "$0")/lib-reencrypt.sh"
need nbdcopy nbdinfo

img=$T/disk.img
new_disk "$img" 96M >/dev/null
head -c 80M /dev/urandom >"$T/plain.bin"
serve w "$img"
nbdcopy "$T/plain.bin" "$(uri w)"
server_stop w
vk0=$(nbdcrypt_volume_key "$img")

kill_after_first_step recrypt "$img"
[ -n "$(requirements "$img")" ] || fail "the offline recrypt was not left half way"
serve a "$img"
nbdinfo --size "$(uri a)" >/dev/null # the export's first connection unlocks (and resumes) it
for i in $(seq 300); do log_has a "recrypt of disk .* finished" && break; sleep 0.1; done
log_has a "recrypt of disk .* resumed at" || fail "the filter did not resume the recrypt"
log_has a "recrypt of disk .* finished" || fail "the resumed recrypt did not finish within 30 s"
nbdcopy "$(uri a)" "$T/a.bin"
server_stop a
cmp "$T/plain.bin" "$T/a.bin" || fail "data differs after the online resume"
[ -z "$(requirements "$img")" ] || fail "requirement flag left"
vk1=$(nbdcrypt_volume_key "$img")
[ "$vk1" != "$vk0" ] || fail "the volume key did not change"
pass "started offline, killed, resumed and finished online: data intact, new volume key"

# SIGTERM: the server stops the recrypt at a resumable point (the record
# says how far, no hotzone in progress); the next start finishes it.
export NBDCRYPT_TEST_HOTZONE_DELAY_MS=1500
serve t "$img" nbdcrypt-reencrypt=recrypt
unset NBDCRYPT_TEST_HOTZONE_DELAY_MS
nbdinfo --size "$(uri t)" >/dev/null
for i in $(seq 200); do log_has t "recrypt 20% done" && break; sleep 0.1; done
pid=$(cat "$T/t.pid")
kill -TERM "$pid"
for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "nbdkit did not exit within 10 s of SIGTERM"
log_has t "recrypt stopped at a resumable point" || fail "SIGTERM: no stop at a resumable point"
nbdcrypt info "$img" | grep -q "operation: *recrypt in progress, [1-9][0-9.]*% done ([0-9]* of [0-9]* bytes)$" ||
  fail "SIGTERM: the record does not show a clean stop: $(nbdcrypt info "$img" | grep operation)"
serve t2 "$img"
nbdinfo --size "$(uri t2)" >/dev/null
for i in $(seq 300); do log_has t2 "recrypt of disk .* finished" && break; sleep 0.1; done
log_has t2 "recrypt of disk .* finished" || fail "the recrypt stopped by SIGTERM did not finish"
nbdcopy "$(uri t2)" "$T/t.bin"
server_stop t2
cmp "$T/plain.bin" "$T/t.bin" || fail "data differs after the SIGTERM stop and resume"
vk1b=$(nbdcrypt_volume_key "$img")
[ "$vk1b" != "$vk1" ] || fail "the volume key did not change"
vk1=$vk1b
pass "SIGTERM stops the online recrypt at a resumable point; the next start finishes it"

export NBDCRYPT_TEST_HOTZONE_DELAY_MS=2000
serve b "$img" nbdcrypt-reencrypt=recrypt
unset NBDCRYPT_TEST_HOTZONE_DELAY_MS
nbdinfo --size "$(uri b)" >/dev/null
for i in $(seq 200); do log_has b "recrypt 20% done" && break; sleep 0.1; done
log_has b "recrypt 20% done" || fail "the online recrypt made no step within 20 s"
kill -KILL "$(cat "$T/b.pid")"
server_stop b 2>/dev/null || true
[ -n "$(requirements "$img")" ] || fail "the online recrypt was not left half way"
nbdcrypt info "$img" | grep -q "operation: *recrypt in progress, [0-9.]*% done" ||
  fail "info does not show the operation: $(nbdcrypt info "$img")"
nbdcrypt recrypt --resume "$img" >/dev/null || fail "the offline resume failed"
[ -z "$(requirements "$img")" ] || fail "requirement flag left"
vk2=$(nbdcrypt_volume_key "$img")
[ "$vk2" != "$vk1" ] || fail "the volume key did not change"
serve c "$img"
nbdcopy "$(uri c)" "$T/c.bin"
server_stop c
cmp "$T/plain.bin" "$T/c.bin" || fail "data differs after the offline resume"
pass "started online, killed, finished offline with recrypt --resume: data intact, new volume key"
