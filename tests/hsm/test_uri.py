"""Key URIs: RFC 7512 pkcs11: and file:, and the errors for bad ones."""

import pytest

from unica.errors import URIError
from unica.hsm.uri import FileURI, Pkcs11URI, parse_key_uri


def test_pkcs11_uri_attributes_and_percent_encoding():
    u = parse_key_uri("pkcs11:token=CA%20Root;object=root-2026;id=%01%02%ff?module-path=/opt/x.so")
    assert u == Pkcs11URI(token="CA Root", object="root-2026", id=b"\x01\x02\xff", module_path="/opt/x.so")
    assert u.module == "/opt/x.so"
    assert parse_key_uri(str(u)) == u


def test_pkcs11_uri_utf8_label_round_trips():
    u = Pkcs11URI(token="海关", object="签名密钥")
    assert parse_key_uri(str(u)) == u


def test_module_from_environment(monkeypatch):
    monkeypatch.setenv("UNICA_PKCS11_MODULE", "/env/mod.so")
    assert parse_key_uri("pkcs11:token=a").module == "/env/mod.so"
    monkeypatch.delenv("UNICA_PKCS11_MODULE")
    assert parse_key_uri("pkcs11:token=a").module == "/usr/lib/softhsm/libsofthsm2.so"


def test_file_uri_forms():
    assert parse_key_uri("file:/etc/k.pem") == FileURI(__import__("pathlib").Path("/etc/k.pem"))
    assert parse_key_uri("file:///etc/k.pem").path.as_posix() == "/etc/k.pem"
    assert parse_key_uri("file:keys/k.pem").path.as_posix() == "keys/k.pem"


@pytest.mark.parametrize("text, needle", [
    ("", "expected"),
    ("nothing-here", "expected"),
    ("http://x/k", "unknown scheme"),
    ("pkcs11:token", "has no value"),
    ("pkcs11:colour=red", "unknown attribute"),
    ("pkcs11:token=a;token=b", "twice"),
    ("pkcs11:token=a?pin-value=1234", "must not be written"),
    ("pkcs11:token=a?frob=1", "unknown query attribute"),
    ("pkcs11:slot-id=x", "slot-id"),
    ("pkcs11:type=banana", "object type"),
    ("file:", "empty"),
    ("file://remote.host/k.pem", "remote"),
    ("pkcs11:token=\x00", "control"),
    ("pkcs11:token=" + "a" * 5000, "too long"),
])
def test_bad_uris_name_the_problem(text, needle):
    with pytest.raises(URIError, match=needle):
        parse_key_uri(text)
