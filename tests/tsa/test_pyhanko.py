"""pyHanko's RFC 3161 client (``pyhanko.sign.timestamps.HTTPTimeStamper``, aiohttp) against the real
``unica tsa serve``: it gets a token (its nonce check included), pyHanko's own TST validation
accepts it against the root, and ``unica.verify`` validates it as a time-stamp (signature, the
TSA certificate path to the root, the timeStamping EKU); a tampered token fails both."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from asn1crypto import cms
from asn1crypto import x509 as ax

from tests.tsa.conftest import POLICY


def _stamp(url: str, digest: bytes, alg: str = "sha256") -> cms.ContentInfo:
    from pyhanko.sign.timestamps import HTTPTimeStamper

    async def go():
        stamper = HTTPTimeStamper(url, timeout=20)
        return await stamper.async_timestamp(digest, alg)

    return asyncio.run(go())


@pytest.mark.parametrize("alg", ["sha256", "sha384", "sha512"])
def test_pyhanko_client_gets_a_token_pyhanko_and_unica_verify_accept(tsa_home, server, alg):
    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
    from pyhanko_certvalidator import ValidationContext

    digest = hashlib.new(alg, b"customs declaration 2233").digest()
    token = _stamp(server.url, digest, alg)
    sd = token["content"]
    tst = sd["encap_content_info"]["content"].parsed
    assert tst["message_imprint"]["hashed_message"].native == digest
    assert tst["policy"].dotted == POLICY
    assert tst["nonce"].native is not None  # pyHanko sends one and checks the echo

    root = ax.Certificate.load(_der(tsa_home.root_pem))
    vc = ValidationContext(trust_roots=[root], allow_fetching=False, revocation_mode="soft-fail")
    status = asyncio.run(validate_tst_signed_data(sd, vc, lambda a: digest))
    assert status["valid"] and status["intact"], status
    assert status["trust_problem_indic"] is None and status["validation_path"] is not None, status
    assert status["signing_cert"].dump() == _der(tsa_home.unit_pem)

    from unica.verify import OFF, verify_cms

    rep = verify_cms(token.dump(), trust=[tsa_home.root_pem.read_bytes()], usage="timestamping", revocation=OFF)
    assert rep.passed, (rep.indication, rep.sub_indication, rep.messages)


def test_tampered_token_fails_unica_verify(tsa_home, server):
    from unica.verify import OFF, verify_cms

    digest = hashlib.sha256(b"x").digest()
    der = bytearray(_stamp(server.url, digest).dump())
    i = der.find(digest)
    der[i] ^= 0x01  # the imprint inside the signed TSTInfo
    rep = verify_cms(bytes(der), trust=[tsa_home.root_pem.read_bytes()], usage="timestamping", revocation=OFF)
    assert not rep.passed


def _der(pem_path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem_path.read_bytes()).public_bytes(Encoding.DER)
