"""An agency system that signs its users in with unica's card login (OpenID Connect).

A standard client, no unica code: Authlib's OAuth2Session (authorization code flow, PKCE S256,
state, the code exchange) and joserfc (the ID token against the provider's JWKS: signature,
iss, aud, exp, nonce). Run it next to a ``unica serve`` that registered it with
``unica sso client add NAME --redirect-uri http://127.0.0.1:PORT/callback``:

    AGENCY_CLIENT_SECRET=... python examples/agency_system.py --issuer https://127.0.0.1:8443 \\
        --client-id=ID --ca-file root.pem --port PORT

(the secret from the environment, never an option; without one the client is a public one).
``/login`` sends the browser to unica; ``/callback`` exchanges the code and shows the claims.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import secrets
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet


def discover(issuer: str, ca_file: str) -> dict:
    conf = requests.get(issuer + "/.well-known/openid-configuration", verify=ca_file, timeout=10).json()
    if conf.get("issuer") != issuer:
        raise ValueError("the discovery document names another issuer")
    return conf


def verify_id_token(id_token: str, conf: dict, client_id: str, nonce: str, ca_file: str) -> dict:
    """The ID token's claims once its signature (JWKS), issuer, audience, expiry and nonce check."""
    keys = KeySet.import_key_set(requests.get(conf["jwks_uri"], verify=ca_file, timeout=10).json())
    token = jwt.decode(id_token, keys, algorithms=conf["id_token_signing_alg_values_supported"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": conf["issuer"]},
                          aud={"essential": True, "value": client_id},
                          nonce={"essential": True, "value": nonce},
                          sub={"essential": True}, exp={"essential": True}).validate(token.claims)
    return token.claims


def make_handler(conf: dict, client_id: str, secret: str | None, redirect_uri: str, ca_file: str):
    pending: dict = {}  # browser cookie -> (state, nonce, code_verifier)

    def oauth(**kw) -> OAuth2Session:
        s = OAuth2Session(client_id, secret, scope="openid", redirect_uri=redirect_uri, code_challenge_method="S256",
                          token_endpoint_auth_method="client_secret_basic" if secret else "none", **kw)
        return s

    class Handler(BaseHTTPRequestHandler):
        def reply(self, status: int, text: str, headers: dict | None = None) -> None:
            body = f"<!DOCTYPE html><html lang='zh-CN'><body>{text}</body></html>".encode()
            self.send_response(status)
            for k, v in {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(body)),
                         "Cache-Control": "no-store", **(headers or {})}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            cookie = dict(c.strip().split("=", 1) for c in self.headers.get("Cookie", "").split(";") if "=" in c)
            if self.path == "/login":
                sid, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
                url, state = oauth().create_authorization_url(conf["authorization_endpoint"], nonce=nonce,
                                                              code_verifier=verifier)
                pending[sid] = (state, nonce, verifier)
                return self.reply(302, "", {"Location": url, "Set-Cookie": f"sid={sid}; HttpOnly; SameSite=Lax"})
            if self.path.startswith("/callback"):
                state, nonce, verifier = pending.pop(cookie.get("sid"), (None, None, None))
                if state is None:
                    return self.reply(400, "no sign-in in progress")
                try:
                    token = oauth(state=state).fetch_token(conf["token_endpoint"], state=state,
                                                           authorization_response=redirect_uri + self.path[9:],
                                                           code_verifier=verifier, verify=ca_file)
                    claims = verify_id_token(token["id_token"], conf, client_id, nonce, ca_file)
                except Exception as e:  # noqa: BLE001 - any failure: not signed in
                    return self.reply(400, f"sign-in refused: {html.escape(type(e).__name__)}: {html.escape(str(e))}")
                shown = html.escape(json.dumps(claims, ensure_ascii=False, indent=1))
                return self.reply(200, f"<h1>{html.escape(claims.get('name', ''))}</h1><pre id='claims'>{shown}</pre>")
            return self.reply(404, "not found")

        def log_message(self, *args) -> None:
            pass

    return Handler


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--ca-file", required=True, help="the CA certificate the provider's TLS certificate chains to")
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    redirect_uri = f"http://127.0.0.1:{a.port}/callback"
    conf = discover(a.issuer, a.ca_file)
    handler = make_handler(conf, a.client_id, os.environ.get("AGENCY_CLIENT_SECRET") or None, redirect_uri, a.ca_file)
    server = ThreadingHTTPServer(("127.0.0.1", a.port), handler)
    print(f"agency system on http://127.0.0.1:{a.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
