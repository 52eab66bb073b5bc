"""Card logins per second, as a ratio to validating the card's certificate with unica.verify.

    python bench/login_load.py [--n 200] [--threads 4] [--pg]

One home (SQLite, or ``--pg`` a throwaway PostgreSQL 15 cluster) with CA ``root`` on a SoftHSM2
token and a card: a P-256 key on another SoftHSM2 token with its ``enterprise-auth`` certificate
(``unica token enroll``). In one run:

- **baseline**: ``unica.verify.Verifier.validate_certificate`` of the card's certificate
  (client-auth use, the CA's root as trust anchor), the Verifier made once and warm (as the
  service keeps it), one after another;
- **card login**, the library path a portal login takes: ``issue_challenge`` (a one-time nonce
  stored), the challenge signed on the card's token (PKCS#11, the key loaded once as the agent
  keeps it), ``verify_login`` (the challenge consumed, the signature, the certificate's row and
  path), ``open_session``, then one ``current_session`` (the first page after the login);
  sequential, and with ``--threads`` concurrent logins;
- **OIDC code exchange**, the library path of one agency system's sign-in in a live portal
  session: ``current_session`` (what ``/oidc/authorize`` checks, the card's certificate
  included), ``check_client`` + ``check_request``, ``issue_code``, then what ``/oidc/token``
  does: ``authenticate_client`` (the secret), ``redeem_code`` (PKCE S256, the code consumed, the
  access token recorded, audited) and ``mint_id_token`` (ES256 on a SoftHSM2 token, the key
  loaded once as the service keeps it); sequential and concurrent;
- the baseline again (the machine's drift shows as the difference of the two).

Figures: logins and code exchanges per second as a ratio to the mean baseline, with p50/p99 of
one. Not measured: the browser-to-agent HTTP hop and the HTTP routes (TLS, routing); the figures
are the library's part.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _softhsm  # noqa: E402  (before anything loads the PKCS#11 module)
from enroll_load import pct, postgresql, unica  # noqa: E402

PORTAL = "https://127.0.0.1:8443"
USCC = "91350100M000100Y43"
CALLBACK = "https://customs.example.cn/oidc/cb"
ID_TOKEN_KEY = f"pkcs11:token={_softhsm.TOKEN};object=idtoken"


def build(tmp: Path, db: str | None) -> dict:
    env = dict(os.environ, UNICA_HOME=str(tmp / "home"))
    for k in ("UNICA_OPERATOR", "UNICA_DB"):
        env.pop(k, None)
    if db:
        env["UNICA_DB"] = db
    card = "card"
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", card, "--pin", _softhsm.PIN,
                    "--so-pin", _softhsm.SO_PIN], check=True, capture_output=True)
    unica(env, "init")
    unica(env, "ca", "create-root", "root", "--subject", "C=CN,O=Bench Joint CA,CN=Bench Root", "--key-type",
          "ec-p256", "--token", _softhsm.TOKEN)
    unica(env, "token", "enroll", "--token", card, "--label", "login", "--key-type", "ec-p256", "--subject",
          "C=CN,O=压测科技有限公司,CN=张三", "--uscc", USCC, "--ca", "root", "--profile", "enterprise-auth")
    (tmp / "root.pem").write_text(unica(env, "ca", "export", "root"))
    unica(env, "key", "generate", ID_TOKEN_KEY, "--key-type", "ec-p256")
    unica(env, "sso", "key", "add", "--key", ID_TOKEN_KEY)
    import json

    client = json.loads(unica(env, "sso", "client", "add", "customs", "--redirect-uri", CALLBACK, "--json"))
    env["_client_id"], env["_client_secret"] = client["client_id"], client["client_secret"]
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="logins per run (and baseline validations x 5)")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--pg", action="store_true", help="on a throwaway PostgreSQL 15 cluster instead of SQLite")
    args = ap.parse_args()
    _softhsm.setup()
    with postgresql() if args.pg else contextlib.nullcontext() as db:
        return run(args, db)


def run(args, db: str | None) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="unica-login-bench-"))
    env = build(tmp, db)
    client_id, client_secret = env.pop("_client_id"), env.pop("_client_secret")
    os.environ.update({k: env[k] for k in ("UNICA_HOME", "UNICA_DB") if k in env})
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    from unica.hsm import load_key
    from unica.hsm.objects import certificate_for_key
    from unica.portal.login import issue_challenge, verify_login
    from unica.portal.sessions import current_session, open_session
    from unica.store import open_store
    from unica.verify import OFF, Verifier

    store = open_store()
    key = load_key("pkcs11:token=card;object=login")
    cert, _ = certificate_for_key(key)
    der = cert.public_bytes(Encoding.DER)
    root = x509.load_pem_x509_certificate((tmp / "root.pem").read_bytes())
    verifier = Verifier([root], usage="client-auth", revocation=OFF)

    def baseline() -> float:
        m = 5 * args.n
        report = verifier.validate_certificate(cert)
        assert report.passed, report.messages
        t0 = time.perf_counter()
        for _ in range(m):
            verifier.validate_certificate(cert)
        return m / (time.perf_counter() - t0)

    def login() -> float:
        t0 = time.perf_counter()
        text = issue_challenge(store, PORTAL, source="127.0.0.1")
        sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
        facts = verify_login(store, origin=PORTAL, challenge_text=text, signature=sig, cert_der=der,
                             source="127.0.0.1")
        token, _ = open_session(store, facts, der, source="127.0.0.1")
        current_session(store, token)
        return time.perf_counter() - t0

    import base64
    import hashlib
    import secrets

    from unica.sso.flow import authenticate_client, check_client, check_request, issue_code, redeem_code
    from unica.sso.tokens import mint_id_token

    id_key = load_key(ID_TOKEN_KEY)
    mint_lock = threading.Lock()  # one signature at a time on the token's session, as the service does
    text = issue_challenge(store, PORTAL, source="127.0.0.1")
    facts = verify_login(store, origin=PORTAL, challenge_text=text,
                         signature=key.sign(text.encode(), ec.ECDSA(hashes.SHA256())), cert_der=der, source="127.0.0.1")
    session_token, _ = open_session(store, facts, der, source="127.0.0.1")

    def exchange() -> float:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        t0 = time.perf_counter()
        session = current_session(store, session_token)
        check_client(store, client_id, CALLBACK)
        req = check_request(client_id=client_id, redirect_uri=CALLBACK, response_type="code", scope="openid",
                            state="s", nonce="n", code_challenge=challenge, code_challenge_method="S256")
        code = issue_code(store, req, session)
        client = authenticate_client(store, client_id, client_secret)
        grant = redeem_code(store, code=code, client=client, redirect_uri=CALLBACK, code_verifier=verifier)
        with mint_lock:
            mint_id_token(store, grant.facts, client_id=client_id, issuer_url=PORTAL, nonce=grant.nonce,
                          auth_time=grant.auth_time, load_key=lambda uri: id_key)
        return time.perf_counter() - t0

    def logins(threads: int, one=login) -> tuple[float, list[float]]:
        lat: list[float] = []
        todo = iter(range(args.n))
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    if next(todo, None) is None:
                        return
                d = one()
                with lock:
                    lat.append(d)

        ts = [threading.Thread(target=worker) for _ in range(threads)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return args.n / (time.perf_counter() - t0), lat

    for _ in range(10):  # warm: the key's session, the certificate path cache, pkilint not involved
        login()
        exchange()
    base1 = baseline()
    results = {1: logins(1), args.threads: logins(args.threads)}
    exchanges = {1: logins(1, exchange), args.threads: logins(args.threads, exchange)}
    base2 = baseline()
    base = (base1 + base2) / 2
    print(f"card login (challenge, signature on a SoftHSM2 token, verify_login, open_session, current_session), "
          f"{args.n} logins per run; {'PostgreSQL 15' if db else 'SQLite'}; load average {os.getloadavg()[0]:.2f}")
    print(f"  baseline Verifier.validate_certificate (warm): {base1:8.1f} /s before, {base2:8.1f} /s after "
          f"(mean {base:.1f} /s)")
    for threads, (rate, lat) in results.items():
        print(f"  card login, {threads} thread{'s' if threads > 1 else ' '}: {rate:7.1f} /s = {rate / base:6.4f} x baseline"
              f"   latency p50 {statistics.median(lat) * 1000:6.1f} ms  p99 {pct(lat, 99) * 1000:6.1f} ms")
    for threads, (rate, lat) in exchanges.items():
        print(f"  OIDC code exchange, {threads} thread{'s' if threads > 1 else ' '}: {rate:7.1f} /s = "
              f"{rate / base:6.4f} x baseline   latency p50 {statistics.median(lat) * 1000:6.1f} ms  "
              f"p99 {pct(lat, 99) * 1000:6.1f} ms")
    print("  not measured: the browser-to-agent HTTP hop and the HTTP routes (TLS, routing)")
    store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
