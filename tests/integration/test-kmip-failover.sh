#!/bin/bash
# nbdcrypt-test: sanitize
# Failover between KMIP servers and the faults a client must survive: a
# closed port, a listener that never answers, every server down, a server
# certificate from another CA or for another name, another identity's key,
# a server answering garbage.
# nbdcrypt-test: serial
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
kms_init
kms_start a
kms_start b
A=127.0.0.1:$(kms_port a)
B=127.0.0.1:$(kms_port b)

now_ms() { date +%s%3N; }

# Keys live per server (pykmip-server does not replicate): one on b.
id_b=$(kms_tool alice -s "$B" create kek-failover)
kms_tool alice -s "$B" activate "$id_b"
key_b=$(kms_tool alice -s "$B" get "$id_b")

# 1. First server's port closed: the second answers.
closed=$(kms_free_port)
out=$(kms_tool alice -s "127.0.0.1:$closed" -s "$B" --verbose get "$id_b" 2>"$T/err") ||
  fail "closed first server: $(cat "$T/err")"
[ "$out" = "$key_b" ] || fail "closed first server: wrong key"
grep -q "answered by $B" "$T/err" || fail "not answered by b: $(cat "$T/err")"
pass "first server's port closed: second server answered"

# 2. First server accepts and never answers: time-out, then the second,
#    within timeout + 1 s.
silent=$(kms_free_port)
$PY -c 'import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
time.sleep(300)' "$silent" &
listener=$!
on_exit "kill $listener 2>/dev/null"
kms_wait_port "$silent" || fail "silent listener did not start"
for timeout in 2000 5000; do
  t0=$(now_ms)
  out=$(kms_tool alice -s "127.0.0.1:$silent" -s "$B" --timeout "$timeout" --verbose \
    get "$id_b" 2>"$T/err") || fail "silent first server: $(cat "$T/err")"
  elapsed=$(($(now_ms) - t0))
  [ "$out" = "$key_b" ] || fail "silent first server: wrong key"
  grep -q "answered by $B" "$T/err" || fail "silent: not answered by b"
  ((elapsed >= timeout && elapsed < timeout + 1000)) ||
    fail "silent first server took $elapsed ms with a $timeout ms time-out"
  pass "silent first server: second answered after $elapsed ms (time-out $timeout ms)"
done

# 3. Every server down: one error naming each server and what it said.
closed2=$(kms_free_port)
t0=$(now_ms)
if kms_tool alice -s "127.0.0.1:$closed" -s "127.0.0.1:$silent" -s "127.0.0.1:$closed2" \
  --timeout 1500 get "$id_b" 2>"$T/err"; then
  fail "all servers down: succeeded"
fi
elapsed=$(($(now_ms) - t0))
want="kmip-tool: all KMIP servers failed: 127.0.0.1:$closed: connection refused; 127.0.0.1:$silent: timed out after 1500 ms (handshake); 127.0.0.1:$closed2: connection refused"
[ "$(cat "$T/err")" = "$want" ] || fail "all down: got '$(cat "$T/err")', want '$want'"
((elapsed < 2500)) || fail "all down took $elapsed ms"
if kms_tool alice -s "127.0.0.1:$closed" get 1 2>"$T/err"; then fail "single closed server"; fi
[ "$(cat "$T/err")" = "kmip-tool: kms 127.0.0.1:$closed: connection refused" ] ||
  fail "single server down: $(cat "$T/err")"
pass "all servers down: the error names each server"

# 4. Server certificate from another CA: refused, and the next server used.
kms_start rogue "" rogue
R=127.0.0.1:$(kms_port rogue)
if kms_tool alice -s "$R" get "$id_b" 2>"$T/err"; then fail "rogue server accepted"; fi
grep -q "kms $R: tls handshake failed: server certificate not trusted" "$T/err" ||
  fail "rogue: $(cat "$T/err")"
