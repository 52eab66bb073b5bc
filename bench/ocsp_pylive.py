"""Baseline: a raw-ASGI responder that signs every response with cryptography's
OCSPResponseBuilder (the "sign each response in Python" baseline of the issue)."""

import datetime as dt

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import OCSPNonce, ocsp

MALFORMED = b"\x30\x03\x0a\x01\x01"
HEADERS = [(b"content-type", b"application/ocsp-response")]


def make_app(ca_cert, signer_cert, signer_key, good_serials: set):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        try:
            req = ocsp.load_der_ocsp_request(body)
            now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
            status = ocsp.OCSPCertStatus.GOOD if req.serial_number in good_serials else ocsp.OCSPCertStatus.UNKNOWN
            b = (ocsp.OCSPResponseBuilder()
                 .add_response_by_hash(req.issuer_name_hash, req.issuer_key_hash, req.serial_number, req.hash_algorithm,
                                       status, now, now + dt.timedelta(minutes=5), None, None)
                 .responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert).certificates([signer_cert]))
            for ext in req.extensions:
                if isinstance(ext.value, OCSPNonce):
                    b = b.add_extension(ext.value, False)
            out = b.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        except ValueError:
            out = MALFORMED
        await send({"type": "http.response.start", "status": 200,
                    "headers": HEADERS + [(b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})
    return app
