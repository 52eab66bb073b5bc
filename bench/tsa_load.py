"""Time-stamp tokens per second: the real ``unica tsa serve`` over HTTP against in-process
baselines, in one run.

One home (SQLite) with a root CA and a TSA unit whose key is a software P-256 key (an
encrypted file: the baseline signs with the same kind of key, so the ratio measures unica and
HTTP, not the key store; ``--token`` puts the unit key on a SoftHSM2 token instead). Then:

- **baseline**: asn1crypto parses the TimeStampReq, the token is assembled from DER pieces
  encoded beforehand (certificate, issuer-and-serial, algorithm identifiers, ESSCertIDv2, tsa
  name), ``cryptography`` signs -- the least a token costs in Python;
- **unica in-process**: ``unica.tsa.Responder.respond`` (parse, checks, token, archive
  enqueued), with the archive on, and again with it off (the archive's cost);
- **service**: ``unica tsa serve`` with ``--workers`` W (1 and 2 by default) on 127.0.0.1,
  loaded by wrk (one thread, ``--clients`` 8 keep-alive connections, POSTing 256 different
  requests in turn, as bench/ocsp_load.py does) for ``--duration`` seconds; the client shares the
  machine's cores with the server;
- the baseline again, last (the machine's drift shows as the difference of the two).

Figures: tokens/s of each (in-process: the best of three runs); in-process and service as ratios to the mean baseline (targets:
in-process >= 0.9 x, service >= 0.5 x); the latency of a request as the client sees it (p50,
p99); that every token issued over HTTP reached the archive.

    python bench/tsa_load.py [--n 2000] [--clients 8] [--workers 1,2] [--duration 4] [--token]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _softhsm  # noqa: E402  (before anything loads the PKCS#11 module)

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "bench-tsa-passphrase"
POLICY = "1.3.6.1.4.1.59999.3161.1"


def unica(*args, env):
    p = subprocess.run([sys.executable, "-m", "unica", *args], env=env, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"unica {' '.join(args)}: {p.stderr.strip()}")
    return p


def make_home(d: Path, token: bool) -> dict:
    env = dict(os.environ, UNICA_HOME=str(d / "home"), UNICA_PASSPHRASE=PASSPHRASE)
    env.pop("UNICA_DB", None)
    unica("init", env=env)
    unica("ca", "create-root", "root", "--subject", "C=CN,O=Bench,CN=Bench Root", "--key-type", "ec-p256",
          "--token", _softhsm.TOKEN, env=env)
    extra = ["--token", _softhsm.TOKEN] if token else []
    unica("tsa", "unit", "add", "bench", "--ca", "root", "--key-type", "ec-p256", "--policy", POLICY, *extra, env=env)
    os.environ.update({k: env[k] for k in ("UNICA_HOME", "UNICA_PASSPHRASE")})
    return env


def requests(n: int) -> list[bytes]:
    from asn1crypto import tsp

    out = []
    for i in range(n):
        out.append(tsp.TimeStampReq({"version": "v1", "message_imprint": {
            "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": hashlib.sha256(b"%d" % i).digest()},
            "nonce": int.from_bytes(os.urandom(8), "big"), "cert_req": True}).dump())
    return out


class Baseline:
    """asn1crypto + cryptography, DER pieces encoded once."""

    def __init__(self, key, cert):
        import secrets

        from asn1crypto import algos, core, tsp
        from asn1crypto import x509 as ax
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import Encoding

        from unica.sign.cms import tlv

        self.tlv, self.secrets, self.tsp = tlv, secrets, tsp
        self.key, self.alg = key, ec.ECDSA(hashes.SHA256())
        der = cert.public_bytes(Encoding.DER)
        a = ax.Certificate.load(der)
        sid = tlv(0x30, a.issuer.dump(), core.Integer(cert.serial_number).dump())
        ess = tsp.SigningCertificateV2({"certs": [{"cert_hash": hashlib.sha256(der).digest(), "issuer_serial": {
            "issuer": [ax.GeneralName(name="directory_name", value=a.issuer)],
            "serial_number": cert.serial_number}}]}).dump()
        sha = algos.DigestAlgorithm({"algorithm": "sha256"}).dump()
        self.tst_oid = b"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x01\x04"
        self.ct = tlv(0x30, b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x03", tlv(0x31, self.tst_oid))
        self.ess = tlv(0x30, b"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x02\x2f", tlv(0x31, ess))
        self.md = b"\x30\x2f\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x04\x31\x22\x04\x20"
        self.si_head = b"\x02\x01\x01" + sid + sha
        self.sig_alg = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}).dump()
        self.sd_head = b"\x02\x01\x03" + tlv(0x31, sha)
        self.certs = tlv(0xA0, der)
        self.policy = core.ObjectIdentifier(POLICY).dump()
        self.tsa = tlv(0xA0, tlv(0xA4, a.subject.dump()))
        self.acc = tlv(0x30, b"\x02\x01\x01")
        self.sha = sha

    def respond(self, q: bytes) -> bytes:
        tlv = self.tlv
        req = self.tsp.TimeStampReq.load(q)
        imprint = req["message_imprint"]["hashed_message"].native
        nonce = req["nonce"].contents
        serial = self.secrets.randbits(127) | (1 << 126)
        gen = tlv(0x18, time.strftime("%Y%m%d%H%M%SZ", time.gmtime()).encode())
        tst = tlv(0x30, b"\x02\x01\x01", self.policy, tlv(0x30, self.sha, tlv(0x04, imprint)),
                  tlv(0x02, serial.to_bytes(16, "big")), gen, self.acc, tlv(0x02, nonce), self.tsa)
        attrs = tlv(0x31, *sorted((self.ct, self.md + hashlib.sha256(tst).digest(), self.ess)))
        sig = self.key.sign(attrs, self.alg)
        si = tlv(0x30, self.si_head, b"\xa0" + attrs[1:], self.sig_alg, tlv(0x04, sig))
        sd = tlv(0x30, self.sd_head, tlv(0x30, self.tst_oid, tlv(0xA0, tlv(0x04, tst))), self.certs, tlv(0x31, si))
        return tlv(0x30, tlv(0x30, b"\x02\x01\x00"),
                   tlv(0x30, b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02", tlv(0xA0, sd)))


def timed(fn, qs, rounds: int = 3, after=None) -> float:
    """Tokens/s of ``fn`` over ``qs``, ``after()`` included (the archive's last batch written):
    the best of ``rounds`` runs (the machine is shared)."""
    for q in qs[:50]:
        fn(q)
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for q in qs:
            fn(q)
        if after is not None:
            after()
        best = max(best, len(qs) / (time.perf_counter() - t0))
    return best


def serve_and_load(env, workers: int, clients: int, qs: list[bytes], duration: float, tmp: Path):
    """(tokens/s, p50 ms, p99 ms, requests sent) of ``unica tsa serve --workers W`` under wrk."""
    from ocsp_load import lua_script, run_wrk

    script = tmp / "tsq.lua"
    lua_script(qs[:256], script)
    script.write_text(script.read_text().replace("application/ocsp-request", "application/timestamp-query"))
    proc = subprocess.Popen([sys.executable, "-m", "unica", "tsa", "serve", "--port", "0", "--workers", str(workers)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        mt = re.search(r"unica tsa on http://127\.0\.0\.1:(\d+)/", line)
        if not mt:
            raise SystemExit(f"tsa serve did not start: {line}{proc.stdout.read()}")
        port = int(mt.group(1))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for q in qs[:20 * workers]:  # warm-up: every worker has loaded the key
            c.request("POST", "/", body=q, headers={"Content-Type": "application/timestamp-query"})
            r = c.getresponse()
            body = r.read()
            if r.status != 200 or b"\x30\x03\x02\x01\x00" not in body[:12]:
                raise SystemExit(f"bad answer {r.status} {body[:40]!r}")
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.close()
        res = run_wrk(port, clients, duration, script)
        if res["errors"]:
            raise SystemExit(f"{res['errors']} non-2xx answers")
        return res["rps"], res["p50"], res["p99"], round(res["rps"] * duration) + 20 * workers
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="tokens per measurement")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", default="1,2", help="service worker counts to measure, comma-separated")
    ap.add_argument("--token", action="store_true", help="the unit key on a SoftHSM2 token (else a file key)")
    ap.add_argument("--duration", type=float, default=4, help="seconds of load per service run")
    a = ap.parse_args()
    import shutil

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed as the HTTP client (apt-get install wrk), as for bench/ocsp_load.py")
    _softhsm.setup()
    d = Path(tempfile.mkdtemp(prefix="unica-tsa-bench-"))
    env = make_home(d, a.token)
    from unica.store import open_store
    from unica.tsa import Responder

    store = open_store(f"sqlite:///{d / 'home' / 'unica.db'}")
    qs = requests(a.n)
    with Responder(store, "bench", archive=True) as r_arch:
        base = Baseline(r_arch.template.key, r_arch.template.cert)
        assert base.respond(qs[0])[:2] == r_arch.respond(qs[0])[:2]
        b1 = timed(base.respond, qs)
        inproc = timed(r_arch.respond, qs, after=r_arch.archive.flush)
    with Responder(store, "bench", archive=False) as r_plain:
        plain = timed(r_plain.respond, qs)
    archived_before = _count(store)
    results = {}
    for w in [int(x) for x in a.workers.split(",")]:
        results[w] = serve_and_load(env, w, a.clients, qs, a.duration, d)
    b2 = timed(base.respond, qs)
    baseline = (b1 + b2) / 2
    time.sleep(0.5)
    archived = _count(store) - archived_before
    sent = sum(r[3] for r in results.values())
    print(f"unit key: {'SoftHSM2 token' if a.token else 'encrypted file (software P-256)'}; {a.n} tokens each; "
          f"{os.cpu_count()} CPUs; clients {a.clients}")
    print(f"baseline (asn1crypto + cryptography, DER pieces)   {b1:8.0f} tokens/s first, {b2:.0f} last")
    print(f"unica in-process, archive on                       {inproc:8.0f} tokens/s  {inproc / baseline:.2f} x baseline")
    print(f"unica in-process, archive off                      {plain:8.0f} tokens/s  {plain / baseline:.2f} x baseline "
          f"(archive cost {100 * (1 - inproc / plain):.0f}%)")
    for w, (rate, p50, p99, _) in results.items():
        print(f"unica tsa serve, {w} worker{'s' if w > 1 else ' '}, HTTP, {a.clients} clients      {rate:8.0f} tokens/s  "
              f"{rate / baseline:.2f} x baseline  p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    print(f"archive: {archived} records for ~{sent} tokens issued over HTTP (wrk's count is rounded; "
          f"every token answered is recorded)")


def _count(store) -> int:
    from sqlalchemy import func, select

    from unica.store import models as m

    with store.read() as s:
        return s.execute(select(func.count()).select_from(m.TSAToken)).scalar()


if __name__ == "__main__":
    main()
