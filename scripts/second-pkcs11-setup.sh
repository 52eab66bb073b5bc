#!/usr/bin/env bash
# A second, independent PKCS#11 implementation for the key backup tests: NSS's software token
# (libsoftokn3.so from Debian's libnss3). Installs what tests/keybackup/second_pkcs11.py needs
# (libnss3, certutil from libnss3-tools, a C compiler for the small forwarding module that hands
# NSS its database directory), then makes a throwaway token and runs on it what a key backup needs
# (EC P-256, ECDSA, AES key wrap of an EC key, ECDH). Prints the NSS module path. Idempotent; run as
# root or with sudo. Each test makes its own token with its own random PIN, so no PIN is set here.
# In CI, export UNICA_REQUIRE_SECOND_PKCS11=1 afterwards: the tests then fail, not skip, without it.
# (openCryptoki 3.8.1, Debian 12's, was tried first: its software token has no EC mechanism and no
#  AES key wrap -- see the notes -- so it is not used.)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=""
for p in libnss3 libnss3-tools gcc libc6-dev; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

python3 -m tests.keybackup.second_pkcs11 >&2
python3 -c 'from tests.keybackup.second_pkcs11 import softokn_path; print(softokn_path())'
