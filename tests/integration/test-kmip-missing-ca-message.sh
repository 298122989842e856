#!/usr/bin/env bash
# nbdcrypt-test: sanitize
# A kmip provider whose CA file (or client certificate) does not exist says
# so with the system's reason, naming the file, not OpenSSL's "x509
# certificate routines::system lib".  Exit 1.  No KMS is needed: the TLS
# context is set up before any connection.
. "$(dirname "$0")/lib.sh"

printf 'x\n' >"$T/cert.pem"
printf 'x\n' >"$T/key.pem"
chmod 600 "$T/key.pem"
kms_cfg() {
  cat >"$T/kms.json" <<JSON
{"providers": {"kms": {"type": "kmip", "servers": ["127.0.0.1:1"], "ca": "$1",
                       "cert": "$2", "key": "$T/key.pem"}},
 "default_provider": "kms"}
JSON
}
kms_cfg "$T/missing-ca.pem" "$T/cert.pem"
must_refuse 1 "kmip: cannot open CA file $T/missing-ca.pem: No such file or directory" - \
  -- nbdcrypt --config "$T/kms.json" kek list
if grep -q "system lib" "$T/must_refuse.err"; then fail "OpenSSL's text: $(cat "$T/must_refuse.err")"; fi
pass "a missing CA file is named with its reason"

printf 'x\n' >"$T/ca.pem"
kms_cfg "$T/ca.pem" "$T/missing-cert.pem"
must_refuse 1 "kmip: cannot open client certificate $T/missing-cert.pem: No such file or directory" - \
  -- nbdcrypt --config "$T/kms.json" kek list
pass "a missing client certificate is named with its reason"
