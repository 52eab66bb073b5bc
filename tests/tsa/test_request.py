"""unica.tsa.request, the strict DER reader of TimeStampReq, against asn1crypto: every request it
accepts asn1crypto reads to the same fields, and 20,000 mutations of valid requests (bytes
flipped, inserted, removed, truncated) are either accepted that way or refused with BadRequest --
never another exception."""

from __future__ import annotations

import hashlib
import random

import pytest
from asn1crypto import core, tsp

from unica.tsa.request import BadRequest, parse_request


def _req(**kw) -> bytes:
    r = {"version": "v1", "message_imprint": {"hash_algorithm": {"algorithm": kw.pop("alg", "sha256")},
                                              "hashed_message": hashlib.sha256(b"x").digest()}}
    r.update(kw)
    return tsp.TimeStampReq(r).dump()


SEEDS = [_req(), _req(nonce=2**63 + 5, cert_req=True), _req(req_policy="1.3.6.1.4.1.59999.3161.2", nonce=-7),
         _req(alg="sha512", nonce=0, cert_req=True, req_policy="1.2.3"),
         _req(extensions=[{"extn_id": "1.2.3.4", "critical": False, "extn_value": b"\x05\x00"}])]


def _same(der: bytes) -> None:
    mine = parse_request(der)
    ref = tsp.TimeStampReq.load(der, strict=True)
    assert ref["version"].native == "v1"
    alg = ref["message_imprint"]["hash_algorithm"]
    assert mine.alg_oid == alg["algorithm"].contents
    assert mine.imprint == ref["message_imprint"]["hashed_message"].native
    assert mine.policy_oid == (None if isinstance(ref["req_policy"], core.Void) else ref["req_policy"].contents)
    assert mine.nonce == (None if isinstance(ref["nonce"], core.Void) else ref["nonce"].contents)
    assert mine.cert_req == bool(ref["cert_req"].native)
    assert mine.has_extensions == (not isinstance(ref["extensions"], core.Void))


@pytest.mark.parametrize("der", SEEDS)
def test_valid_requests_read_as_asn1crypto_reads_them(der):
    _same(der)


def test_mutations_are_refused_or_read_the_same():
    rnd = random.Random(3161)
    accepted = 0
    for i in range(20000):
        b = bytearray(rnd.choice(SEEDS))
        for _ in range(rnd.randint(1, 3)):
            if not b:
                break
            k = rnd.randrange(len(b))
            op = rnd.randrange(4)
            if op == 0:
                b[k] = rnd.randrange(256)
            elif op == 1:
                b.insert(k, rnd.randrange(256))
            elif op == 2 and len(b) > 1:
                del b[k]
            else:
                del b[k:]
        der = bytes(b)
        try:
            parse_request(der)
        except BadRequest:
            continue
        accepted += 1
        _same(der)
    assert accepted > 0


@pytest.mark.parametrize("der, why", [
    (b"\x30\x80\x02\x01\x01\x00\x00", "indefinite"),
    (b"\x30\x81\x05" + b"\x02\x01\x01\x30\x00", "shortest form"),
    (_req() + b"\x00", "single DER SEQUENCE"),
    (b"\x30\x03\x02\x01\x02", "unsupported TimeStampReq version 2"),
    (b"\x30\x04\x02\x02\x00\x01", "no version"),
])
def test_non_der_is_refused(der, why):
    with pytest.raises(BadRequest, match=why):
        parse_request(der)