out=$(kms_tool alice -s "$R" -s "$B" get "$id_b") || fail "rogue then b"
[ "$out" = "$key_b" ] || fail "rogue then b: wrong key"
pass "server certificate from another CA refused; failover to the next"

# 5. Our CA but a certificate for another name: refused (host name check).
kms_start wrongname "" wrongname
W=127.0.0.1:$(kms_port wrongname)
if kms_tool alice -s "$W" get "$id_b" 2>"$T/err"; then fail "wrong-name server accepted"; fi
grep -q "kms $W: tls handshake failed: server certificate not trusted (.*mismatch)" "$T/err" ||
  fail "wrong name: $(cat "$T/err")"
pass "server certificate for another host name refused"

# 6. Another identity asking for alice's key: PermissionDenied, as such.
if kms_tool bob -s "$B" get "$id_b" 2>"$T/err"; then fail "bob got alice's key"; fi
grep -q "kms $B: Get failed: PermissionDenied" "$T/err" || fail "bob get: $(cat "$T/err")"
[ -z "$(kms_tool bob -s "$B" locate kek-failover)" ] || fail "bob's locate sees alice's key"
if kms_tool bob -s "$B" encrypt "$id_b" 00 2>"$T/err"; then fail "bob encrypted"; fi
grep -q "Encrypt failed: PermissionDenied" "$T/err" || fail "bob encrypt: $(cat "$T/err")"
# a KMS error is an answer: no failover to the next server for it
if kms_tool bob -s "$B" -s "$A" get "$id_b" 2>"$T/err"; then fail "bob via a"; fi
grep -q "kms $B: Get failed: PermissionDenied" "$T/err" || fail "bob b,a: $(cat "$T/err")"
pass "second identity: PermissionDenied surfaced, no failover on KMS answers"

# 7. Revoked then destroyed: clear errors.
kms_tool alice -s "$B" revoke "$id_b"
[ "$(kms_tool alice -s "$B" get "$id_b")" = "$key_b" ] || fail "get of a revoked key"
if kms_tool alice -s "$B" encrypt "$id_b" 00 2>"$T/err"; then fail "encrypt with revoked key"; fi
grep -q "Encrypt failed: PermissionDenied (The encryption key must be in the Active state" \
  "$T/err" || fail "revoked encrypt: $(cat "$T/err")"
kms_tool alice -s "$B" destroy "$id_b"
if kms_tool alice -s "$B" get "$id_b" 2>"$T/err"; then fail "get of a destroyed key"; fi
grep -q "kms $B: Get failed: ItemNotFound (Could not locate object: $id_b)" "$T/err" ||
  fail "destroyed get: $(cat "$T/err")"
pass "revoked then destroyed kek: clear errors"

# 8. A server answering garbage: refused as malformed, next server used.
junk=$(kms_free_port)
$PY -c 'import socket, ssl, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(4)
while True:
    c, _ = s.accept()
    try:
        t = ctx.wrap_socket(c, server_side=True)
        t.recv(8)
        t.sendall(bytes.fromhex("42007b01000000104200940800000001") + b"\x31" + b"\0" * 7)
        time.sleep(0.2)
        t.close()
    except Exception:
        c.close()' "$junk" "$KMS_DIR/server.pem" "$KMS_DIR/server.key" &
junkpid=$!
on_exit "kill $junkpid 2>/dev/null"
kms_wait_port "$junk" || fail "junk server did not start"
id_a=$(kms_tool alice -s "$A" create kek-junk)
if kms_tool alice -s "127.0.0.1:$junk" get "$id_a" 2>"$T/err"; then fail "junk accepted"; fi
grep -q "kms 127.0.0.1:$junk: malformed kmip message .*wrong type for this tag" "$T/err" ||
  fail "junk: $(cat "$T/err")"
out=$(kms_tool alice -s "127.0.0.1:$junk" -s "$A" get "$id_a") || fail "junk then a"
[[ $out =~ ^[0-9a-f]{64}$ ]] || fail "junk then a: $out"
pass "garbage answer refused without a crash; failover to the next server"
