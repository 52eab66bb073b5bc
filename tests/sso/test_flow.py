"""The authorization code flow with PKCE against the real ``unica serve`` over TLS (issue #14):
authorize with a portal session from a card login, the code exchange, the ID token checked by
an independent library (PyJWT) against the served JWKS, userinfo, single sign-on into a second
agency system, logout, and a revoked certificate refused at the next authorization."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jwt as pyjwt
import pytest

from tests.sso.conftest import USCC
from tests.sso.oidc_env import COOKIE, CUSTOMS_CB, TAX_CB, pkce, start_env


@pytest.fixture(scope="module")
def env(tmp_path_factory, _sso_template):
    e = start_env(tmp_path_factory.mktemp("oidc-flow"), _sso_template)
    yield e
    e.close()


@pytest.fixture(scope="module")
def holder(env):
    return env.holder("张三")


def _rp_verify(env, id_token: str, client: str, nonce: str) -> dict:
    """What an agency system does with PyJWT: the key by kid from the served JWKS, signature,
    iss, aud, exp, then the nonce."""
    conf = env.get("/.well-known/openid-configuration").json
    keys = {k["kid"]: pyjwt.PyJWK(k) for k in env.jwks()["keys"]}
    kid = pyjwt.get_unverified_header(id_token)["kid"]
    claims = pyjwt.decode(id_token, keys[kid].key, algorithms=conf["id_token_signing_alg_values_supported"],
                          audience=env.clients[client]["client_id"], issuer=conf["issuer"],
                          options={"require": ["exp", "iat", "iss", "aud", "sub", "auth_time"]})
    assert claims["nonce"] == nonce
    return claims


def test_discovery_names_the_endpoints_that_are_served(env):
    conf = env.get("/.well-known/openid-configuration").json
    assert conf["issuer"] == env.url
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert conf["response_types_supported"] == ["code"]
    paths = {k: urlsplit(conf[k]).path for k in ("authorization_endpoint", "token_endpoint", "jwks_uri",
                                                 "userinfo_endpoint", "end_session_endpoint")}
    for k in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint", "end_session_endpoint"):
        assert conf[k].startswith(env.url + "/")
    # each one answers as its kind of endpoint (not a 404)
    assert env.get(paths["jwks_uri"]).status == 200
    r = env.get(paths["authorization_endpoint"])
    assert r.status == 400 and b"<html" in r.body
    r = env.post_form(paths["token_endpoint"], {})
    assert r.status == 400 and r.json["error"] == "unsupported_grant_type"
    r = env.get(paths["userinfo_endpoint"])
    assert r.status == 401 and r.json["error"] == "invalid_token"
    assert env.get(paths["end_session_endpoint"]).status == 200


def test_without_a_session_authorize_sends_the_browser_to_the_card_login(env):
    verifier, challenge = pkce()
    r, q = env.authorize(None, challenge=challenge)
    assert r.status == 303
    loc = r.headers["location"]
    assert loc.startswith("/login?next=")
    nxt = parse_qs(urlsplit(loc).query)["next"][0]
    assert nxt.startswith("/oidc/authorize?") and parse_qs(urlsplit(nxt).query)["state"] == [q["state"]]
    assert r.headers["cache-control"] == "no-store"
    # prompt=none: no login page, the agency system is told at its redirect URI
    r, q = env.authorize(None, challenge=challenge, prompt="none")
    assert r.status == 303
    assert r.headers["location"] == CUSTOMS_CB + "?" + urlencode({"error": "login_required", "state": q["state"]})


def test_code_flow_confidential_client_id_token_and_userinfo(env, holder):
    cookie = env.login(holder)
    code, verifier, q = env.code(cookie)
    r = env.token(code, verifier)
    assert r.status == 200, r.body
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    body = r.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300 and body["scope"] == "openid"
    claims = _rp_verify(env, body["id_token"], "customs", q["nonce"])
    assert claims["uscc"] == USCC and claims["name"] == "张三" and claims["enterprise"] == "示例科技有限公司"
    assert claims["cert_serial"] == holder.serial and claims["acr"] == "urn:unica:acr:card"
    assert claims["amr"] == ["hwk", "sc", "pin", "mfa"] and claims["roles"] == ["enterprise"]
    assert abs(claims["auth_time"] - dt.datetime.now(dt.timezone.utc).timestamp()) < 120
    # the ID token's header names an HSM key of the served JWKS
    kid = pyjwt.get_unverified_header(body["id_token"])["kid"]
    assert kid in {k["kid"] for k in env.jwks()["keys"]}
    info = env.get("/oidc/userinfo", headers={"Authorization": "Bearer " + body["access_token"]})
    assert info.status == 200 and info.headers["cache-control"] == "no-store"
    assert info.json["sub"] == claims["sub"] and info.json["uscc"] == USCC
    # client_secret_post works the same
    code, verifier, q = env.code(cookie)
    r = env.token(code, verifier, auth="post")
    assert r.status == 200, r.body
    assert _rp_verify(env, r.json["id_token"], "customs", q["nonce"])["sub"] == claims["sub"]
    # the code exchange is audited
    rows = env.svc.joint.sql("SELECT target FROM audit_log WHERE event = 'sso.token-issued'")
    assert ("customs",) in rows


def test_single_sign_on_into_a_second_agency_system_with_no_second_login(env, holder):
    cookie = env.login(holder)
    code, verifier, q = env.code(cookie, "customs")
    first = _rp_verify(env, env.token(code, verifier).json["id_token"], "customs", q["nonce"])
    # later, the second (public) agency system: the same browser session, no card prompt
    code, verifier, q = env.code(cookie, "tax")
    r = env.token(code, verifier, "tax", auth="none")
    assert r.status == 200, r.body
    second = _rp_verify(env, r.json["id_token"], "tax", q["nonce"])
    assert second["sub"] == first["sub"] and second["auth_time"] == first["auth_time"]
    assert second["aud"] == env.clients["tax"]["client_id"] != first["aud"]


def test_logout_ends_the_provider_session(env, holder):
    cookie = env.login(holder)
    env.code(cookie)  # signed in
    c = env.clients["customs"]
    page = env.get(f"/oidc/logout?client_id={c['client_id']}&post_logout_redirect_uri={quote(CUSTOMS_CB)}&state=s1",
                   cookie)
    assert page.status == 200 and b'method="post"' in page.body and b"csrf_token" in page.body
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    csrf = page.body.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    # the GET changed nothing: still signed in
    assert env.code(cookie)
    r = env.post_form("/oidc/logout", {"csrf_token": csrf, "client_id": c["client_id"],
                                       "post_logout_redirect_uri": CUSTOMS_CB, "state": "s1"}, cookie=cookie)
    assert r.status == 303 and r.headers["location"] == CUSTOMS_CB + "?state=s1"
    assert COOKIE in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    verifier, challenge = pkce()
    r, _ = env.authorize(cookie, challenge=challenge)
    assert r.status == 303 and r.headers["location"].startswith("/login?next=")
    ended = env.svc.joint.sql("SELECT details FROM audit_log WHERE event = 'portal.session-ended' ORDER BY id DESC "
                              "LIMIT 1")[0][0]
    assert '"logout"' in ended


def test_logout_returns_only_to_a_registered_redirect_uri_of_that_client(env, holder):
    cookie = env.login(holder)
    c = env.clients["customs"]
    for uri, cid in (("https://evil.example/cb", c["client_id"]), (TAX_CB, c["client_id"]),
                     (CUSTOMS_CB + "/", c["client_id"]), (CUSTOMS_CB, None)):
        q = f"post_logout_redirect_uri={quote(uri)}" + (f"&client_id={cid}" if cid else "")
        r = env.get("/oidc/logout?" + q, cookie)
        assert r.status == 400 and "location" not in r.headers, uri
    # an id_token_hint names the client: its registered URI is taken
    code, verifier, q = env.code(cookie)
    hint = env.token(code, verifier).json["id_token"]
    r = env.get(f"/oidc/logout?id_token_hint={hint}&post_logout_redirect_uri={quote(CUSTOMS_CB)}", cookie)
    assert r.status == 200 and b"csrf_token" in r.body
    # a tampered hint is refused
    bad = hint[:-4] + ("AAAA" if not hint.endswith("AAAA") else "BBBB")
    r = env.get(f"/oidc/logout?id_token_hint={bad}&post_logout_redirect_uri={quote(CUSTOMS_CB)}", cookie)
    assert r.status == 400


def test_a_revoked_certificate_makes_the_next_authorization_fail(env):
    h = env.holder("李四")
    cookie = env.login(h)
    code, verifier, _ = env.code(cookie)
    env.svc.joint.ok("cert", "revoke", h.serial, "--ca", "root", "--reason", "keyCompromise")
    verifier2, challenge = pkce()
    r, _ = env.authorize(cookie, challenge=challenge)
    assert r.status == 303 and r.headers["location"].startswith("/login?next=")
    reason = env.svc.joint.sql("SELECT end_reason FROM portal_sessions ORDER BY id DESC LIMIT 1")[0][0]
    assert reason == "certificate-refused"
    # the code issued just before the revocation gives nothing now: its session has ended
    r = env.token(code, verifier)
    assert r.status == 400 and r.json["error"] == "invalid_grant"
    # and a fresh card login is refused
    r = env.login_reply(h)
    assert r.status == 403 and "set-cookie" not in r.headers


def test_a_code_expires_after_60_seconds(env, holder):
    from unica.sso.flow import GrantRefused, authenticate_client, redeem_code

    cookie = env.login(holder)
    code, verifier, _ = env.code(cookie)
    c = env.clients["customs"]
    client = authenticate_client(env.store(), c["client_id"], c["client_secret"])
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=61)
    with pytest.raises(GrantRefused) as e:
        redeem_code(env.store(), code=code, client=client, redirect_uri=CUSTOMS_CB, code_verifier=verifier, now=later)
    assert e.value.error == "invalid_grant" and "expired" in e.value.description
    # only the code's SHA-256 is stored
    stored = [r[0] for r in env.svc.joint.sql("SELECT code_sha256 FROM sso_codes")]
    assert code not in stored and len(stored[0]) == 64


def test_migration_0011_downgrades_and_upgrades(tmp_path):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from unica.store import models as m, open_store
    from unica.store.db import SCHEMA_HEAD, _alembic_config

    store = open_store(f"sqlite:///{tmp_path}/u.db", create=True)
    assert SCHEMA_HEAD == "0011"
    with store.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), m.Base.metadata)
    assert [d for d in diff if "sso_codes" in repr(d)] == []
    cfg = _alembic_config(store.engine)
    command.downgrade(cfg, "0010")
    assert "sso_codes" not in inspect(store.engine).get_table_names()
    command.upgrade(cfg, "head")
    assert "sso_codes" in inspect(store.engine).get_table_names()
    store.dispose()
