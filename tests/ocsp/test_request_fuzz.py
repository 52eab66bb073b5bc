"""Property tests: no input makes the parser or the responder raise anything unexpected."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unica import der
from unica.ocsp import ResponseStatus, parse_request
from unica.ocsp.request import MalformedRequest, decode_get_path

# a request like openssl's: SHA-1 CertID (NULL params), serial 5, a 16-octet nonce
_CERT_ID = der.seq(der.hash_alg_id("sha1"), der.octet_string(b"\xa8" * 20), der.octet_string(b"\x9b" * 20),
                   der.integer(5))
VALID = der.seq(der.seq(der.seq(der.seq(_CERT_ID)),
                        der.tlv(der.ctx(2), der.seq(der.extension(der.oid("1.3.6.1.5.5.7.48.1.2"),
                                                                  der.octet_string(bytes(range(16))))))))


def _parse(data: bytes) -> None:
    try:
        parse_request(data)
    except MalformedRequest:
        pass


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data):
    _parse(data)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(VALID) - 1), st.integers(0, 255), st.integers(0, len(VALID)))
def test_mutated_valid_request(pos, value, cut):
    data = bytearray(VALID)
    data[pos] = value
    _parse(bytes(data[:cut] if cut else data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_get_paths(raw):
    try:
        decode_get_path(b"/" + raw)
    except MalformedRequest:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_responder_answers_everything(world, data):
    answer = world.responder.respond(data)
    assert answer.status in (ResponseStatus.malformedRequest, ResponseStatus.unauthorized,
                             ResponseStatus.successful)


def test_the_vector_parses():
    info = parse_request(VALID)
    assert info.cert_id.hash_algorithm == "sha1" and info.cert_id.serial == 5
    assert info.nonce == b"\x04\x10" + bytes(range(16))
