#!/usr/bin/env bash
# unica quickstart on the embedded defaults: SQLite database + SoftHSM2 tokens.
# Everything lives in ./unica-demo (its own SoftHSM2 token store; random PINs in
# unica-demo/secrets, mode 0600). Set UNICA_SKIP_SETUP=1 to skip the package install.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${UNICA_SKIP_SETUP:-}" = 1 ] || bash scripts/setup.sh

demo="${UNICA_DEMO_DIR:-$PWD/unica-demo}"
if [ -e "$demo" ]; then
  [ -f "$demo/.unica-demo" ] || { echo "quickstart: $demo exists and is not a unica demo; refusing to touch it" >&2; exit 1; }
  rm -rf "$demo"
fi
mkdir -p "$demo/tokens" && touch "$demo/.unica-demo"
umask 077
cat > "$demo/softhsm2.conf" <<CONF
directories.tokendir = $demo/tokens
objectstore.backend = file
log.level = ERROR
CONF
export SOFTHSM2_CONF="$demo/softhsm2.conf"
export UNICA_HOME="$demo/home"
export UNICA_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
# secrets: random, kept in a 0600 file, never on a command line of unica
UNICA_PIN="$(openssl rand -hex 8)"; UNICA_SO_PIN="$(openssl rand -hex 8)"; UNICA_PASSPHRASE="$(openssl rand -hex 12)"
printf 'UNICA_PIN=%s\nUNICA_SO_PIN=%s\nUNICA_PASSPHRASE=%s\n' "$UNICA_PIN" "$UNICA_SO_PIN" "$UNICA_PASSPHRASE" > "$demo/secrets"
export UNICA_PIN UNICA_SO_PIN UNICA_PASSPHRASE
step() { printf '\n== %s\n' "$*"; }

step "An HSM token for the CA (SoftHSM2), and the tokens it shows"
softhsm2-util --init-token --free --label unica-ca --pin "$UNICA_PIN" --so-pin "$UNICA_SO_PIN" >/dev/null
unica token list

step "A CA key generated on the token (sensitive, never extractable)"
unica key generate "pkcs11:token=unica-ca;object=root-ca" --type ec-p384

step "A software key in an encrypted PKCS#8 file (scrypt + AES-256)"
unica key generate "file:$demo/keys/ops.pem" --type ec-p256

step "unica home: config + database (SQLite in \$UNICA_HOME)"
unica init

step "Root CA on the token key generated above (self-signed, 20 years, linted before signing)"
unica ca create-root root --subject 'C=CN,O=示例电子口岸认证中心,CN=Example Port Root CA' \
  --key 'pkcs11:token=unica-ca;object=root-ca' --validity 20y

step "Issuing CA: P-256 key in an encrypted file, signed by the root on the token"
unica ca create-sub issuing --parent root --subject 'C=CN,O=示例电子口岸认证中心,CN=Example Port Issuing CA' \
  --key-type ec-p256 --crl-url http://crl.example.cn/issuing.crl --ocsp-url http://ocsp.example.cn/ \
  --ca-issuers-url http://pki.example.cn/issuing.cer
unica ca list

step "An enterprise's request (openssl req; USCC in organizationIdentifier) -> enterprise-sign certificate"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$demo/enterprise.key" \
  -out "$demo/enterprise.csr" -utf8 \
  -subj '/C=CN/O=示例科技有限公司/organizationIdentifier=91350100M000100Y43/CN=张三' \
  -addext 'subjectAltName=email:zhangsan@example.cn' 2>/dev/null
unica issue --ca issuing --profile enterprise-sign --csr "$demo/enterprise.csr" --out "$demo/enterprise.pem" \
  --requester quickstart
unica ca export root --out "$demo/root.pem"; unica ca export issuing --out "$demo/issuing.pem"
openssl verify -CAfile "$demo/root.pem" -untrusted "$demo/issuing.pem" "$demo/enterprise.pem"
openssl x509 -in "$demo/enterprise.pem" -noout -subject -issuer -ext keyUsage,extendedKeyUsage -nameopt utf8
unica cert list

step "Revoke a second certificate and publish the issuing CA's CRL (openssl verifies it)"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$demo/lost.key" \
  -out "$demo/lost.csr" -utf8 -subj '/C=CN/O=示例科技有限公司/organizationIdentifier=91350100M000100Y43/CN=李四' 2>/dev/null
unica issue --ca issuing --profile enterprise-auth --csr "$demo/lost.csr" --out "$demo/lost.pem"
lost_serial=$(openssl x509 -in "$demo/lost.pem" -noout -serial | cut -d= -f2)
unica revoke "$lost_serial" --ca issuing --reason keyCompromise
unica crl generate --ca issuing --out "$demo/issuing.crl"
cat "$demo/issuing.pem" "$demo/root.pem" > "$demo/chain.pem"
openssl crl -inform DER -in "$demo/issuing.crl" -CAfile "$demo/chain.pem" -noout -text | sed -n '1,12p;/Serial Number/,+4p'

step "OCSP: a delegated signer, pre-signed responses, and the responder on 127.0.0.1"
unica ocsp signer --ca issuing
unica ocsp presign
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
unica ocsp serve --port "$port" --ca issuing &
ocsp_pid=$!
trap 'kill $ocsp_pid 2>/dev/null || true' EXIT
python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1); break
    except OSError:
        time.sleep(0.1)
PY
for cert in enterprise lost; do
  openssl ocsp -issuer "$demo/issuing.pem" -cert "$demo/$cert.pem" -url "http://127.0.0.1:$port/" \
    -CAfile "$demo/chain.pem" -no_nonce
done
kill $ocsp_pid; wait $ocsp_pid 2>/dev/null || true
unica audit verify

step "What OpenSC's pkcs11-tool sees on the token"
pkcs11-tool --module "$UNICA_PKCS11_MODULE" --token-label unica-ca --login --pin "$UNICA_PIN" -O

step "Done. Demo state: $demo (secrets in $demo/secrets)"
