#!/usr/bin/env bash
# Test certificates for TLS tests, made fresh with the openssl CLI (never committed):
#   gen-test-certs.sh DIR [NAME ...]
# DIR gets ca.pem/ca.key (the CA Gatehouse trusts for client certificates), server.pem/.key
# (127.0.0.1 and localhost, signed by ca), client.pem/.key (signed by ca), and
# other-ca.pem/.key with wrong-client.pem/.key (a client certificate from a CA Gatehouse
# does not trust). Each extra NAME adds NAME.pem/NAME.key, a server certificate signed by ca
# (a rotated certificate); a NAME starting with `untrusted-` is signed by other-ca instead
# (a server certificate its clients do not trust).
set -euo pipefail
dir="$1"
shift
mkdir -p "$dir"
cd "$dir"
ossl() { openssl "$@" 2>/dev/null; }
ca() { # name cn
  ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
    -out "$1.pem" -days 2 -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() { # name cn ca usage
  local ext
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "extendedKeyUsage=$4"
    [ "$4" = serverAuth ] && echo "subjectAltName=IP:127.0.0.1,DNS:localhost"
  } >"$ext"
  ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
    -out "$1.csr" -subj "/CN=$2"
  ossl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "0x$(openssl rand -hex 8)" \
    -out "$1.pem" -days 2 -extfile "$ext"
  rm -f "$1.csr" "$ext"
}
[ -f ca.pem ] || ca ca gatehouse-test-ca
[ -f server.pem ] || leaf server gatehouse-test-server ca serverAuth
[ -f client.pem ] || leaf client envoy-test-client ca clientAuth
[ -f other-ca.pem ] || ca other-ca untrusted-ca
[ -f wrong-client.pem ] || leaf wrong-client intruder other-ca clientAuth
for name in "$@"; do
  case "$name" in
    untrusted-*) leaf "$name" "gatehouse-test-$name" other-ca serverAuth ;;
    *) leaf "$name" "gatehouse-test-$name" ca serverAuth ;;
  esac
done
