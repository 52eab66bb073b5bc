"""``unica sso client|key``: the registry of agency systems and the ID-token keys, through the
real CLI on a real database, tokens on SoftHSM2 (issue #14)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_one_line_error


def _state(ca) -> tuple:
    """Everything a refused command must leave as it was."""
    return (ca.sql("SELECT name, client_id, secret_hash, redirect_uris, status, disabled_at FROM sso_clients "
                   "ORDER BY id"),
            ca.sql("SELECT kid, key_uri, alg, public_jwk, status, retired_at FROM sso_keys ORDER BY id"),
            ca.sql("SELECT COUNT(*) FROM audit_log WHERE event LIKE 'sso.%'"))


def _audit(ca, event: str) -> list[dict]:
    return [json.loads(d) if isinstance(d, str) else d
            for (d,) in ca.sql("SELECT details FROM audit_log WHERE event = :e ORDER BY id", e=event)]


# --- clients ------------------------------------------------------------------------------------------


def test_client_add_shows_the_secret_once_and_keeps_only_a_hash(sso_ca):
    p = sso_ca.ok("sso", "client", "add", "customs", "--redirect-uri", "https://customs.example.cn/oidc/cb",
                  "--redirect-uri", "https://customs.example.cn/oidc/cb?tenant=xm")
    fields = dict(line.split(":", 1) for line in p.stdout.strip().splitlines())
    client_id, secret = fields["client id"].strip(), fields["client secret"].strip()
    assert len(secret) == 43 and len(client_id) >= 22
    assert "shown once" in p.stderr
    rows = sso_ca.sql("SELECT client_id, secret_hash, redirect_uris, status FROM sso_clients")
    assert len(rows) == 1
    cid, stored, uris, status = rows[0]
    assert cid == client_id and status == "active"
    assert json.loads(uris) == ["https://customs.example.cn/oidc/cb", "https://customs.example.cn/oidc/cb?tenant=xm"]
    assert stored.startswith("hmac-sha256$") and secret not in stored
    db = (sso_ca.home / "unica.db").read_bytes()
    assert secret.encode() not in db  # not in the table, not in the audit log
    added = _audit(sso_ca, "sso.client-added")
    assert added == [{"client_id": client_id, "redirect_uris": json.loads(uris), "type": "confidential"}]
    # the stored hash is the secret's (what the token endpoint will check)
    from unica.sso.clients import secret_matches

    assert secret_matches(stored, secret) and not secret_matches(stored, secret[:-1] + "x")
    listed = json.loads(sso_ca.ok("sso", "client", "list", "--json").stdout)
    assert listed == [{"name": "customs", "client_id": client_id, "type": "confidential",
                       "redirect_uris": json.loads(uris), "status": "active",
                       "created_at": listed[0]["created_at"]}]
    assert "client_secret" not in listed[0] and secret not in sso_ca.ok("sso", "client", "list").stdout


def test_public_client_has_no_secret(sso_ca):
    out = sso_ca.add_client("desk", "http://127.0.0.1:8400/callback", public=True)
    assert out["type"] == "public" and "client_secret" not in out
    assert sso_ca.sql("SELECT secret_hash FROM sso_clients") == [(None,)]
    text = sso_ca.ok("sso", "client", "add", "desk2", "--public", "--redirect-uri", "http://localhost/cb").stdout
    assert "secret" not in text


@pytest.mark.parametrize("uri, needle", [
    ("http://customs.example.cn/cb", "http is only for"),
    ("https://customs.example.cn/cb#frag", "fragment"),
    ("/oidc/cb", "absolute"),
    ("customs.example.cn/cb", "absolute"),
    ("ftp://customs.example.cn/cb", "absolute"),
    ("https:///cb", "absolute"),
    ("https://user@customs.example.cn/cb", "user information"),
    ("https://customs.example.cn/c b", "spaces"),
    ("https://customs.example.cn:99999/cb", "not a uri"),
    ("https://customs.example.cn/" + "a" * 2001, "longer than"),
])
def test_bad_redirect_uris_are_refused_and_nothing_changes(sso_ca, uri, needle):
    sso_ca.add_client("tax", "https://tax.example.cn/cb")
    before = _state(sso_ca)
    p = sso_ca.run("sso", "client", "add", "customs", "--redirect-uri", "https://customs.example.cn/ok",
                   "--redirect-uri", uri)
    assert_one_line_error(p, needle)
    assert p.returncode == 2
    assert _state(sso_ca) == before


@pytest.mark.parametrize("args, code, needle", [
    (["tax", "--redirect-uri", "https://tax.example.cn/other"], 1, "already registered"),
    (["bad name", "--redirect-uri", "https://x.example.cn/cb"], 2, "agency system name"),
    (["-x", "--redirect-uri", "https://x.example.cn/cb"], 2, "no such option"),
    (["customs"], 2, "--redirect-uri"),
    (["customs", "--redirect-uri", "https://c.example.cn/cb", "--redirect-uri", "https://c.example.cn/cb"], 2,
     "given twice"),
])
def test_client_add_refusals(sso_ca, args, code, needle):
    sso_ca.add_client("tax", "https://tax.example.cn/cb")
    before = _state(sso_ca)
    p = sso_ca.run("sso", "client", "add", *args)
    assert_one_line_error(p, needle)
    assert p.returncode == code
    assert _state(sso_ca) == before


def test_disable_client(sso_ca):
    made = sso_ca.add_client("customs", "https://customs.example.cn/cb")
    out = json.loads(sso_ca.ok("sso", "client", "disable", "customs", "--note", "replaced", "--json").stdout)
    assert out["status"] == "disabled" and out["disabled_at"]
    assert _audit(sso_ca, "sso.client-disabled") == [{"client_id": made["client_id"], "reason": "replaced"}]
    before = _state(sso_ca)
    again = sso_ca.run("sso", "client", "disable", "customs")
    assert_one_line_error(again, "already disabled")
    assert again.returncode == 3
    unknown = sso_ca.run("sso", "client", "disable", "nobody")
    assert_one_line_error(unknown, "no agency system named 'nobody'")
    assert unknown.returncode == 1
    assert _state(sso_ca) == before
    table = sso_ca.ok("sso", "client", "list").stdout
    assert "customs" in table and "disabled" in table


def test_no_id_token_for_a_disabled_or_unknown_client(sso_ca):
    made = sso_ca.add_client("customs", "https://customs.example.cn/cb")
    sso_ca.add_key(sso_ca.token_key)
    assert sso_ca.mint(made["client_id"], "https://127.0.0.1:8443").returncode == 0
    sso_ca.ok("sso", "client", "disable", "customs")
    p = sso_ca.mint(made["client_id"], "https://127.0.0.1:8443")
    assert p.returncode == 3 and "SSOClientDisabled" in p.stderr and "disabled" in p.stderr
    p = sso_ca.mint("no-such-client", "https://127.0.0.1:8443")
    assert p.returncode == 1 and "SSOClientNotFound" in p.stderr


# --- keys ---------------------------------------------------------------------------------------------


def test_key_add_list_retire(sso_ca):
    ec = sso_ca.add_key(sso_ca.token_key)
    assert ec["alg"] == "ES256" and ec["status"] == "active" and len(ec["kid"]) == 43
    assert set(ec["public_jwk"]) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert ec["public_jwk"]["crv"] == "P-256" and ec["public_jwk"]["kid"] == ec["kid"]
    rsa = sso_ca.add_key(sso_ca.rsa_key, "--alg", "PS256")
    assert rsa["alg"] == "PS256" and set(rsa["public_jwk"]) == {"kty", "n", "e", "kid", "alg", "use"}
    p384 = sso_ca.add_key(sso_ca.ec384_key)
    assert p384["alg"] == "ES384" and p384["public_jwk"]["crv"] == "P-384"
    # the kid is the RFC 7638 thumbprint, computed independently here
    import base64
    import hashlib

    jwk = ec["public_jwk"]
    canon = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    assert ec["kid"] == base64.urlsafe_b64encode(hashlib.sha256(canon.encode()).digest()).rstrip(b"=").decode()
    table = sso_ca.ok("sso", "key", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["KID", "ALG", "STATUS"]
    assert table[1].startswith(p384["kid"]) and "active (signs)" in table[1]
    listed = json.loads(sso_ca.ok("sso", "key", "list", "--json").stdout)
    assert [k["kid"] for k in listed] == [p384["kid"], rsa["kid"], ec["kid"]]
    out = json.loads(sso_ca.ok("sso", "key", "retire", p384["kid"], "--json").stdout)
    assert out["status"] == "retired" and out["retired_at"]
    assert "active (signs)" in [line for line in sso_ca.ok("sso", "key", "list").stdout.splitlines()
                                if line.startswith(rsa["kid"])][0]
    assert [d["alg"] for d in _audit(sso_ca, "sso.key-added")] == ["ES256", "PS256", "ES384"]
    assert _audit(sso_ca, "sso.key-retired") == [{"key": p384["key_uri"], "alg": "ES384"}]
    # the stored public JWK has no private member, nor does the audit log
    for (pj,) in sso_ca.sql("SELECT public_jwk FROM sso_keys"):
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(json.loads(pj))


@pytest.mark.parametrize("case", ["twice", *(pytest.param(c, marks=pytest.mark.slow) for c in ("alg-mismatch", "ed25519")),
                                  "bad-uri", *(pytest.param(c, marks=pytest.mark.slow) for c in ("missing", "wrong-passphrase"))])
def test_key_add_refusals(sso_ca, case):
    sso_ca.add_key(sso_ca.token_key)
    before = _state(sso_ca)
    env = {}
    if case == "twice":
        args, code, needle = ["--key", sso_ca.token_key], 1, "already an ID-token signing key"
    elif case == "alg-mismatch":
        args, code, needle = ["--key", sso_ca.ec384_key, "--alg", "ES256"], 2, "a P-384 key signs with ES384"
    elif case == "ed25519":
        uri = f"file:{sso_ca.dir / 'ed.pem'}"
        sso_ca.ok("key", "generate", uri, "--key-type", "ed25519")
        before = _state(sso_ca)
        args, code, needle = ["--key", uri], 2, "must be EC (P-256, P-384) or RSA"
    elif case == "bad-uri":
        args, code, needle = ["--key", "http://example.cn/key"], 2, "http"
    elif case == "missing":
        args, code, needle = ["--key", sso_ca.token_key.replace("object=idtoken", "object=nothing")], 1, "nothing"
    else:
        args, code, needle = ["--key", sso_ca.rsa_key], 1, "passphrase"
        env = {"UNICA_PASSPHRASE": "not-the-passphrase"}
    p = sso_ca.run("sso", "key", "add", *args, env=env)
    assert_one_line_error(p, needle)
    assert p.returncode == code
    assert _state(sso_ca) == before


@pytest.mark.slow  # CI time
def test_key_retire_refusals(sso_ca):
    k = sso_ca.add_key(sso_ca.token_key)
    sso_ca.ok("sso", "key", "retire", k["kid"])
    before = _state(sso_ca)
    for kid, code, needle in ((k["kid"], 3, "already retired"), ("abc", 2, "not a key id"),
                              ("A" * 43, 1, "no ID-token signing key with kid")):
        p = sso_ca.run("sso", "key", "retire", kid)
        assert_one_line_error(p, needle)
        assert p.returncode == code
    assert _state(sso_ca) == before


def test_no_active_key_no_token(sso_ca):
    made = sso_ca.add_client("customs", "https://customs.example.cn/cb")
    p = sso_ca.mint(made["client_id"], "https://127.0.0.1:8443")
    assert p.returncode == 1 and "NoSigningKey" in p.stderr and "unica sso key add" in p.stderr


# --- operators ----------------------------------------------------------------------------------------


def test_once_operators_exist_changes_need_an_admin_card(sso_ca):
    from tests.auth.conftest import bootstrap
    from unica.auth.operation import PERMITTED

    bootstrap(sso_ca.joint)  # alice admin, bob ra-officer of office customs
    before = _state(sso_ca)
    for args in (["sso", "client", "add", "customs", "--redirect-uri", "https://customs.example.cn/cb"],
                 ["sso", "key", "add", "--key", sso_ca.token_key]):
        p = sso_ca.run(*args)
        assert_one_line_error(p, "needs an authenticated operator")
        assert p.returncode == 3
        p = sso_ca.run(*args, who="bob")
        assert_one_line_error(p)
        assert p.returncode == 3
    assert _state(sso_ca) == before
    assert PERMITTED["sso.client"] == PERMITTED["sso.key"] == frozenset({"admin"})
    made = json.loads(sso_ca.ok("sso", "client", "add", "customs", "--redirect-uri", "https://customs.example.cn/cb",
                                "--json", who="alice").stdout)
    assert made["status"] == "active"
    actor = sso_ca.sql("SELECT actor FROM audit_log WHERE event = 'sso.client-added'")[0][0]
    assert actor.startswith("alice")
