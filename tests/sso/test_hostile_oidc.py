"""Hostile requests to the OpenID Connect provider (issue #14), against the real ``unica serve``
over TLS: open redirects (a redirect URI not exactly registered), PKCE downgrade, token
substitution between clients, code replay (and its concurrent form), client authentication,
malformed requests."""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt as pyjwt
import pytest

from tests.sso.oidc_env import CUSTOMS_CB, TAX_CB, pkce, start_env
from unica.sso.errors import IDTokenInvalid
from unica.sso.tokens import verify_id_token


@pytest.fixture(scope="module")
def env(tmp_path_factory, _sso_template):
    e = start_env(tmp_path_factory.mktemp("oidc-hostile"), _sso_template,
                  extra_clients={"retired": ("https://retired.example.cn/cb", False)})
    e.svc.joint.ok("sso", "client", "disable", "retired")
    yield e
    e.close()


@pytest.fixture(scope="module")
def cookie(env):
    return env.login(env.holder("王五"))


def _codes(env) -> int:
    return env.svc.joint.sql("SELECT count(*) FROM sso_codes")[0][0]


@pytest.mark.parametrize("uri", [
    CUSTOMS_CB + "x",                                  # suffix
    CUSTOMS_CB + "/",                                  # trailing slash
    CUSTOMS_CB[:-1],                                   # prefix
    CUSTOMS_CB.replace("customs", "CUSTOMS"),          # case of the host
    CUSTOMS_CB.replace("https", "HTTPS"),              # case of the scheme
    CUSTOMS_CB.replace("/oidc/cb", "/OIDC/cb"),        # case of the path
    CUSTOMS_CB + "#frag",                              # fragment
    CUSTOMS_CB + "?next=https://evil.example/",        # extra query
    CUSTOMS_CB.replace("/oidc/cb", "/oidc/cb/../../evil"),  # dot segments
    CUSTOMS_CB.replace("https://", "https://customs.example.cn@evil.example/"),  # userinfo
    CUSTOMS_CB.replace("example.cn", "example.cn.evil.example"),  # host suffix
    CUSTOMS_CB.replace("https://customs.example.cn", "https://customs.example.cn:443"),  # default port spelled
    CUSTOMS_CB.replace("https", "http"),               # downgraded scheme
    "https://evil.example/oidc/cb",                    # another site
    TAX_CB,                                            # another client's registered URI
    "",                                                # none
])
def test_redirect_uri_not_exactly_registered_is_never_redirected_to(env, cookie, uri):
    before = _codes(env)
    verifier, challenge = pkce()
    r, _ = env.authorize(cookie, challenge=challenge, redirect_uri=uri)
    assert r.status == 400, (r.status, r.headers.get("location"))
    assert "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")
    # the page links only to this service (the language switch repeats the request's own path)
    links = re.findall(rb'(?:href|action|src)="([^"]*)"', r.body)
    assert links and all(u.startswith((b"/", b"#")) and not u.startswith(b"//") for u in links), links
    assert _codes(env) == before


@pytest.mark.parametrize("client_id", ["unknown-client", "", "RETIRED"])
def test_unknown_or_disabled_client_gets_a_page_not_a_redirect(env, cookie, client_id):
    verifier, challenge = pkce()
    r, _ = env.authorize(cookie, challenge=challenge, client_id=client_id)
    assert r.status == 400 and "location" not in r.headers


def test_disabled_client_is_refused_even_at_its_registered_uri(env, cookie):
    cid = [c for c in env.svc.joint.sql("SELECT client_id FROM sso_clients WHERE name = 'retired'")][0][0]
    verifier, challenge = pkce()
    r, _ = env.authorize(cookie, challenge=challenge, client_id=cid, redirect_uri="https://retired.example.cn/cb")
    assert r.status == 400 and "location" not in r.headers


