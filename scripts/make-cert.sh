#!/usr/bin/env bash
# Make certificates for testing wsev's wss:// listener (never for production).
#
#   scripts/make-cert.sh DIR [--rsa]
#       DIR/ca.crt, DIR/ca.key                 a test CA, "wsev test CA"
#       DIR/localhost.crt, DIR/localhost.key   a leaf for localhost signed by that CA:
#                                              CN localhost, subjectAltName DNS:localhost,
#                                              IP:127.0.0.1, IP:::1
#       Keys are ECDSA P-256, or RSA 2048 with --rsa (a CA made earlier is kept)
#   scripts/make-cert.sh --self-signed DIR [--rsa]
#       DIR/localhost.crt, DIR/localhost.key   a self-signed pair for localhost only
#   scripts/make-cert.sh DIR --leaf NAME DNS1[,DNS2...] [--cn CN] [--rsa]
#       everything the first form makes, and
#       DIR/NAME.crt, DIR/NAME.key             another leaf signed by the same CA, for the
#                                              DNS names given (subjectAltName, in that
#                                              order; "*.example.com" allowed), CN CN or
#                                              else DNS1. DNS list "-": no subjectAltName
#                                              at all, only the CN (--cn needed)
#
# Idempotent: files that already exist are kept (a leaf is remade only if its key or
# certificate is missing, or the CA was made anew). Quiet unless something fails; exits
# non-zero on failure.
# Needs the openssl command (installed with scripts/deps.sh openssl if missing).
set -euo pipefail

usage() {
  echo "usage: $0 DIR [--rsa] | $0 --self-signed DIR [--rsa]" \
    "| $0 DIR --leaf NAME DNS1[,DNS2...] [--cn CN] [--rsa]" >&2
  exit 2
}

self_signed=0
rsa=0
dir=""
leaf_name=""
leaf_dns=""
leaf_cn=""
while [ $# -gt 0 ]; do
  case "$1" in
    --self-signed) self_signed=1 ;;
    --rsa) rsa=1 ;;
    --leaf)
      [ $# -ge 3 ] || usage
      leaf_name="$2"
      leaf_dns="$3"
      shift 2
      ;;
    --cn)
      [ $# -ge 2 ] || usage
      leaf_cn="$2"
      shift
      ;;
    -*) usage ;;
    *) [ -z "$dir" ] || usage; dir="$1" ;;
  esac
  shift
done
[ -n "$dir" ] || usage
if [ -n "$leaf_name" ]; then
  # NAME becomes a file name in DIR: no path of its own, and not the CA or localhost.
  case "$leaf_name" in
    */* | .* | -* | ca | localhost) usage ;;
  esac
  [ $self_signed = 0 ] || usage
  [ "$leaf_dns" != "-" ] || [ -n "$leaf_cn" ] || usage
  [ -n "$leaf_cn" ] || leaf_cn="${leaf_dns%%,*}"
elif [ -n "$leaf_cn" ]; then
  usage
fi

if ! command -v openssl >/dev/null 2>&1; then
  "$(dirname "$0")/deps.sh" openssl >/dev/null
fi

mkdir -p "$dir"
work="$(mktemp -d "${TMPDIR:-/tmp}/wsev-cert.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Run openssl, showing its output only when it fails.
ossl() {
  if ! openssl "$@" >"$work/log" 2>&1; then
    echo "make-cert: openssl $1 failed:" >&2
    cat "$work/log" >&2
    exit 1
  fi
}

new_key() { # FILE: a new private key in unencrypted PKCS#8 PEM
  if [ $rsa = 1 ]; then
    ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"
  else
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
      -pkeyopt ec_param_enc:named_curve -out "$1"
  fi
  chmod 600 "$1"
}

cat >"$work/leaf.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
cat >"$work/ca.ext" <<'EOF'
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF

leaf_key="$dir/localhost.key"
leaf_crt="$dir/localhost.crt"

if [ $self_signed = 1 ]; then
  [ -s "$leaf_key" ] && [ -s "$leaf_crt" ] && exit 0
  new_key "$work/leaf.key"
  sed -i '/^authorityKeyIdentifier/d' "$work/leaf.ext"
  ossl req -new -x509 -key "$work/leaf.key" -subj "/CN=localhost" -days 365 \
    -sha256 -extensions v3_leaf -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[v3_leaf]\n'; cat "$work/leaf.ext") \
    -out "$work/leaf.crt"
  mv "$work/leaf.key" "$leaf_key"
  mv "$work/leaf.crt" "$leaf_crt"
  exit 0
fi

ca_key="$dir/ca.key"
ca_crt="$dir/ca.crt"
if [ ! -s "$ca_key" ] || [ ! -s "$ca_crt" ]; then
  new_key "$work/ca.key"
  ossl req -new -x509 -key "$work/ca.key" -subj "/CN=wsev test CA" -days 365 -sha256 \
    -extensions v3_ca -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\n'; cat "$work/ca.ext") \
    -out "$work/ca.crt"
  mv "$work/ca.key" "$ca_key"
  mv "$work/ca.crt" "$ca_crt"
  rm -f "$leaf_crt" # a new CA: the leaf must be signed again
  [ -z "$leaf_name" ] || rm -f "$dir/$leaf_name.crt"
fi

if [ ! -s "$leaf_key" ] || [ ! -s "$leaf_crt" ]; then
  new_key "$work/leaf.key"
  ossl req -new -key "$work/leaf.key" -subj "/CN=localhost" -out "$work/leaf.csr"
  ossl x509 -req -in "$work/leaf.csr" -CA "$ca_crt" -CAkey "$ca_key" \
    -CAcreateserial -CAserial "$work/ca.srl" -days 30 -sha256 \
    -extfile "$work/leaf.ext" -out "$work/leaf.crt"
  mv "$work/leaf.key" "$leaf_key"
  mv "$work/leaf.crt" "$leaf_crt"
fi

# The extra leaf (--leaf): the same extensions but its own names.
if [ -n "$leaf_name" ] && { [ ! -s "$dir/$leaf_name.key" ] || [ ! -s "$dir/$leaf_name.crt" ]; }; then
  sed -i '/^subjectAltName/d' "$work/leaf.ext"
  if [ "$leaf_dns" != "-" ]; then
    echo "subjectAltName = DNS:${leaf_dns//,/, DNS:}" >>"$work/leaf.ext"
  fi
  new_key "$work/extra.key"
  ossl req -new -key "$work/extra.key" -subj "/CN=$leaf_cn" -out "$work/extra.csr"
  ossl x509 -req -in "$work/extra.csr" -CA "$ca_crt" -CAkey "$ca_key" \
    -CAcreateserial -CAserial "$work/ca.srl" -days 30 -sha256 \
    -extfile "$work/leaf.ext" -out "$work/extra.crt"
  mv "$work/extra.key" "$dir/$leaf_name.key"
  mv "$work/extra.crt" "$dir/$leaf_name.crt"
fi
