"""Key URIs (``pkcs11:`` RFC 7512, ``file:``): random attributes, percent-escapes, unicode.

Contract: :func:`unica.hsm.uri.parse_key_uri` returns a URI or raises :class:`URIError`;
a parsed ``pkcs11:`` URI prints back to a string that parses to the same value.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import budget, feed
from unica.errors import URIError
from unica.hsm.uri import FileURI, Pkcs11URI, parse_key_uri

PATH_ATTRS = ["token", "object", "id", "type", "serial", "manufacturer", "model", "slot-id", "slot-description",
              "library-version", "TOKEN", "Object", "pin-value", "x-vendor", ""]
QUERY_ATTRS = ["module-path", "module-name", "pin-source", "pin-value", "MODULE-PATH", "other", ""]

escape = st.integers(0, 255).map(lambda b: f"%{b:02x}") | st.integers(0, 255).map(lambda b: f"%{b:02X}")
bad_escape = st.sampled_from(["%", "%g1", "%1", "%%", "%zz", "%0"])
value_piece = st.one_of(st.text(max_size=12), escape, bad_escape,
                        st.sampled_from(["private", "public", "cert", "7", "-1", "1_0", " 3", "=", ";", "?", "&"]))
value = st.lists(value_piece, max_size=5).map("".join)


@st.composite
def pkcs11_uris(draw) -> str:
    path = [f"{draw(st.sampled_from(PATH_ATTRS))}{draw(st.sampled_from(['=', '=', '']))}{draw(value)}"
            for _ in range(draw(st.integers(0, 5)))]
    query = [f"{draw(st.sampled_from(QUERY_ATTRS))}{draw(st.sampled_from(['=', '=', '']))}{draw(value)}"
             for _ in range(draw(st.integers(0, 3)))]
    scheme = draw(st.sampled_from(["pkcs11", "PKCS11", "Pkcs11"]))
    return scheme + ":" + ";".join(path) + ("?" + "&".join(query) if query or draw(st.booleans()) else "")


@st.composite
def file_uris(draw) -> str:
    head = draw(st.sampled_from(["file:", "file://", "file:///", "file://localhost/", "file://evil.example/",
                                 "FILE:", "file:~/"]))
    return head + draw(value)


any_text = st.one_of(st.text(max_size=80), st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
                     st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
                     st.sampled_from(["", ":", "pkcs11", "pkcs11:", "file:", "a" * 5000, "pkcs11:" + "token=a;" * 600]))

uris = st.one_of(pkcs11_uris(), pkcs11_uris(), file_uris(), any_text)


@budget(2500)
@given(uris)
def test_parse_key_uri(text):
    uri, err = feed("hsm.uri.parse_key_uri", parse_key_uri, text)
    if err is not None:
        assert isinstance(err, URIError)
        return
    assert isinstance(uri, (Pkcs11URI, FileURI))
    if isinstance(uri, Pkcs11URI):
        again, err2 = feed("hsm.uri.parse_key_uri", parse_key_uri, str(uri))
        assert err2 is None, f"{text!r} parsed to {uri!r} whose string {str(uri)!r} does not parse: {err2}"
        assert again == uri, f"{text!r}: round trip changed {uri!r} into {again!r}"


@budget(200)
@given(st.one_of(st.none(), st.integers(), st.binary(max_size=10), st.lists(st.text(max_size=3), max_size=2)))
def test_parse_key_uri_wrong_type(obj):
    _, err = feed("hsm.uri.parse_key_uri", parse_key_uri, obj)
    assert isinstance(err, URIError)
