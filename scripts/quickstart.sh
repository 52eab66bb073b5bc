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
unset UNICA_DB   # the demo's database is SQLite in its own home, never one named by the environment
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
# its CRL URL goes into the certificates it issues: without it a relying party cannot check the
# issuing CA's certificate, and hard-fail validation (unica verify's default) is INDETERMINATE
unica ca create-root root --subject 'C=CN,O=示例电子口岸认证中心,CN=Example Port Root CA' \
  --key 'pkcs11:token=unica-ca;object=root-ca' --validity 20y --crl-url http://crl.example.cn/root.crl

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

step "Revoke a second certificate and publish the root's and the issuing CA's CRLs (openssl verifies them)"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$demo/lost.key" \
  -out "$demo/lost.csr" -utf8 -subj '/C=CN/O=示例科技有限公司/organizationIdentifier=91350100M000100Y43/CN=李四' 2>/dev/null
unica issue --ca issuing --profile enterprise-auth --csr "$demo/lost.csr" --out "$demo/lost.pem"
lost_serial=$(openssl x509 -in "$demo/lost.pem" -noout -serial | cut -d= -f2)
unica revoke "$lost_serial" --ca issuing --reason keyCompromise
unica crl generate --ca issuing --out "$demo/issuing.crl"
unica crl generate --ca root --out "$demo/root.crl"
openssl crl -inform DER -in "$demo/root.crl" -CAfile "$demo/root.pem" -noout
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
for _ in range(600):  # up to a minute: a loaded machine starts the responder slowly
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1); break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("quickstart: the OCSP responder did not come up")
PY
for cert in enterprise lost; do
  openssl ocsp -issuer "$demo/issuing.pem" -cert "$demo/$cert.pem" -url "http://127.0.0.1:$port/" \
    -CAfile "$demo/chain.pem" -no_nonce
done
kill $ocsp_pid; wait $ocsp_pid 2>/dev/null || true
unica audit verify

step "The enterprise signs a PDF and a declaration (CMS); relying parties verify them"
# the enterprise's key from 'openssl req' as an encrypted PKCS#8 file (on a real "one card" it
# stays on the token: unica token enroll, then unica sign ... --key pkcs11:...)
openssl pkcs8 -topk8 -v2 aes-256-cbc -in "$demo/enterprise.key" -out "$demo/enterprise.p8" \
  -passout env:UNICA_PASSPHRASE
python3 - "$demo/declaration.pdf" <<'PY'
import sys
text = b"BT /F1 18 Tf 72 720 Td (Customs declaration) Tj ET"
objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
out, offsets = bytearray(b"%PDF-1.7\n"), []
for i, body in enumerate(objs, 1):
    offsets.append(len(out)); out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
xref = len(out)
out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
open(sys.argv[1], "wb").write(out)
PY
signer=(--key "file:$demo/enterprise.p8" --cert "$demo/enterprise.pem" --chain "$demo/issuing.pem")
unica sign pdf "$demo/declaration.pdf" "$demo/declaration-signed.pdf" "${signer[@]}" --reason '申报 declaration'
printf '报关单 customs declaration 2026-0001\n' > "$demo/declaration.txt"
unica sign cms "$demo/declaration.txt" "${signer[@]}"
# OpenSSL's default S/MIME-signing purpose accepts the enterprise-sign certificate (clientAuth + emailProtection)
openssl cms -verify -binary -inform DER -in "$demo/declaration.txt.p7s" -content "$demo/declaration.txt" \
  -CAfile "$demo/root.pem" -out /dev/null
# unica verify: hard-fail revocation (the default) -- the root's CRL covers the issuing CA, the
# issuing CA's CRL the enterprise; offline, from the files published above
crls=(--crl "$demo/root.crl" --crl "$demo/issuing.crl")
unica verify pdf "$demo/declaration-signed.pdf" --trust "$demo/root.pem" "${crls[@]}" --offline
unica verify cms "$demo/declaration.txt.p7s" --data "$demo/declaration.txt" --trust "$demo/root.pem" "${crls[@]}" --offline

step "What OpenSC's pkcs11-tool sees on the token"
pkcs11-tool --module "$UNICA_PKCS11_MODULE" --token-label unica-ca --login --pin "$UNICA_PIN" -O

step "Done. Demo state: $demo (secrets in $demo/secrets)"
