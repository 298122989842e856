# tests/kms/kms.sh: throw-away PKI and pykmip-server instances for tests.
# Source it, call kms_init once, then kms_start NAME as often as needed;
# kms_cleanup (installed as an EXIT trap by kms_init) stops only the process
# groups this file started and removes its temporary directory.
#
#   kms_init                      PKI in $KMS_DIR: ca.pem, server.{pem,key},
#                                 alice.{pem,key}, bob.{pem,key} (clientAuth, one
#                                 CN each), and otherca.pem + rogue.{pem,key}: a
#                                 server identity from another CA, wrongname.*:
#                                 our CA but only DNS:kms.example.com
#   kms_start NAME [PORT] [ID]    start pykmip-server NAME (own db, policy dir,
#                                 log) on PORT (default: a free one) with server
#                                 identity ID (server|rogue|wrongname)
#                                 $KMS_POLICY: an operation policy file copied
#                                 into its policy directory (waits until loaded);
#                                 $KMS_SLUGS_URL: groups from that SLUGS service
#   kms_slugs_start USER=GROUP... a fake SLUGS service (the group source PyKMIP's
#                                 policies need) on a free port; sets KMS_SLUGS_URL
#   kms_stop NAME                 TERM its process group, KILL after 1 s
#   kms_port NAME                 print its port
#   kms_free_port                 print a free loopback port
#   kms_tool ID [kmip-tool args]  run kmip-tool as client identity ID
#   kms_config FILE ID SERVER...  write an nbdcrypt config with provider "kms"
#                                 (and "local" native) for identity ID; with
#                                 $KMS_VERSION set, its kmip_version
#   kms_keys CONFIG PROVIDER ...  run keys-tool (provider operations, KEK states)
#
# Needs: openssl, /usr/bin/pykmip-server, setsid, python3 (for ports).

KMS_PYTHON=/usr/bin/python3
KMS_SERVER_BIN=${KMS_SERVER_BIN:-/usr/bin/pykmip-server}
KMS_TOOL=${KMS_TOOL:-${NBDCRYPT_BUILDDIR:-.}/tests/kms/kmip-tool}
KMS_KEYS_TOOL=${KMS_KEYS_TOOL:-${NBDCRYPT_BUILDDIR:-.}/tests/kms/keys-tool}
KMS_NAMES=()

# A missing tool fails the test loudly: CI installs every one of them.
kms_skip_unless_available() {
  local missing=""
  [ -x "$KMS_SERVER_BIN" ] && "$KMS_PYTHON" -c 'import kmip' 2>/dev/null ||
    missing+=" pykmip-server (python3-pykmip)"
  command -v openssl >/dev/null || missing+=" openssl"
  command -v setsid >/dev/null || missing+=" setsid"
  [ -x "$KMS_TOOL" ] || missing+=" $KMS_TOOL (not built)"
  if [ -n "$missing" ]; then
    echo "FAIL: required for this test but missing:$missing" >&2
    exit 1
  fi
}

# _kms_identity CA NAME CN EKU [SAN]
_kms_identity() {
  local ca=$1 name=$2 cn=$3 eku=$4 san=${5:-}
  local ext="$KMS_DIR/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    if [ -n "$san" ]; then echo "subjectAltName=$san"; fi
  } > "$ext"
  openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$cn" \
    -keyout "$KMS_DIR/$name.key" -out "$KMS_DIR/$name.csr" 2>/dev/null || return 1
  openssl x509 -req -in "$KMS_DIR/$name.csr" -CA "$KMS_DIR/$ca.pem" -CAkey "$KMS_DIR/$ca.key" \
    -CAcreateserial -days 2 -sha256 -extfile "$ext" -out "$KMS_DIR/$name.pem" 2>/dev/null ||
    return 1
  chmod 600 "$KMS_DIR/$name.key"
}

_kms_ca() {
  local name=$1 cn=$2
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -sha256 -subj "/CN=$cn" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$KMS_DIR/$name.key" -out "$KMS_DIR/$name.pem" 2>/dev/null
}

kms_init() {
  KMS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/nbdcrypt-kms.XXXXXX") || return 1
  # compose with tests/integration/lib.sh's exit hooks when it is loaded
  if declare -F on_exit >/dev/null; then
    on_exit kms_cleanup
  else
    trap kms_cleanup EXIT
  fi
  _kms_ca ca "nbdcrypt test KMS CA" &&
    _kms_identity ca server "kms server" serverAuth "IP:127.0.0.1,DNS:localhost" &&
    _kms_identity ca alice alice clientAuth &&
    _kms_identity ca bob bob clientAuth &&
    _kms_ca otherca "some other CA" &&
    _kms_identity otherca rogue "rogue kms" serverAuth "IP:127.0.0.1,DNS:localhost" &&
    _kms_identity ca wrongname "kms elsewhere" serverAuth "DNS:kms.example.com" || {
    echo "kms_init: cannot make the test PKI" >&2
    return 1
  }
}

