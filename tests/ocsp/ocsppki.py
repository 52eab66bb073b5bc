"""Helpers: a throwaway PKI for the OCSP tests, built with ``cryptography`` directly."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
OCSP_NOCHECK = x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.5")


@dataclass(frozen=True)
class Issued:
    key: object
    cert: x509.Certificate
    path: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "unica test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(tmp: Path, stem: str, cert: x509.Certificate) -> Path:
    p = tmp / f"{stem}.pem"
    p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return p


def make_ca(tmp: Path, cn: str, key=None) -> Issued:
    key = key or ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(key, cert, _write(tmp, cn.replace(" ", "_"), cert))


def issue(tmp: Path, ca: Issued, cn: str, *, ocsp_signer: bool = False, key=None,
          serial: int | None = None) -> Issued:
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.cert.subject).public_key(key.public_key())
         .serial_number(serial or x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(hours=1)).not_valid_after(NOW + dt.timedelta(days=90))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))
    if ocsp_signer:
        b = (b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
             .add_extension(x509.UnrecognizedExtension(OCSP_NOCHECK, b"\x05\x00"), critical=False))
    else:
        b = (b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    cert = b.sign(ca.key, hashes.SHA256())
    return Issued(key, cert, _write(tmp, cn.replace(" ", "_"), cert))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """The ASGI app under uvicorn in a background thread, on 127.0.0.1:free port."""

    def __init__(self, app):
        from unica.ocsp.server import bind, make_server

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._sock = bind("127.0.0.1", self.port)
        self._server = make_server(app)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> "ThreadServer":
        self._thread.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


def openssl_ocsp(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "ocsp", *args], capture_output=True, text=True, timeout=timeout)
