"""ID tokens, the JWKS and discovery, end to end: the real ``unica serve`` over TLS on
127.0.0.1 serves the provider's documents; ID tokens are minted in a process of their own with
a key on a SoftHSM2 token and with encrypted key files, and checked by an independent JOSE
library (PyJWT) against the JWKS the service serves (issue #14)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
import urllib.request

import jwt as pyjwt
import pytest

from tests.sso.conftest import USCC


def _get(svc, path: str) -> tuple[int, dict, dict]:
    ctx = ssl.create_default_context(cafile=str(svc.ca_pem))
    with urllib.request.urlopen(svc.url + path, context=ctx, timeout=30) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read(1 << 20))


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _b64e(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _relying_party(svc, token: str, client_id: str, nonce: str) -> dict:
    """What an agency system does with PyJWT: discovery, then the key from jwks_uri by kid, then
    the signature and the claims."""
    _, _, conf = _get(svc, "/.well-known/openid-configuration")
    ctx = ssl.create_default_context(cafile=str(svc.ca_pem))
    client = pyjwt.PyJWKClient(conf["jwks_uri"], ssl_context=ctx, cache_jwk_set=False)
    key = client.get_signing_key_from_jwt(token)
    claims = pyjwt.decode(token, key.key, algorithms=conf["id_token_signing_alg_values_supported"],
                          audience=client_id, issuer=conf["issuer"],
                          options={"require": ["exp", "iat", "iss", "aud", "sub"]})
    assert claims["nonce"] == nonce
    return claims


def test_discovery_and_jwks_over_tls(sso_ca):
    k = sso_ca.add_key(sso_ca.token_key)
    svc = sso_ca.serve()
    status, headers, conf = _get(svc, "/.well-known/openid-configuration")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert "max-age" in headers["cache-control"]
    issuer = svc.url  # the address the service answers on
    assert conf["issuer"] == issuer
    assert conf["authorization_endpoint"] == issuer + "/oidc/authorize"
    assert conf["token_endpoint"] == issuer + "/oidc/token"
    assert conf["jwks_uri"] == issuer + "/oidc/jwks"
    assert conf["response_types_supported"] == ["code"]
    assert conf["subject_types_supported"] == ["public"]
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert conf["acr_values_supported"] == ["urn:unica:acr:card"]
    assert "RS256" in conf["id_token_signing_alg_values_supported"]
    assert "ES256" in conf["id_token_signing_alg_values_supported"]
    assert {"uscc", "enterprise", "name", "cert_serial", "cert_issuer", "ra_office", "roles", "acr", "amr",
            "auth_time", "nonce"} <= set(conf["claims_supported"])
    assert conf["userinfo_endpoint"] == issuer + "/oidc/userinfo"  # served since the code flow (test_flow.py)
    assert conf["end_session_endpoint"] == issuer + "/oidc/logout"
    _, _, jwks = _get(svc, "/oidc/jwks")
    assert jwks == {"keys": [k["public_jwk"]]}
    assert not {"d", "p", "q"} & set(jwks["keys"][0])
    # the routes are in the OpenAPI document
    _, _, api = _get(svc, "/openapi.json")
    assert {"/.well-known/openid-configuration", "/oidc/jwks"} <= set(api["paths"])


def test_id_token_from_the_token_key_verified_by_pyjwt(sso_ca):
    k = sso_ca.add_key(sso_ca.token_key)
    client = sso_ca.add_client("customs", "https://customs.example.cn/cb")
    svc = sso_ca.serve()
    out = sso_ca.token(client["client_id"], svc.url, nonce="n-customs-1")
    assert out["key_class"] == "Pkcs11ECPrivateKey"  # signed on the token, through unica.hsm
    token = out["token"]
    header = json.loads(_b64d(token.split(".")[0]))
    assert header == {"typ": "JWT", "alg": "ES256", "kid": k["kid"]}
    assert len(_b64d(token.split(".")[2])) == 64  # JWS r || s, not DER
    claims = _relying_party(svc, token, client["client_id"], "n-customs-1")
    assert claims["iss"] == svc.url and claims["aud"] == client["client_id"]
    assert claims["exp"] - claims["iat"] == 300
    assert claims["acr"] == "urn:unica:acr:card" and claims["amr"] == ["hwk", "sc", "pin", "mfa"]
    assert claims["uscc"] == USCC and claims["enterprise"] == "示例科技有限公司" and claims["name"] == "张三"
    assert claims["cert_serial"] == "5f3a9c0e1b2d" and claims["cert_issuer"] == "CN=Port Root,O=Port Joint CA,C=CN"
    assert claims["ra_office"] == "customs" and claims["roles"] == ["enterprise"]
    assert abs(claims["auth_time"] - claims["iat"]) < 60
    # sub: stable for the person of the enterprise, whatever the certificate
    again = sso_ca.token(client["client_id"], svc.url, cert_serial="77aa", cert_sha256="cd" * 32)
    assert pyjwt.decode(again["token"], options={"verify_signature": False})["sub"] == claims["sub"]
    other = sso_ca.token(client["client_id"], svc.url, person="李四")
    assert pyjwt.decode(other["token"], options={"verify_signature": False})["sub"] != claims["sub"]
    # a fact that is not known is left out, not null
    bare = sso_ca.token(client["client_id"], svc.url, office=None, nonce=None)
    bare_claims = pyjwt.decode(bare["token"], options={"verify_signature": False})
    assert "ra_office" not in bare_claims and "nonce" not in bare_claims


@pytest.mark.parametrize("which, alg", [pytest.param("rsa_key", "RS256", marks=pytest.mark.slow), ("rsa_key", "PS256"),
                                        pytest.param("ec384_key", "ES384", marks=pytest.mark.slow)])
def test_id_token_from_a_file_key_verified_by_pyjwt(sso_ca, which, alg):
    k = sso_ca.add_key(getattr(sso_ca, which), *(["--alg", alg] if which == "rsa_key" else []))
    client = sso_ca.add_client("tax", "https://tax.example.cn/cb")
    svc = sso_ca.serve()
    out = sso_ca.token(client["client_id"], svc.url, nonce="n-tax")
    assert not out["key_class"].startswith("Pkcs11")  # cryptography's key, from the encrypted file
    header = json.loads(_b64d(out["token"].split(".")[0]))
    assert header["alg"] == alg and header["kid"] == k["kid"]
    claims = _relying_party(svc, out["token"], client["client_id"], "n-tax")
    assert claims["uscc"] == USCC


@pytest.mark.slow  # CI time (a fresh CA copy and several key additions)
def test_rotation_the_newest_active_key_signs_and_retired_keys_stay_published(sso_ca):
    old = sso_ca.add_key(sso_ca.token_key)
    client = sso_ca.add_client("customs", "https://customs.example.cn/cb")
    svc = sso_ca.serve()
    t_old = sso_ca.token(client["client_id"], svc.url)["token"]
    new = sso_ca.add_key(sso_ca.rsa_key)
    t_new = sso_ca.token(client["client_id"], svc.url)["token"]
    assert pyjwt.get_unverified_header(t_old)["kid"] == old["kid"]
    assert pyjwt.get_unverified_header(t_new)["kid"] == new["kid"]
    sso_ca.ok("sso", "key", "retire", new["kid"])
    t_after = sso_ca.token(client["client_id"], svc.url)["token"]
    assert pyjwt.get_unverified_header(t_after)["kid"] == old["kid"]  # the retired key signs no more
    _, _, jwks = _get(svc, "/oidc/jwks")
    assert sorted(k["kid"] for k in jwks["keys"]) == sorted([old["kid"], new["kid"]])
    for t in (t_old, t_new, t_after):  # the retired key's token still verifies
        _relying_party(svc, t, client["client_id"], "n-0S6_WzA2Mj")
    sso_ca.ok("sso", "key", "retire", old["kid"])
    p = sso_ca.mint(client["client_id"], svc.url)
    assert p.returncode == 1 and "NoSigningKey" in p.stderr


def test_verify_id_token_refuses_tampering(sso_ca):
    from unica.sso.errors import IDTokenInvalid
    from unica.sso.tokens import verify_id_token

    sso_ca.add_key(sso_ca.token_key)
    client = sso_ca.add_client("customs", "https://customs.example.cn/cb")
    cid = client["client_id"]
    svc = sso_ca.serve()
    issuer = svc.url
    token = sso_ca.token(cid, issuer, nonce="n-1")["token"]
    _, _, jwks = _get(svc, "/oidc/jwks")
    claims = verify_id_token(token, jwks, issuer_url=issuer, client_id=cid, nonce="n-1")
    assert claims["uscc"] == USCC

    def reason(tok, **kw) -> str:
        args = {"issuer_url": issuer, "client_id": cid, "nonce": "n-1", **kw}
        with pytest.raises(IDTokenInvalid) as e:
            verify_id_token(tok, kw.pop("keys", jwks), **{k: v for k, v in args.items() if k != "keys"})
        return e.value.reason

    h, p, s = token.split(".")
    forged = dict(claims, uscc="91110000000000000X", name="李四")
    tampered = f"{h}.{_b64e(json.dumps(forged).encode())}.{s}"
    assert reason(tampered) == "bad-signature"
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(tampered, pyjwt.PyJWK(jwks["keys"][0]).key, algorithms=["ES256"], audience=cid)
    flipped = bytearray(_b64d(s))
    flipped[10] ^= 1
    assert reason(f"{h}.{p}.{_b64e(bytes(flipped))}") == "bad-signature"
    # alg confusion: HS256 keyed with the public key, and alg none
    for alg in ("HS256", "none"):
        hdr = dict(json.loads(_b64d(h)), alg=alg)
        assert reason(f"{_b64e(json.dumps(hdr).encode())}.{p}.{s}") == "bad-signature"
    unknown = dict(json.loads(_b64d(h)), kid="A" * 43)
    assert reason(f"{_b64e(json.dumps(unknown).encode())}.{p}.{s}") == "unknown-key"
    assert reason(token, client_id="another-client") == "wrong-audience"
    assert reason(token, issuer_url="https://127.0.0.1:1") == "wrong-issuer"
    assert reason(token, nonce="n-2") == "wrong-nonce"
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=301)
    assert reason(token, now=later) == "expired"
    earlier = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    assert reason(token, now=earlier) == "not-yet-valid"
    for garbage in ("", "a.b", "a.b.c", "x" * 20000, f"{h}.{p}"):
        assert reason(garbage) == "malformed"
    # a token of another provider key (not in this JWKS) is refused
    assert reason(token, keys={"keys": []}) == "unknown-key"


@pytest.mark.slow  # CI time
def test_issuer_must_be_an_https_url(sso_ca):
    client = sso_ca.add_client("customs", "https://customs.example.cn/cb")
    sso_ca.add_key(sso_ca.token_key)
    for bad in ("http://idp.example.cn", "https://idp.example.cn/", "https://idp.example.cn?x=1", "idp.example.cn"):
        p = sso_ca.mint(client["client_id"], bad)
        assert p.returncode == 2 and "issuer URL" in p.stderr, (bad, p.stderr)
