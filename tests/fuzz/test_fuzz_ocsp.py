"""OCSP requests: the DER parser, the GET-path decoder, and the whole ASGI app in-process.

Contract: :func:`parse_request` / :func:`decode_get_path` return a value or raise
:class:`MalformedRequest`; the HTTP app never answers 5xx, answers oversized bodies with 413,
and every OCSP answer is a parseable OCSPResponse whose status is successful, malformedRequest
or unauthorized (an ``internalError`` would mean a parser bug hidden by the app's catch-all).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.x509 import ocsp
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import budget, cached, der_inputs, feed, pick
from unica.ocsp import (InMemoryPresignedStore, InMemoryStatusSource, Responder, ResponseSigner, ServedCA)
from unica.ocsp.http import OCSPApp
from unica.ocsp.request import MalformedRequest, RequestLimits, decode_get_path, parse_request

PREFIX = "/ocsp/"
LIMITS = RequestLimits(max_body=2048)
OK_STATUSES = {ocsp.OCSPResponseStatus.SUCCESSFUL, ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
               ocsp.OCSPResponseStatus.UNAUTHORIZED}


# --- parse_request ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def req_seeds(seeds):
    return list(seeds.ocsp_requests)


@budget(2500)
@given(data=st.data())
def test_parse_request(req_seeds, data):
    body = data.draw(der_inputs(req_seeds, raw_max=300))
    info, err = feed("ocsp.parse_request", parse_request, body, LIMITS)
    if err is not None:
        assert isinstance(err, MalformedRequest), err
        return
    c = info.cert_id
    assert c.der in body, "the echoed CertID is not the request's bytes"
    assert isinstance(c.serial, int) and c.serial.bit_length() <= 8 * 32
    assert info.nonce is None or 3 <= len(info.nonce) <= 34


def test_parse_request_seeds_parse(req_seeds, seeds):
    for body in req_seeds:
        info, err = feed("ocsp.parse_request", parse_request, body, LIMITS)
        assert err is None, err
    assert parse_request(req_seeds[0]).cert_id.serial == seeds.signer.cert.serial_number


def test_parse_request_size_limit(req_seeds):
    _, err = feed("ocsp.parse_request", parse_request, req_seeds[0] + b"\x00" * LIMITS.max_body, LIMITS)
    assert isinstance(err, MalformedRequest) and "over the limit" in str(err)


# --- decode_get_path ---------------------------------------------------------------------------


@st.composite
def get_paths(draw, seeds_: list[bytes], prefix: str = PREFIX) -> bytes:
    der = draw(der_inputs(seeds_, raw_max=200))
    b64 = base64.b64encode(der).decode()
    style = draw(st.sampled_from(("std", "urlsafe", "nopad", "raw", "garbage", "double", "mixed")))
    if style == "urlsafe":
        b64 = base64.urlsafe_b64encode(der).decode()
    elif style == "nopad":
        b64 = b64.rstrip("=")
    elif style == "garbage":
        b64 = draw(st.text(max_size=60))
    elif style == "double":
        b64 = quote(quote(b64, safe=""), safe="")
    elif style == "mixed":
        b64 = b64[:len(b64) // 2] + draw(st.sampled_from(["%", "%2", "%zz", " ", "\n", "==", "%00", "\u00e9", "/"])) \
            + b64[len(b64) // 2:]
    path = b64 if style in ("raw", "garbage", "mixed") else quote(b64, safe="")
    head = draw(st.sampled_from([prefix, prefix, prefix, "/", prefix[:-1], "//" + prefix, prefix + "/", ""]))
    return (head + path).encode("utf-8", "surrogateescape")


@budget(1500)
@given(data=st.data())
def test_decode_get_path(req_seeds, data):
    raw = data.draw(cached("get-paths", lambda: get_paths(req_seeds)))
    der, err = feed("ocsp.decode_get_path", decode_get_path, raw, PREFIX.encode())
    if err is not None:
        assert isinstance(err, MalformedRequest), err
        return
    assert isinstance(der, bytes)


# --- the ASGI app ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(seeds):
    inter = seeds.inter
    source = InMemoryStatusSource()
    source.issue("inter", seeds.signer.cert.serial_number)
    source.revoke("inter", seeds.rsa_leaf.cert.serial_number, dt.datetime.now(dt.timezone.utc),
                  x509.ReasonFlags.key_compromise)
    signer = ResponseSigner(inter.cert, seeds.ocsp_signer.cert, seeds.ocsp_signer.key)
    live = ServedCA("inter", inter.cert, "live", signer)
    pre = ServedCA("root", seeds.root.cert, "presigned")  # no key here: misses are unauthorized
    store = InMemoryPresignedStore()
    responder = Responder([live, pre], source, store, limits=LIMITS)
    return OCSPApp(responder, prefix=PREFIX)


@pytest.fixture(scope="module")
def loop():
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def call_app(app, loop, method: str, raw_path: bytes, headers, chunks):
    """One request through the ASGI app; -> (status, headers dict, body)."""
    sent = []
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    queue = queue or [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": raw_path.decode("latin-1"), "raw_path": raw_path, "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    loop.run_until_complete(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.lower(): v for k, v in start["headers"]}, body


def check_answer(status: int, headers: dict, body: bytes, what: str):
    assert status < 500, f"{what}: HTTP {status} {body[:80]!r}"
    if headers.get(b"content-type") == b"application/ocsp-response":
        assert status == 200
        r = ocsp.load_der_ocsp_response(body)
        assert r.response_status in OK_STATUSES, f"{what}: OCSP {r.response_status.name}"
        if r.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL:
            # a client reads all of it (cryptography parses some parts lazily)
            for single in r.responses:
                single.serial_number, single.certificate_status, single.hash_algorithm, single.this_update_utc
            list(r.extensions)
            r.certificates
        return r
    return None


CONTENT_LENGTHS = ["", "-1", "0", "abc", "1e3", " 12", "99999999999999999999", str(LIMITS.max_body + 1),
                   "\u0661\u0662", "+5"]


@budget(1500)
@given(data=st.data())
def test_app_post(app, loop, req_seeds, caplog, data):
    body = data.draw(cached("post-body", lambda: st.one_of(
        der_inputs(req_seeds, raw_max=200), st.sampled_from(req_seeds),
        st.integers(LIMITS.max_body - 2, LIMITS.max_body + 2).map(lambda n: (req_seeds[0] * 20)[:n]))))
    headers = [(b"content-type", pick(data.draw, [b"application/ocsp-request", b"text/plain", b""]))]
    if data.draw(st.booleans()):
        headers.append((b"content-length", pick(data.draw, [str(len(body))] * 2 + CONTENT_LENGTHS).encode("utf-8")))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=3)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    path = pick(data.draw, [PREFIX, PREFIX, PREFIX[:-1], PREFIX + "x", "/", "/other"]).encode()
    with caplog.at_level(logging.ERROR, logger="unica.ocsp"):
        (status, hdrs, out), err = feed("ocsp.http POST", call_app, app, loop, "POST", path, headers, chunks)
    assert err is None
    check_answer(status, hdrs, out, f"POST {len(body)} octets")
    declared = dict(headers).get(b"content-length")
    if status == 200 and len(body) > LIMITS.max_body:
        pytest.fail(f"a body of {len(body)} octets (limit {LIMITS.max_body}) was answered 200")
    if len(body) > LIMITS.max_body and path.startswith(PREFIX.encode()):
        assert status in (413, 400), status
    if declared is not None and declared.isdigit() and int(declared) > LIMITS.max_body and \
            (path.startswith(PREFIX.encode()) or path + b"/" == PREFIX.encode()):
        assert status == 413
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "the responder logged an error"


@budget(1500)
@given(data=st.data())
def test_app_get(app, loop, req_seeds, caplog, data):
    path = data.draw(cached("get-app", lambda: st.one_of(
        get_paths(req_seeds), get_paths(req_seeds), st.just((PREFIX + "A" * (4 * LIMITS.max_body + 10)).encode()),
        st.binary(max_size=80).map(lambda b: b"/" + b))))
    method = pick(data.draw, ["GET", "GET", "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "get"])
    with caplog.at_level(logging.ERROR, logger="unica.ocsp"):
        (status, hdrs, out), err = feed("ocsp.http GET", call_app, app, loop, method, path, [], [])
    assert err is None
    check_answer(status, hdrs, out, f"{method} {path[:60]!r}")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "the responder logged an error"


def test_app_answers_real_requests(app, loop, seeds, req_seeds):
    """Sanity: the unmutated requests get real answers (good, revoked) over POST and GET."""
    good, _, revoked = req_seeds
    for body, want in ((good, ocsp.OCSPCertStatus.GOOD), (revoked, ocsp.OCSPCertStatus.REVOKED)):
        st_, h, out = call_app(app, loop, "POST", PREFIX.encode(), [(b"content-type", b"application/ocsp-request")],
                               [body])
        r = check_answer(st_, h, out, "POST")
        assert r.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL and r.certificate_status == want
        st_, h, out = call_app(app, loop, "GET", (PREFIX + quote(base64.b64encode(body).decode(), safe="")).encode(),
                               [], [])
        r = check_answer(st_, h, out, "GET")
        assert r.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL and r.certificate_status == want


def test_app_oversized_post_is_413(app, loop, req_seeds):
    big = req_seeds[0] + b"\x00" * LIMITS.max_body
    for headers in ([(b"content-length", str(len(big)).encode())], []):
        status, _, _ = call_app(app, loop, "POST", PREFIX.encode(), headers, [big[:100], big[100:]])
        assert status == 413
