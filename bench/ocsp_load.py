"""OCSP responder load: requests/s and p50/p99 latency on 127.0.0.1.

    python bench/ocsp_load.py [--duration 4] [--no-netns]

Servers (each in its own process, on uvloop):
  ceiling     20-line raw-ASGI app returning pre-signed bytes from a dict (bench/ocsp_ceiling.py),
              under uvicorn + httptools (the issue's "Python ceiling")
  ceiling on unica's server
              the same dict lookup served by unica's HTTP server (unica.ocsp.httpserver)
  pylive      raw-ASGI app signing each response with cryptography's OCSPResponseBuilder, under
              uvicorn (bench/ocsp_pylive.py: the "Python live-signing" baseline)
  presigned   unica, pre-signed mode (responses looked up), on unica's HTTP server
  live        unica, live mode (signed per request, EC P-256 delegated signer), 1, 2 and 4 workers
  openssl     `openssl ocsp -index ... -port ...` (-multi 2), run in this loopback-only network
              namespace (`unshare -n`), because -port listens on all interfaces
Clients: wrk (keep-alive, Lua script POSTing 256 different requests in turn; "wrk-GET": the same
as RFC 5019 GETs, answered with caching headers) and ab (HTTP/1.0,
no keep-alive: the only client `openssl ocsp` can serve, it stalls on idle keep-alive).
The client shares the 2 cores with the server, as in the issue's measurements; wrk runs one
thread (--wrk-threads), so client and server each have a core rather than three threads
contending for two.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
N_CERTS = 2000
N_REQS = 256
CONNS = (1, 8, 32)


# --- the PKI ------------------------------------------------------------------------

def build_pki(d: Path) -> None:
    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("Bench OCSP CA")).issuer_name(name("Bench OCSP CA"))
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(True, None), True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
          .sign(ca_key, hashes.SHA256()))
    s_key = ec.generate_private_key(ec.SECP256R1())
    signer = (x509.CertificateBuilder().subject_name(name("Bench OCSP signer")).issuer_name(ca.subject)
              .public_key(s_key.public_key()).serial_number(2)
              .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=90))
              .add_extension(x509.BasicConstraints(False, None), True)
              .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False)
              .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.5"), b"\x05\x00"),
                             False)
              .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    nokey = (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "ca.key").write_bytes(ca_key.private_bytes(*nokey))
    (d / "signer.pem").write_bytes(signer.public_bytes(pem))
    (d / "signer.key").write_bytes(s_key.private_bytes(*nokey))
    serials = [0x1000_0000_0000_0000 + 7919 * i for i in range(N_CERTS)]
    (d / "serials.txt").write_text("\n".join(str(s) for s in serials))
    exp = (NOW + dt.timedelta(days=90)).strftime("%y%m%d%H%M%SZ")
    rev = (NOW - dt.timedelta(days=1)).strftime("%y%m%d%H%M%SZ")
    lines = []
    for i, s in enumerate(serials):
        if i % 10 == 0:
            lines.append(f"R\t{exp}\t{rev},keyCompromise\t{s:X}\tunknown\t/CN=leaf {i}")
        else:
            lines.append(f"V\t{exp}\t\t{s:X}\tunknown\t/CN=leaf {i}")
    (d / "index.txt").write_text("\n".join(lines) + "\n")
    (d / "index.txt.attr").write_text("unique_subject = no\n")


def load(d: Path):
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    signer = x509.load_pem_x509_certificate((d / "signer.pem").read_bytes())
    key = serialization.load_pem_private_key((d / "signer.key").read_bytes(), None)
    serials = [int(x) for x in (d / "serials.txt").read_text().split()]
    return ca, signer, key, serials


def requests_der(ca, serials) -> list[bytes]:
    from unica.der import seq
    from unica.ocsp.response import cert_id_for
    return [seq(seq(seq(seq(cert_id_for(ca, s))))) for s in serials[:N_REQS]]


# --- servers ------------------------------------------------------------------------

def serve(kind: str, port: int, workers: int, d: Path) -> None:
    workers_nocache = kind == "presigned-noparsecache"
    kind = "presigned" if workers_nocache else kind
    from unica.ocsp import (InMemoryPresignedStore, InMemoryStatusSource, Presigner, Responder, ResponseSigner,
                            ServedCA)
    from unica.ocsp.http import OCSPApp
    from unica.ocsp.server import serve as run

    ca, signer_cert, key, serials = load(d)
    if kind in ("ceiling", "ceiling-unica"):
        from ocsp_ceiling import HandlerCeiling, make_app
        signer = ResponseSigner(ca, signer_cert, key)
        from unica.ocsp.response import GOOD
        responses = {r: signer.sign(seq_cid(r), GOOD, NOW, NOW + dt.timedelta(days=4)).der
                     for r in requests_der(ca, serials)}
        app = make_app(responses) if kind == "ceiling" else HandlerCeiling(responses)
    elif kind == "pylive":
        from ocsp_pylive import make_app
        app = make_app(ca, signer_cert, key, set(serials))
    else:
        source = InMemoryStatusSource()
        for i, s in enumerate(serials):
            if i % 10 == 0:
                source.revoke("bench", s, NOW - dt.timedelta(days=1), x509.ReasonFlags.key_compromise)
            else:
                source.issue("bench", s)
        signer = ResponseSigner(ca, signer_cert, key)
        if kind == "presigned":
            store = InMemoryPresignedStore()
            served = ServedCA("bench", ca, "presigned", signer)
            Presigner([served], source, store).presign_all()
            # the serving side holds no key: only the store
            app = OCSPApp(Responder([ServedCA("bench", ca, "presigned")], None, store,
                                    parse_cache=0 if workers_nocache else 32768))
        else:
            app = OCSPApp(Responder([ServedCA("bench", ca, "live", signer)], source))
    run(app, "127.0.0.1", port, workers)


def seq_cid(req: bytes) -> bytes:
    from unica.ocsp.request import parse_request
    return parse_request(req).cert_id.der


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, argv: list[str], port: int, body: bytes):
        self.port = port
        # its own process group (not a new session: `openssl ocsp -multi` exits at once in one)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=os.setpgrp)
        deadline = time.monotonic() + 60
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body,
                                             headers={"Content-Type": "application/ocsp-request"})
                with urllib.request.urlopen(req, timeout=2) as r:
                    r.read()
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server {argv} did not start: {self.proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# --- clients ------------------------------------------------------------------------

def lua_script(reqs: list[bytes], path: Path) -> None:
    def lit(b: bytes) -> str:
        return '"' + "".join(f"\\{c}" for c in b) + '"'
    bodies = ",\n".join(lit(r) for r in reqs)
    path.write_text(f"""