def _error_at_redirect(r, q) -> dict:
    assert r.status == 303, (r.status, r.body[:300])
    loc = r.headers["location"]
    assert loc.startswith(q["redirect_uri"] + "?")
    got = parse_qs(urlsplit(loc).query)
    assert "code" not in got and got["state"] == [q["state"]]
    return got


@pytest.mark.parametrize("over,error", [
    ({"code_challenge": None}, "invalid_request"),                          # no PKCE
    ({"code_challenge_method": "plain"}, "invalid_request"),                 # plain: a downgrade
    ({"code_challenge_method": None}, "invalid_request"),                    # absent means plain
    ({"code_challenge_method": "s256"}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),              # implicit flow
    ({"response_type": "code id_token"}, "unsupported_response_type"),      # hybrid flow
    ({"scope": "profile"}, "invalid_scope"),                                 # not OpenID Connect
])
def test_pkce_downgrade_and_other_flows_are_refused_at_the_client(env, cookie, over, error):
    before = _codes(env)
    verifier, challenge = pkce()
    r, q = env.authorize(cookie, challenge=challenge, **over)
    got = _error_at_redirect(r, q)
    assert got["error"] == [error]
    assert _codes(env) == before


def test_a_repeated_parameter_is_refused(env, cookie):
    verifier, challenge = pkce()
    c = env.clients["customs"]
    q = urlencode([("response_type", "code"), ("client_id", c["client_id"]), ("redirect_uri", CUSTOMS_CB),
                   ("redirect_uri", "https://evil.example/"), ("scope", "openid"), ("code_challenge", challenge),
                   ("code_challenge_method", "S256")])
    r = env.get("/oidc/authorize?" + q, cookie)
    assert r.status == 400 and "location" not in r.headers


def test_the_code_travels_without_referrer_or_cache(env, cookie):
    verifier, challenge = pkce()
    r, q = env.authorize(cookie, challenge=challenge)
    assert r.status == 303
    assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"


def test_wrong_or_missing_verifier_is_refused_and_does_not_use_up_the_code(env, cookie):
    code, verifier, q = env.code(cookie)
    other, _ = pkce()
    r = env.token(code, other)
    assert r.status == 400 and r.json["error"] == "invalid_grant"
    r = env.token(code, None)
    assert r.status == 400 and r.json["error"] == "invalid_request"
    r = env.token(code, "x" * 20)  # not a verifier at all
    assert r.status == 400 and r.json["error"] == "invalid_grant"
    r = env.token(code, q["code_challenge"])  # the challenge is not the verifier (plain's confusion)
    assert r.status == 400 and r.json["error"] == "invalid_grant"
    r = env.token(code, verifier)  # the client that holds the verifier still gets its tokens
    assert r.status == 200, r.body


def test_code_of_one_client_is_not_redeemed_by_another(env, cookie):
    code, verifier, _ = env.code(cookie, "customs")
    r = env.token(code, verifier, "tax", auth="none")  # tax's own credentials, customs' code
    assert r.status == 400 and r.json["error"] == "invalid_grant"
    # nor by customs with tax's redirect URI
    r = env.token(code, verifier, redirect_uri=TAX_CB)
    assert r.status == 400 and r.json["error"] == "invalid_grant"
    # nor by the public client naming customs' client_id without its secret
    r = env.token(code, verifier, auth="none", client_id=env.clients["customs"]["client_id"])
    assert r.status == 401 and r.json["error"] == "invalid_client"
    assert env.token(code, verifier).status == 200  # customs, rightly


def test_id_token_of_one_client_is_refused_as_anothers(env, cookie):
    code, verifier, q = env.code(cookie, "customs")
    id_token = env.token(code, verifier).json["id_token"]
    keys = {k["kid"]: pyjwt.PyJWK(k) for k in env.jwks()["keys"]}
    key = keys[pyjwt.get_unverified_header(id_token)["kid"]].key
    with pytest.raises(pyjwt.InvalidAudienceError):
        pyjwt.decode(id_token, key, algorithms=["ES256"], audience=env.clients["tax"]["client_id"], issuer=env.url)
    with pytest.raises(IDTokenInvalid) as e:
        verify_id_token(id_token, env.jwks(), issuer_url=env.url, client_id=env.clients["tax"]["client_id"])
    assert e.value.reason == "wrong-audience"


