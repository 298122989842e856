#!/bin/bash
# Regenerate the seed corpora of the kmip fuzz targets from real answers:
# PyKMIP's own client talks to a pykmip-server started with tests/kms/kms.sh
# and every response message it reads is stored as it came off the wire
# (corpus/kmip_ttlv/NAME), and with the byte that picks the matching request
# of fuzz_kmip_msg.c appended (corpus/kmip_msg/NAME).  Run from the source tree:
#   NBDCRYPT_BUILDDIR=build bash tests/fuzz/make-kmip-corpus.sh
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$top/tests/kms/kms.sh"
kms_init
kms_start seeds
/usr/bin/python3 - "$KMS_DIR" "$(kms_port seeds)" "$top/tests/fuzz/corpus" <<'PY'
import os, sys
from kmip import enums
from kmip.pie import client as pie
from kmip.services import kmip_protocol

kms_dir, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
answers = []
read = kmip_protocol.KMIPProtocol.read
def recording_read(self):
    data = read(self)
    answers.append(bytes(data.buffer))
    return data
kmip_protocol.KMIPProtocol.read = recording_read

# the request each answer goes with in fuzz_kmip_msg.c's table
GET, GET_ATTRIBUTES, DISCOVER, CREATE, REVOKE = range(5)
names = []
def step(name, selector, fn):
    before = len(answers)
    try:
        fn()
    except Exception as e:  # errors are answers too
        print("seed %s: %s" % (name, e), file=sys.stderr)
    for i in range(before, len(answers)):
        names.append((name if i == before else "%s-%d" % (name, i - before), selector, answers[i]))

c = pie.ProxyKmipClient(hostname="127.0.0.1", port=port, cert=kms_dir + "/alice.pem",
                        key=kms_dir + "/alice.key", ca=kms_dir + "/ca.pem",
                        config_file="/dev/null", kmip_version=enums.KMIPVersion.KMIP_1_4)
with c:
    step("create", CREATE, lambda: c.create(enums.CryptographicAlgorithm.AES, 256, name="kek-1"))
    step("get-attributes-preactive", GET_ATTRIBUTES, lambda: c.get_attributes("1", ["State"]))
    step("activate", REVOKE, lambda: c.activate("1"))
    step("get", GET, lambda: c.get("1"))
    step("get-attributes-active", GET_ATTRIBUTES,
         lambda: c.get_attributes("1", ["Name", "State", "Initial Date"]))
    step("locate", CREATE, lambda: c.locate())
    step("discover", DISCOVER, lambda: c.proxy.discover_versions())
    step("query", DISCOVER, lambda: c.proxy.query(
        query_functions=[enums.QueryFunction.QUERY_OPERATIONS]))
    step("revoke-compromised", REVOKE, lambda: c.revoke(
        enums.RevocationReasonCode.KEY_COMPROMISE, "1"))
    step("get-attributes-compromised", GET_ATTRIBUTES, lambda: c.get_attributes("1", ["State"]))
    step("destroy", REVOKE, lambda: c.destroy("1"))
    step("get-not-found", GET, lambda: c.get("1"))
    step("encrypt-not-found", GET, lambda: c.encrypt(b"x" * 16, uid="1",
         cryptographic_parameters={"block_cipher_mode": enums.BlockCipherMode.GCM,
                                   "cryptographic_algorithm": enums.CryptographicAlgorithm.AES}))
for name, selector, data in names:
    for target, suffix in (("kmip_ttlv", b""), ("kmip_msg", bytes([selector]))):
        os.makedirs(os.path.join(out, target), exist_ok=True)
        with open(os.path.join(out, target, "pykmip-" + name), "wb") as f:
            f.write(data + suffix)
    print("seed %s: %d bytes" % (name, len(data)))
PY
