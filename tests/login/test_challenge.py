"""The challenge format ``unica-login-v1`` (unica.portal.challenge): what it makes, and what its
strict reader refuses -- each refusal a ChallengeFormatError, never another exception."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from unica.errors import ChallengeFormatError, InputError
from unica.portal.challenge import MAX_BYTES, check_origin, make_challenge, parse_challenge

NOW = dt.datetime(2026, 11, 30, 6, 0, 0, 123456, tzinfo=dt.timezone.utc)
ORIGIN = "https://127.0.0.1:8443"


def good(**over) -> str:
    fields = {"origin": ORIGIN, "nonce": base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode(),
              "issued": "2026-11-30T06:00:00Z", "expires": "2026-11-30T06:02:00Z"}
    fields.update(over)
    return "\n".join(["unica-login-v1"] + [f"{k}: {v}" for k, v in fields.items()])


def test_made_text_is_exactly_the_documented_lines():
    text, nonce = make_challenge(ORIGIN, NOW, 120)
    lines = text.split("\n")
    assert lines == ["unica-login-v1", f"origin: {ORIGIN}", f"nonce: {nonce}", "issued: 2026-11-30T06:00:00Z",
                     "expires: 2026-11-30T06:02:00Z"]
    assert len(nonce) == 43 and len(base64.urlsafe_b64decode(nonce + "=")) == 32
    ch = parse_challenge(text)
    assert (ch.origin, ch.nonce, ch.text, ch.data) == (ORIGIN, nonce, text, text.encode())
    assert ch.issued == NOW.replace(microsecond=0) and ch.expires - ch.issued == dt.timedelta(seconds=120)
    assert parse_challenge(text.encode()) == ch


def test_nonces_are_fresh():
    assert len({make_challenge(ORIGIN, NOW)[1] for _ in range(200)}) == 200


def test_expiry_and_clock_skew():
    ch = parse_challenge(good())
    assert not ch.expired(ch.issued) and not ch.expired(ch.expires)
    assert ch.expired(ch.expires + dt.timedelta(seconds=1))
    assert not ch.expired(ch.issued - dt.timedelta(seconds=30))  # a PC clock a little behind
    assert ch.expired(ch.issued - dt.timedelta(minutes=2))


@pytest.mark.parametrize("origin", [
    "https://127.0.0.1:8443", "https://portal.example.cn", "https://a-b.example.cn:9443", "http://127.0.0.1:8080",
    "http://localhost:8080", "http://[::1]:8080", "https://[::1]", "https://10.0.0.1",
])
def test_origins_taken(origin):
    assert check_origin(origin) == origin
    assert parse_challenge(good(origin=origin)).origin == origin


@pytest.mark.parametrize("origin", [
    "http://portal.example.cn",           # plain http off the loopback
    "https://portal.example.cn/",         # a path
    "https://portal.example.cn/login",
    "https://Portal.example.cn",          # not the lowercase a browser sends
    "HTTPS://portal.example.cn",
    "https://portal.example.cn:443",      # the default port spelt out
    "http://127.0.0.1:80",
    "https://portal.example.cn:0",
    "https://portal.example.cn:99999",
    "https://portal.example.cn:08443",
    "https://user@portal.example.cn",
    "ftp://portal.example.cn",
    "https://",
    "https://-bad.example.cn",
    "https://256.1.1.1",
    "https://[2001:db8::1]",
    "https://portal.example.cn?x=1",
    "https://portal.example.cn#x",
    "https://пример.рф",
    "null",
    "",
])
def test_origins_refused(origin):
    with pytest.raises(ChallengeFormatError):
        check_origin(origin)
    with pytest.raises(ChallengeFormatError):
        parse_challenge(good(origin=origin))
    with pytest.raises(ChallengeFormatError):
        make_challenge(origin, NOW)


BAD = {
    "other header": good().replace("unica-login-v1", "unica-login-v2"),
    "no header": good().split("\n", 1)[1],
    "trailing newline": good() + "\n",
    "crlf": good().replace("\n", "\r\n"),
    "fields swapped": "\n".join([good().split("\n")[0], good().split("\n")[2], good().split("\n")[1],
                                 *good().split("\n")[3:]]),
    "extra field": good() + "\nsubject: x",
    "missing field": "\n".join(good().split("\n")[:-1]),
    "two spaces": good().replace("origin: ", "origin:  "),
    "no space": good().replace("nonce: ", "nonce:"),
    "upper field": good().replace("issued:", "Issued:"),
    "short nonce": good(nonce="A" * 42),
    "long nonce": good(nonce="A" * 44),
    "padded nonce": good(nonce="A" * 42 + "="),
    "base64 not url": good(nonce="+" * 43),
    "non-canonical nonce": good(nonce="A" * 42 + "B"),
    "time with offset": good(issued="2026-11-30T06:00:00+00:00"),
    "time with fraction": good(issued="2026-11-30T06:00:00.5Z"),
    "no such date": good(issued="2026-02-30T06:00:00Z"),
    "expires before issued": good(expires="2026-11-30T05:59:59Z"),
    "expires equal issued": good(expires="2026-11-30T06:00:00Z"),
    "too long valid": good(expires="2026-11-30T06:10:01Z"),
    "not ascii": good().replace("unica-login-v1", "unica-login-v1\u00a0"),
    "nul": good() + "\x00",
    "oversize": good() + "\n" + "x" * MAX_BYTES,
    "json": '{"challenge": "x"}',
    "a document hash": "3f" * 32,
    "empty": "",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_refused_texts(name):
    with pytest.raises(ChallengeFormatError) as e:
        parse_challenge(BAD[name])
    assert isinstance(e.value, InputError) and str(e.value)


def test_refused_bytes():
    for data in (b"\xff\xfe" + good().encode(), good().encode() + b"x" * MAX_BYTES, b""):
        with pytest.raises(ChallengeFormatError):
            parse_challenge(data)
    with pytest.raises(ChallengeFormatError):
        parse_challenge(None)


def test_make_challenge_checks_its_arguments():
    with pytest.raises(ValueError):
        make_challenge(ORIGIN, NOW.replace(tzinfo=None))
    for ttl in (0, 0.5, 601, dt.timedelta(hours=1)):
        with pytest.raises(ValueError):
            make_challenge(ORIGIN, NOW, ttl)
    text, _ = make_challenge(ORIGIN, NOW, 600)
    assert parse_challenge(text).expires == dt.datetime(2026, 11, 30, 6, 10, tzinfo=dt.timezone.utc)
