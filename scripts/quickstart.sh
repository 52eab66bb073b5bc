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

step "What OpenSC's pkcs11-tool sees on the token"
pkcs11-tool --module "$UNICA_PKCS11_MODULE" --token-label unica-ca --login --pin "$UNICA_PIN" -O

step "Done. Demo state: $demo (secrets in $demo/secrets)"
