"""Coverage-guided fuzzing with atheris (libFuzzer) -- for long local runs, not run in CI.

    pip install atheris
    python tests/fuzz/atheris_parsers.py ocsp  [libFuzzer flags] [CORPUS_DIR ...]
    python tests/fuzz/atheris_parsers.py csr   -atheris_runs=200000 /tmp/corpus-csr
    python tests/fuzz/atheris_parsers.py get   -max_total_time=600 -timeout=5 /tmp/corpus-get
    python tests/fuzz/atheris_parsers.py uri   -max_total_time=600

Targets: ``ocsp`` (unica.ocsp.request.parse_request), ``get`` (decode_get_path, then
parse_request), ``csr`` (unica.ca.request.parse_csr), ``uri`` (unica.hsm.uri.parse_key_uri).
A CORPUS_DIR that is empty (or missing) is filled with real seeds first (OCSP requests /
CSRs made with ``cryptography``). The contract is the one of the hypothesis tests: the
parser returns or raises a ``unica.errors.UnicaError``; anything else is a crash that
libFuzzer reports (with the input saved as ``crash-*``). Use ``-timeout=5`` to turn a hang
into a failure, ``-rss_limit_mb=1024`` for memory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["unica"]):
    from unica.ca.request import parse_csr
    from unica.errors import UnicaError
    from unica.hsm.uri import parse_key_uri
    from unica.ocsp.request import RequestLimits, decode_get_path, parse_request

LIMITS = RequestLimits()


def _seeds(target: str) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.x509 import ocsp

    der = serialization.Encoding.DER
    if target == "uri":
        return [b"pkcs11:token=CA%20Root;object=root-2026;id=%01%02?module-path=/x.so", b"file:/etc/unica/k.pem",
                b"pkcs11:serial=1234;slot-id=3;type=private?pin-source=file:/run/pin"]
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string("CN=atheris,O=unica,C=CN")
    if target == "csr":
        out = []
        for k in (key, rsa.generate_private_key(65537, 2048), ed25519.Ed25519PrivateKey.generate()):
            b = (x509.CertificateSigningRequestBuilder().subject_name(name)
                 .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.example")]), critical=False))
            out.append(b.sign(k, None if isinstance(k, ed25519.Ed25519PrivateKey) else hashes.SHA256())
                       .public_bytes(der))
        return out
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
          .sign(key, hashes.SHA256()))
    out = []
    for h, nonce in ((hashes.SHA1(), None), (hashes.SHA256(), b"n" * 16)):
        b = ocsp.OCSPRequestBuilder().add_certificate(ca, ca, h)
        if nonce:
            b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
        out.append(b.build().public_bytes(der))
    if target == "get":
        import base64
        from urllib.parse import quote

        out = [b"/" + quote(base64.b64encode(r).decode(), safe="").encode() for r in out]
    return out


def one_input(target: str):
    def ocsp(data: bytes) -> None:
        try:
            parse_request(data, LIMITS)
        except UnicaError:
            pass

    def get(data: bytes) -> None:
        try:
            parse_request(decode_get_path(data, b"/"), LIMITS)
        except UnicaError:
            pass

    def csr(data: bytes) -> None:
        try:
            parse_csr(data, "fuzz.csr")
        except UnicaError:
            pass

    def uri(data: bytes) -> None:
        try:
            parse_key_uri(data.decode("utf-8", "surrogateescape"))
        except UnicaError:
            pass

    return {"ocsp": ocsp, "get": get, "csr": csr, "uri": uri}[target]


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("ocsp", "get", "csr", "uri"):
        sys.exit(__doc__)
    target = sys.argv.pop(1)
    for arg in sys.argv[1:]:
        if not arg.startswith("-"):
            d = Path(arg)
            d.mkdir(parents=True, exist_ok=True)
            if not any(d.iterdir()):
                for i, s in enumerate(_seeds(target)):
                    (d / f"seed-{i}").write_bytes(s)
    atheris.Setup(sys.argv, one_input(target))
    atheris.Fuzz()


if __name__ == "__main__":
    os.environ.setdefault("UNICA_HOME", "/tmp/unica-atheris")
    main()
