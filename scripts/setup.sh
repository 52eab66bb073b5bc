#!/usr/bin/env bash
# Install what unica and its tests need on a fresh Debian/Ubuntu machine (run as root or with sudo):
# SoftHSM2 (the token), OpenSC (pkcs11-tool), curl + OpenSSL's PKCS#11 engine, poppler-utils (pdfsig), NSS tools (certutil), Bouncy
# Castle on a Java runtime (a third RFC 5280 opinion in the differential test), zsh and fish (the
# completion scripts are tried in them), PostgreSQL 15 binaries
# (the tests start a throwaway cluster themselves), and unica itself with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

packages="softhsm2 opensc poppler-utils libnss3-tools libbcprov-java zsh fish"
# OpenSSL's PKCS#11 engine: curl (also installed) does TLS client authentication with a key on a token
packages="$packages curl libengine-pkcs11-openssl"
# nginx in front of unica serve with its TLS key on a token (the proxy mode's test)
packages="$packages nginx-light"
if ! command -v java >/dev/null 2>&1; then packages="$packages default-jre-headless"; fi
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then packages="$packages postgresql-15"; fi
missing=""
for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
python3 -m pip install -q -e '.[test]'