def test_code_replay_is_refused_and_revokes_what_the_code_gave(env, cookie):
    code, verifier, _ = env.code(cookie)
    first = env.token(code, verifier)
    assert first.status == 200
    access = first.json["access_token"]
    assert env.get("/oidc/userinfo", headers={"Authorization": f"Bearer {access}"}).status == 200
    again = env.token(code, verifier)
    assert again.status == 400 and again.json["error"] == "invalid_grant"
    r = env.get("/oidc/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert r.status == 401 and r.json["error"] == "invalid_token"
    assert env.svc.joint.sql("SELECT count(*) FROM audit_log WHERE event = 'sso.code-replayed'")[0][0] >= 1


def test_concurrent_redemptions_of_one_code_one_wins(env, cookie):
    code, verifier, _ = env.code(cookie)
    results: list = []
    start = threading.Barrier(4)

    def redeem():
        start.wait()
        results.append(env.token(code, verifier).status)

    threads = [threading.Thread(target=redeem) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [200, 400, 400, 400]


@pytest.mark.parametrize("case", ["wrong-secret", "no-secret", "public-with-secret", "two-methods", "unknown"])
def test_client_authentication_at_the_token_endpoint(env, cookie, case):
    code, verifier, _ = env.code(cookie, "tax" if case == "public-with-secret" else "customs")
    c = env.clients["customs"]
    if case == "wrong-secret":
        r = env.token(code, verifier, auth="post", client_secret="not-the-secret")
    elif case == "no-secret":
        r = env.token(code, verifier, auth="none")
    elif case == "public-with-secret":
        r = env.token(code, verifier, "tax", auth="none", client_secret="anything")
    elif case == "two-methods":
        r = env.token(code, verifier, client_id=c["client_id"], client_secret=c["client_secret"])
    else:
        r = env.token(code, verifier, auth="none", client_id="unknown-client")
    expected = 400 if case == "two-methods" else 401
    assert r.status == expected and r.json["error"] == ("invalid_request" if expected == 400 else "invalid_client")
    assert r.headers["cache-control"] == "no-store"


def test_malformed_token_requests(env):
    r = env.svc.request("POST", "/oidc/token", body={"grant_type": "authorization_code"})  # JSON, not a form
    assert r.status == 400 and r.json["error"] == "invalid_request"
    r = env.post_form("/oidc/token", {"grant_type": "password", "username": "x", "password": "y"})
    assert r.status == 400 and r.json["error"] == "unsupported_grant_type"
    r = env.post_form("/oidc/token", {"grant_type": "authorization_code"},
                      headers={"Authorization": "Basic !!!"})
    assert r.status == 400 and r.json["error"] == "invalid_request"
    r = env.get("/oidc/token")
    assert r.status == 405
    r = env.get("/oidc/userinfo", headers={"Authorization": "Bearer " + "A" * 43})
    assert r.status == 401


def test_logout_is_not_done_by_a_get_or_a_forged_post(env):
    c = env.login(env.holder("赵六"))
    r = env.get("/oidc/logout", c)
    assert r.status == 200 and b"csrf_token" in r.body
    r = env.post_form("/oidc/logout", {}, cookie=c)
    assert r.status == 403
    r = env.post_form("/oidc/logout", {"csrf_token": "forged"}, cookie=c)
    assert r.status == 403
    csrf = env.get("/oidc/logout", c).body.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    r = env.post_form("/oidc/logout", {"csrf_token": csrf}, cookie=c, headers={"Origin": "https://evil.example"})
    assert r.status == 403  # another site's form, even with the token
    assert env.code(c)  # still signed in
