"""The OpenID Connect flow's test environment (issue #14, second slice): one real ``unica serve``
over TLS on 127.0.0.1 per test module, on its own copy of tests/sso's CA, with

- the ID-token key on a SoftHSM2 token (``unica sso key add``);
- agency systems registered through the CLI: ``customs`` (confidential) and ``tax`` (public);
- enterprise holders with software keys and ``enterprise-auth`` certificates issued by ``root``
  (:meth:`OIDCEnv.holder`), and :meth:`OIDCEnv.login` -- the portal's card login over HTTP:
  ``GET /login/challenge``, the challenge signed with the holder's key (what the agent does with
  the card: tests/portal and tests/login drive the agent and a SoftHSM2 card), ``POST /login``;
  the session cookie (``websession.COOKIE``) of its answer is the browser's session.

The HTTP client is Python's http.client over ssl (:meth:`Service.request`), cookies set by hand.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from tests.service.conftest import TLS_PASSPHRASE, copy_service_ca, start_service
from tests.sso.conftest import KEY_PASSPHRASE, USCC

ORG = "示例科技有限公司"
COOKIE = "__Host-unica-session"
CUSTOMS_CB = "https://customs.example.cn/oidc/cb"
TAX_CB = "http://127.0.0.1:8765/tax/cb"


def pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), computed here (not with Authlib)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Holder:
    key: object
    der: bytes
    serial: str
    cn: str


@dataclass
class OIDCEnv:
    svc: object
    clients: dict
    _store: object = None
    holders: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.svc.url

    def store(self):
        if self._store is None:
            from unica.store import open_store

            self._store = open_store(self.svc.joint.db_url())
        return self._store

    def holder(self, cn: str) -> Holder:
        d = self.svc.joint.dir
        tag = f"{cn.encode().hex()[:8]}-{secrets.token_hex(3)}"
        keyf, csr, pem = d / f"{tag}.key", d / f"{tag}.csr", d / f"{tag}.pem"
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(keyf), "-out", str(csr), "-utf8", "-subj",
                        f"/C=CN/O={ORG}/organizationIdentifier={USCC}/CN={cn}"], check=True, capture_output=True)
        self.svc.joint.ok("cert", "issue", "--ca", "root", "--profile", "enterprise-auth", "--csr", str(csr),
                          "--out", str(pem))
        cert = x509.load_pem_x509_certificate(pem.read_bytes())
        h = Holder(serialization.load_pem_private_key(keyf.read_bytes(), None), cert.public_bytes(Encoding.DER),
                   format(cert.serial_number, "x"), cn)
        self.holders.append(h)
        return h

    def login_reply(self, h: Holder, next_path: str | None = None):
        """A card login of ``h`` through the portal (see the module's docstring): the answer to
        ``POST /login`` (303 and the session cookie when it succeeds)."""
        r = self.get("/login/challenge")
        assert r.status == 200, r.body[:300]
        text = r.json["challenge"]
        sig = h.key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
        body = {"challenge": text, "signature": base64.b64encode(sig).decode(),
                "certificate": base64.b64encode(h.der).decode(), **({"next": next_path} if next_path else {})}
        return self.svc.request("POST", "/login", body=body, headers={"Origin": self.url})

    def login(self, h: Holder) -> str:
        """A card login of ``h``: the session cookie's value."""
        r = self.login_reply(h)
        assert r.status == 303, (r.status, r.body[:500])
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(COOKIE + "="), cookie
        return cookie.split(";")[0].split("=", 1)[1]

    def get(self, path: str, cookie: str | None = None, headers: dict | None = None):
        h = dict(headers or {})
        if cookie:
            h["Cookie"] = f"{COOKIE}={cookie}"
        return self.svc.request("GET", path, headers=h)

    def post_form(self, path: str, form: dict, headers: dict | None = None, cookie: str | None = None):
        h = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        if cookie:
            h["Cookie"] = f"{COOKIE}={cookie}"
        return self.svc.request("POST", path, body=urlencode(form).encode(), headers=h)

    def authorize(self, cookie: str | None, client: str = "customs", *, challenge: str | None = None, **over):
        c = self.clients[client]
        q = {"response_type": "code", "client_id": c["client_id"], "redirect_uri": c["redirect_uri"],
             "scope": "openid", "state": "st-" + secrets.token_hex(4), "nonce": "n-" + secrets.token_hex(4),
             "code_challenge": challenge, "code_challenge_method": "S256"}
        q.update(over)
        return self.get("/oidc/authorize?" + urlencode({k: v for k, v in q.items() if v is not None}), cookie), q

    def code(self, cookie: str, client: str = "customs", **over) -> tuple[str, str, dict]:
        """A code by the whole authorize step: (code, code_verifier, the request's parameters)."""
        verifier, challenge = pkce()
        r, q = self.authorize(cookie, client, challenge=challenge, **over)
        assert r.status == 303, (r.status, r.body[:500])
        loc = r.headers["location"]
        assert loc.startswith(q["redirect_uri"] + "?"), loc
        got = parse_qs(urlsplit(loc).query)
        assert got["state"] == [q["state"]]
        return got["code"][0], verifier, q

    def token(self, code: str, verifier: str | None, client: str = "customs", *, auth: str = "basic", **over):
        c = self.clients[client]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": c["redirect_uri"],
                "code_verifier": verifier}
        headers = {}
        if auth == "basic" and c.get("client_secret"):
            raw = f"{c['client_id']}:{c['client_secret']}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        elif auth == "post":
            form["client_id"] = c["client_id"]
            if c.get("client_secret"):
                form["client_secret"] = c["client_secret"]
        elif auth == "none":
            form["client_id"] = c["client_id"]
        form.update(over)
        return self.post_form("/oidc/token", {k: v for k, v in form.items() if v is not None}, headers)

    def jwks(self) -> dict:
        return self.get("/oidc/jwks").json

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
        self.svc.stop()


def start_env(base: Path, template, *, extra_clients: dict | None = None) -> OIDCEnv:
    """Copy tests/sso's CA template under ``base``, add the HSM ID-token key and the clients,
    start the service. ``extra_clients``: name -> (redirect URI, public?)."""
    j = copy_service_ca(template.joint, base)
    j.ok("sso", "key", "add", "--key", template.token_key, env={"UNICA_PASSPHRASE": KEY_PASSPHRASE})
    clients = {}
    wanted = {"customs": (CUSTOMS_CB, False), "tax": (TAX_CB, True), **(extra_clients or {})}
    for name, (uri, public) in wanted.items():
        out = json.loads(j.ok("sso", "client", "add", name, "--redirect-uri", uri, "--json",
                              *(["--public"] if public else [])).stdout)
        clients[name] = {"client_id": out["client_id"], "client_secret": out.get("client_secret"), "redirect_uri": uri}
    svc = start_service(j, env={"UNICA_PASSPHRASE": TLS_PASSPHRASE})
    return OIDCEnv(svc, clients)