kms_free_port() {
  "$KMS_PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Wait (bounded) until 127.0.0.1:PORT accepts a TCP connection.
kms_wait_port() {
  local port=$1 tries=${2:-150}
  local i
  for ((i = 0; i < tries; i++)); do
    if "$KMS_PYTHON" -c 'import socket, sys
s = socket.socket()
s.settimeout(0.5)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$port" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

kms_start() {
  local name=$1 port=${2:-} ident=${3:-server}
  [ -n "$port" ] || port=$(kms_free_port)
  local dir="$KMS_DIR/$name"
  mkdir -p "$dir/policies"
  cat > "$dir/server.conf" <<EOF
[server]
hostname=127.0.0.1
port=$port
certificate_path=$KMS_DIR/$ident.pem
key_path=$KMS_DIR/$ident.key
ca_path=$KMS_DIR/ca.pem
auth_suite=TLS1.2
policy_path=$dir/policies
enable_tls_client_auth=True
database_path=$dir/pykmip.db
logging_level=DEBUG
EOF
  if [ -n "${KMS_SLUGS_URL:-}" ]; then
    printf '\n[auth:slugs]\nenabled=True\nurl=%s\n' "$KMS_SLUGS_URL" >>"$dir/server.conf"
  fi
  if [ -n "${KMS_POLICY:-}" ]; then
    cp "$KMS_POLICY" "$dir/policies/"
  fi
  # setsid: its own session and process group, so that we can stop exactly
  # it and the workers it forks, and nothing else.
  NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 \
    setsid "$KMS_SERVER_BIN" -f "$dir/server.conf" -l "$dir/server.log" \
    >"$dir/stdout.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" > "$dir/pid"
  KMS_NAMES+=("$name")
  echo "$port" > "$dir/port"
  if ! kms_wait_port "$port"; then
    echo "kms_start: pykmip-server $name did not listen on port $port; log:" >&2
    tail -20 "$dir/server.log" "$dir/stdout.log" >&2 2>/dev/null
    return 1
  fi
  if [ -n "${KMS_POLICY:-}" ]; then
    local i
    for ((i = 0; i < 100; i++)); do
      grep -q "Loading policies for file: .*$(basename "$KMS_POLICY")" "$dir/server.log" && return 0
      sleep 0.1
    done
    echo "kms_start: pykmip-server $name did not load $KMS_POLICY" >&2
    return 1
  fi
}

# kms_slugs_start USER=GROUP...: a SLUGS stand-in (GET /users/U and
# /users/U/groups), stopped with the other servers.
kms_slugs_start() {
  local port
  port=$(kms_free_port)
  mkdir -p "$KMS_DIR/slugs"
  setsid "$KMS_PYTHON" - "$port" "$@" >"$KMS_DIR/slugs/log" 2>&1 <<'PY' &
import http.server, json, sys
port = int(sys.argv[1])
groups = {}
for arg in sys.argv[2:]:
    user, group = arg.split("=", 1)
    groups.setdefault(user, []).append(group)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "users" and parts[1] in groups:
            body = json.dumps({"groups": groups[parts[1]]} if parts[2:] == ["groups"] else
                              {"user": parts[1]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.end_headers()
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
  echo $! >"$KMS_DIR/slugs/pid"
  echo "$port" >"$KMS_DIR/slugs/port"
  KMS_NAMES+=(slugs)
  KMS_SLUGS_URL=http://127.0.0.1:$port/
  kms_wait_port "$port" || { echo "kms_slugs_start: no SLUGS on $port" >&2; return 1; }
}

kms_port() {
  cat "$KMS_DIR/$1/port"
}

kms_stop() {
  local name=$1 pidfile="$KMS_DIR/$1/pid"
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  rm -f "$pidfile"
  # setsid ran the server as a session leader: its pid is its group id
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  local i
  for ((i = 0; i < 10; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 0
}

kms_cleanup() {
  local name
  for name in "${KMS_NAMES[@]}"; do
    kms_stop "$name"
  done
  if [ -n "${KMS_DIR:-}" ] && [ -d "$KMS_DIR" ]; then
    if [ -n "${KMS_KEEP:-}" ]; then
      echo "kms: keeping $KMS_DIR" >&2
    else
      rm -rf "$KMS_DIR"
    fi
  fi
}

# kms_tool ID [ARGS...]: kmip-tool with client identity ID and the test CA.
kms_tool() {
  local ident=$1
  shift
  "$KMS_TOOL" --ca "$KMS_DIR/ca.pem" --cert "$KMS_DIR/$ident.pem" --key "$KMS_DIR/$ident.key" "$@"
}

# kms_keys CONFIG PROVIDER COMMAND [ARG]: keys-tool (tests/kms/keys-tool.c).
kms_keys() {
  "$KMS_KEYS_TOOL" "$@"
}

# kms_config FILE ID SERVER... (SERVER as host:port)
kms_config() {
  local file=$1 ident=$2
  shift 2
  local servers="" s version=""
  [ -z "${KMS_VERSION:-}" ] || version=", \"kmip_version\": \"$KMS_VERSION\""
  for s in "$@"; do
    servers+="${servers:+, }\"$s\""
  done
  cat > "$file" <<EOF
{
  "providers": {
    "kms": {"type": "kmip", "servers": [$servers],
            "ca": "$KMS_DIR/ca.pem", "cert": "$KMS_DIR/$ident.pem",
            "key": "$KMS_DIR/$ident.key", "timeout_ms": ${KMS_TIMEOUT_MS:-5000}$version},
    "local": {"type": "native", "keystore": "$KMS_DIR/keystore-$ident.json"}
  },
  "default_provider": "kms"
}
EOF
}
