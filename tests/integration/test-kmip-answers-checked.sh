#!/bin/bash
# nbdcrypt-test: sanitize
# A KMS answer that does not match its request is refused, naming the field
# and both values, and no key is handed out: a TLS proxy in front of a real
# pykmip-server rewrites one field of each Get answer (unique identifier,
# operation, object type, cryptographic algorithm, length).  Unchanged
# answers pass through the same proxy.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$NBDCRYPT_SRCDIR/tests/kms/kms.sh"
kms_skip_unless_available
kms_init
kms_start a
S=127.0.0.1:$(kms_port a)
id=$(kms_tool alice -s "$S" create kek-answers)
kms_tool alice -s "$S" activate "$id"
key=$(kms_tool alice -s "$S" get "$id")
[ "$id" = 1 ] || fail "a fresh server's first key is \"$id\", the rewrites below expect \"1\""

# The proxy: TLS to the client with the server's identity, TLS to pykmip with
# alice's; every answer has the bytes FROM (hex, in $T/rule as "FROM TO")
# replaced by TO.
proxy_port=$(kms_free_port)
: >"$T/rule"
$PY - "$proxy_port" "$(kms_port a)" "$KMS_DIR" "$T/rule" <<'PY' &
import socket, ssl, struct, sys
port, upstream, d, rule_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(d + "/server.pem", d + "/server.key")
client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client.load_verify_locations(d + "/ca.pem")
client.load_cert_chain(d + "/alice.pem", d + "/alice.key")
client.maximum_version = ssl.TLSVersion.TLSv1_2
def read_msg(s):
    buf = b""
    while len(buf) < 8:
        part = s.recv(8 - len(buf))
        if not part:
            return None
        buf += part
    want = 8 + struct.unpack(">I", buf[4:8])[0]
    while len(buf) < want:
        part = s.recv(want - len(buf))
        if not part:
            return None
        buf += part
    return buf
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", port))
l.listen(4)
while True:
    c, _ = l.accept()
    try:
        down = server.wrap_socket(c, server_side=True)
        up = client.wrap_socket(socket.create_connection(("127.0.0.1", upstream)),
                                server_hostname="127.0.0.1")
        while True:
            req = read_msg(down)
            if req is None:
                break
            up.sendall(req)
            resp = read_msg(up)
            rule = open(rule_file).read().split()
            if len(rule) == 2:
                resp = resp.replace(bytes.fromhex(rule[0]), bytes.fromhex(rule[1]))
            down.sendall(resp)
    except Exception as e:
        print("proxy:", e, file=sys.stderr)
    finally:
        c.close()
PY
proxy=$!
on_exit "kill $proxy 2>/dev/null"
kms_wait_port "$proxy_port" || fail "proxy did not start"
P=127.0.0.1:$proxy_port

[ "$(kms_tool alice -s "$P" get "$id")" = "$key" ] || fail "unchanged answer through the proxy"
pass "an unchanged answer passes the proxy"

# FROM TO EXPECTED-MESSAGE
check() {
  echo "$1 $2" >"$T/rule"
  if kms_tool alice -s "$P" get "$id" >"$T/out" 2>"$T/err"; then
    fail "rewritten answer ($1 -> $2) accepted: $(cat "$T/out")"
  fi
  [ ! -s "$T/out" ] || fail "a key was printed for a rewritten answer"
  grep -qF "kms $P: Get answer: $3" "$T/err" || fail "$1 -> $2: $(cat "$T/err")"
  pass "Get answer with $3: refused"
}
check 42009407000000013100000000000000 42009407000000013200000000000000 \
  'Unique Identifier is "2", expected "1"'
check 42005c05000000040000000a00000000 42005c05000000040000001200000000 \
  'Operation is Activate, expected Get'
check 42005705000000040000000200000000 42005705000000040000000700000000 \
  'Object Type is 7 (SecretData), expected 2 (SymmetricKey)'
check 42002805000000040000000300000000 42002805000000040000000200000000 \
  'Cryptographic Algorithm is 2 (3DES), expected 3 (AES)'
check 42002a02000000040000010000000000 42002a02000000040000008000000000 \
  'Cryptographic Length is 128, expected 256'
: >"$T/rule"
[ "$(kms_tool alice -s "$P" get "$id")" = "$key" ] || fail "after the rewrites"