local bodies = {{{bodies}}}
local n = #bodies
local i = 0
local headers = {{["Content-Type"] = "application/ocsp-request"}}
request = function()
  i = i % n + 1
  return wrk.format("POST", "/", headers, bodies[i])
end
""")


def lua_get_script(reqs: list[bytes], path: Path) -> None:
    import base64
    from urllib.parse import quote
    paths = ",\n".join('"/' + quote(base64.b64encode(r).decode(), safe="") + '"' for r in reqs)
    path.write_text(f"""
local paths = {{{paths}}}
local n = #paths
local i = 0
request = function()
  i = i % n + 1
  return wrk.format("GET", paths[i])
end
""")


def _ms(v: str, unit: str) -> float:
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


WRK_THREADS = 1


def run_wrk(port: int, conns: int, duration: float, script: Path) -> dict:
    p = subprocess.run(["wrk", f"-t{min(conns, WRK_THREADS)}", f"-c{conns}", f"-d{duration}s", "--latency", "-s", str(script),
                        f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=duration + 60)
    out = p.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"    (wrk failed: {err})")
        return {"rps": float("nan"), "p50": float("nan"), "p99": float("nan"), "errors": -1}
    rps = float(m.group(1))
    lat = dict((m.group(1), _ms(m.group(2), m.group(3)))
               for m in re.finditer(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\b", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"), "errors": int(errors.group(1)) if errors else 0}


def run_ab(port: int, conns: int, duration: float, body: Path) -> dict:
    p = subprocess.run(["ab", "-q", "-r", "-s", "10", "-t", str(duration), "-n", "10000000", "-c", str(conns), "-p", str(body),
                        "-T", "application/ocsp-request", f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True, timeout=duration + 60)
    out = p.stdout
    m = re.search(r"Requests per second:\s+([\d.]+)", out)
    if not m:  # e.g. openssl ocsp stalling under 32 connections: report, do not abort the bench
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"    (ab failed: {err})")
        return {"rps": float("nan"), "p50": float("nan"), "p99": float("nan"), "errors": -1}
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\d+)", out, re.M))
    # "Length" failures are not errors: ECDSA signatures vary in length by an octet or two
    failed = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)", out)
    return {"rps": float(m.group(1)), "p50": float(lat.get("50", "nan")), "p99": float(lat.get("99", "nan")),
            "errors": sum(int(x) for x in failed.groups()) if failed else 0}


# --- main ---------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=4, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=1, help="runs per configuration (the best is kept)")
    ap.add_argument("--no-netns", action="store_true", help="do not enter a network namespace (skips openssl)")
    ap.add_argument("--wrk-threads", type=int, default=1,
                    help="wrk threads (default 1: one core for the client, one for the server)")
    ap.add_argument("--only", default=None, help="run only the servers whose label contains this text")
    ap.add_argument("--serve", nargs=4, metavar=("KIND", "PORT", "WORKERS", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        kind, port, workers, d = args.serve
        serve(kind, int(port), int(workers), Path(d))
        return
    if not args.no_netns and not os.environ.get("UNICA_BENCH_NETNS"):
        if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
            os.environ["UNICA_BENCH_NETNS"] = "1"
            cmd = (f"ip link set lo up && exec {sys.executable} {Path(__file__).resolve()} --duration {args.duration}"
                   f" --rounds {args.rounds} --wrk-threads {args.wrk_threads}"
                   + (f" --only '{args.only}'" if args.only else ""))
            os.execvp("unshare", ["unshare", "-n", "sh", "-c", cmd])
        print("note: cannot create a network namespace (unshare -n); the openssl ocsp baseline is skipped")
        args.no_netns = True
    with_openssl = not args.no_netns
    global WRK_THREADS
    WRK_THREADS = args.wrk_threads
    d = Path(tempfile.mkdtemp(prefix="unica-ocsp-bench-"))
    build_pki(d)
    ca, _, _, serials = load(d)
    reqs = requests_der(ca, serials)
    script = d / "post.lua"
    lua_script(reqs, script)
    get_script = d / "get.lua"
    lua_get_script(reqs, get_script)
    body = d / "req.der"
    body.write_bytes(reqs[1])  # a good certificate (index 0 is revoked)
    dur = args.duration
    print(f"OCSP load, 127.0.0.1, {os.cpu_count()} cores shared by client and server, {dur:g} s per run, "
          f"best of {args.rounds}, "
          f"EC P-256 signer, {N_CERTS} certificates, load average {os.getloadavg()[0]:.1f} at start")
    results: dict[tuple[str, str, int], dict] = {}
    me = [sys.executable, str(Path(__file__).resolve()), "--serve"]
    plan = [  # (label, server argv, clients)
        ("ceiling (dict, 20 ln)", me + ["ceiling", "PORT", "1", str(d)], ["wrk"]),
        ("ceiling on unica's server", me + ["ceiling-unica", "PORT", "1", str(d)], ["wrk", "ab"]),
        ("unica pre-signed", me + ["presigned", "PORT", "1", str(d)], ["wrk", "wrk-GET", "ab"]),
        ("unica pre-signed, no parse cache", me + ["presigned-noparsecache", "PORT", "1", str(d)], ["wrk"]),
        ("python live baseline", me + ["pylive", "PORT", "1", str(d)], ["wrk"]),
        ("unica live 1 worker", me + ["live", "PORT", "1", str(d)], ["wrk"]),
        ("unica live 2 workers", me + ["live", "PORT", "2", str(d)], ["wrk", "ab"]),
        ("unica live 4 workers", me + ["live", "PORT", "4", str(d)], ["wrk", "ab"]),
    ]
    if with_openssl:
        plan.append(("openssl ocsp -multi 2",
                     ["openssl", "ocsp", "-index", str(d / "index.txt"), "-CA", str(d / "ca.pem"),
                      "-rsigner", str(d / "signer.pem"), "-rkey", str(d / "signer.key"),
                      "-port", "PORT", "-nmin", "5", "-multi", "2"], ["ab"]))
    if args.only:
        plan = [p for p in plan if args.only in p[0]]
    # all servers run at once (idle ones cost nothing) and the runs are interleaved per
    # connection count, so the ratios compare measurements taken seconds apart: on a shared
    # machine the background load drifts over minutes. With --rounds N the best of N is kept.
    # Except openssl: after ab has run against it, its -multi children spin at 100% CPU each,
    # forever (seen with OpenSSL 3.0) -- left running, it would take both cores from every
    # later measurement. It is started fresh for each run and stopped right after.
    fresh = {label for label, _, _ in plan if label.startswith("openssl")}
    servers = {}

    def start(label, argv):
        port = free_port()
        servers[label] = Server([a.replace("PORT", str(port)) for a in argv], port, reqs[1])

    try:
        for label, argv, _ in plan:
            if label not in fresh:
                start(label, argv)
        for c in CONNS:
            for rnd in range(args.rounds):
                for label, argv, clients in plan:
                    if label in fresh:
                        start(label, argv)
                    port = servers[label].port
                    for client in clients:
                        if client == "ab":
                            r = run_ab(port, c, dur, body)
                        else:
                            r = run_wrk(port, c, dur, get_script if client == "wrk-GET" else script)
                        best = results.get((label, client, c))
                        if best is None or not r["rps"] <= best["rps"]:
                            results[(label, client, c)] = r
                    if label in fresh:
                        servers.pop(label).stop()
            for label, _, clients in plan:
                for client in clients:
                    r = results[(label, client, c)]
                    err = f"  ({r['errors']} errors)" if r["errors"] > 0 else " (failed)" if r["errors"] < 0 else ""
                    print(f"  {label:<32} {client:<7} {c:>3} conns  {r['rps']:>9,.0f} req/s  "
                          f"p50 {r['p50']:>7.2f} ms  p99 {r['p99']:>7.2f} ms{err}", flush=True)
    finally:
        for srv in servers.values():
            srv.stop()

    def rps(label, client, c):
        r = results.get((label, client, c))
        return r["rps"] if r else float("nan")

    print("\nratios (targets from issue 4 in brackets)")
    for c in CONNS:
        pre, ceil = rps("unica pre-signed", "wrk", c), rps("ceiling (dict, 20 ln)", "wrk", c)
        live, pyl = rps("unica live 1 worker", "wrk", c), rps("python live baseline", "wrk", c)
        ceil_u = rps("ceiling on unica's server", "wrk", c)
        line = (f"  {c:>2} conns: pre-signed/ceiling {pre / ceil:.2f} [>=0.7]   pre-signed/ceiling on unica's server "
                f"{pre / ceil_u:.2f}   live/python-live {live / pyl:.2f} [>=0.7]")
        if with_openssl:
            ossl = rps("openssl ocsp -multi 2", "ab", c)
            line += (f"   pre-signed(wrk)/openssl(ab) {pre / ossl:.2f} [>=1.5]"
                     f"   pre-signed(ab)/openssl(ab) {rps('unica pre-signed', 'ab', c) / ossl:.2f}"
                     f"   live 2w(ab)/openssl(ab) {rps('unica live 2 workers', 'ab', c) / ossl:.2f} [>=1]"
                     f"   live 2w(wrk)/openssl(ab) {rps('unica live 2 workers', 'wrk', c) / ossl:.2f}"
                     f"   live 4w(ab)/openssl(ab) {rps('unica live 4 workers', 'ab', c) / ossl:.2f} [>=1]"
                     f"   live 4w(wrk)/openssl(ab) {rps('unica live 4 workers', 'wrk', c) / ossl:.2f}")
        print(line)
    p99 = results[("unica pre-signed", "wrk", 32)]["p99"]
    print(f"  pre-signed p99 at 32 conns: {p99:.2f} ms [<=5]")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
