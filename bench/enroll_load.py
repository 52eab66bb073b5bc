"""EST enrollment under load, end to end, as a ratio to issuing in the same process.

One home (SQLite) with CA ``root`` whose key is on a SoftHSM2 token, office ``customs``
(enterprise-sign), and enough enterprises with an approved application each (made with the
library, before any timing). Three things are timed:

- **baseline**: ``IssuingCA.issue`` in this process, one request after another, profile
  enterprise-sign, pkilint on (as by default);
- **service, 1 worker** and **service, 2 workers**: the real ``unica serve`` over TLS on
  127.0.0.1 (both started, and warmed up, before any timing); ``--clients`` client threads each
  send EST simpleenroll requests (HTTP Basic with the application id and its one-time code, a
  base64 PKCS#10 made beforehand), each on a new TLS connection (as enterprises do: one
  enrollment each), lint on in the service.

The timed work is split into ``--rounds`` rounds; in each, the baseline and the two services
run their share one after the other (the order rotating from round to round), so that all three
see the same machine: on these shared 2-core machines the speed drifts by a third within
minutes, more than the effect measured. A chunk's time runs until its last enrollment is
answered, so the ramp-down of the clients at the end of each chunk counts against the service.

Figures: certificates per second of each, the service's as a ratio to the baseline (target
>= 0.6 x; the spread of the ratio over the rounds beside it), the CPU each spends per
certificate, and the latency of an enrollment as the client sees it (p50, p99). On SQLite the
baseline never waits (an in-process database); on PostgreSQL, the service's production database,
it waits for each statement's round trip, which the service's concurrent requests overlap.

    python bench/enroll_load.py [--n 192] [--rounds 4] [--clients 8] [--pg]

``--pg``: the same on PostgreSQL 15 (a throwaway cluster under /tmp, as the tests start), where
two workers do not share SQLite's single writer lock.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import os
import queue
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _softhsm  # noqa: E402  (before anything loads the PKCS#11 module)

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "bench-tls-passphrase"
OFFICE = "customs"


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@contextlib.contextmanager
def postgresql():
    """A throwaway PostgreSQL 15 cluster on a free port of 127.0.0.1: its database URL."""
    base = Path(tempfile.mkdtemp(prefix="unica-bench-pg-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(base / "data"), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True)
    subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(base / "data"), "-w", "-l", str(base / "log"),
                    "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"], check=True,
                   capture_output=True)
    try:
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "CREATE DATABASE bench"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/bench"
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def unica(env: dict, *args: str) -> str:
    p = subprocess.run([sys.executable, "-m", "unica", *args], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"unica {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def uscc(i: int) -> str:
    from unica.policies.uscc import check_char

    first = f"91350100M{i:08d}"
    return first + check_char(first)


def build(tmp: Path, db: str | None) -> dict:
    env = dict(os.environ, UNICA_HOME=str(tmp / "home"), UNICA_PASSPHRASE=PASSPHRASE)
    for k in ("UNICA_OPERATOR", "UNICA_DB"):
        env.pop(k, None)
    if db:
        env["UNICA_DB"] = db
    unica(env, "init")
    uri = f"pkcs11:token={_softhsm.TOKEN};object=ca-root"
    unica(env, "key", "generate", uri, "--key-type", "ec-p256")
    unica(env, "ca", "create-root", "root", "--subject", "C=CN,O=Bench Joint CA,CN=Bench Root", "--key", uri)
    unica(env, "office", "add", OFFICE, "--ca", "root", "--profile", "enterprise-sign")
    key, csr, pem = tmp / "server.key", tmp / "server.csr", tmp / "server.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256",
                    "-pass", f"pass:{PASSPHRASE}", "-out", str(key)], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-new", "-key", str(key), "-passin", f"pass:{PASSPHRASE}", "-out", str(csr),
                    "-subj", "/O=Bench Joint CA/CN=unica service", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    unica(env, "cert", "issue", "--ca", "root", "--profile", "tls-server", "--csr", str(csr), "--out", str(pem))
    (tmp / "root.pem").write_text(unica(env, "ca", "export", "root"))
    return env


def csrs(n: int) -> list[bytes]:
    """``n`` DER PKCS#10 requests for fresh P-256 keys (made before any timing)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"压测企业{i}有限公司"),
                          x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, uscc(900000 + i)),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"持有人{i}")])
        out.append(x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
                   .public_bytes(serialization.Encoding.DER))
    return out


def applications(store, n: int, start: int) -> list[tuple[str, str]]:
    from unica import ra

    out = []
    for i in range(start, start + n):
        ra.add_enterprise(store, uscc=uscc(i), name=f"压测企业{i}有限公司", office=OFFICE)
        app = ra.create_application(store, uscc=uscc(i), profile="enterprise-sign", holder=f"持有人{i}", ca="root")
        out.append((app["id"], app["code"]))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and of its live children (the workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def start(env: dict, tmp: Path, workers: int) -> tuple[subprocess.Popen, int]:
    log = tmp / f"serve-{workers}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "unica", "serve", "--host", "127.0.0.1", "--port", "0",
                                 "--workers", str(workers), "--tls-cert", str(tmp / "server.pem"), "--tls-key",
                                 str(tmp / "server.key"), "--rate", "0"], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"unica service on https://127\.0\.0\.1:(\d+)/", log.read_text(errors="replace"))
        if m:
            port = int(m.group(1))
            ctx = ssl.create_default_context(cafile=str(tmp / "root.pem"))
            while time.monotonic() < deadline:
                try:
                    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
                    c.request("GET", "/readyz")
                    if c.getresponse().status == 200:
                        return proc, port
                except OSError:
                    time.sleep(0.1)
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"unica serve did not start: {log.read_text(errors='replace')}")


def load(port: int, cafile: Path, work: list[tuple[str, str, bytes]], clients: int) -> tuple[float, list[float]]:
    """Enroll every (application, code, CSR) with ``clients`` threads; (certificates/s, latencies)."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    todo: queue.Queue = queue.Queue()
    for w in work:
        todo.put(w)
    latencies: list[float] = []
    failures: list[str] = []

    def client():
        while True:
            try:
                app_id, code, der = todo.get_nowait()
            except queue.Empty:
                return
            auth = base64.b64encode(f"{app_id}:{code}".encode()).decode()
            t0 = time.perf_counter()
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=120)
            try:
                c.request("POST", "/.well-known/est/simpleenroll", body=base64.encodebytes(der),
                          headers={"Authorization": f"Basic {auth}", "Content-Type": "application/pkcs10"})
                r = c.getresponse()
                body = r.read()
            finally:
                c.close()
            latencies.append(time.perf_counter() - t0)
            if r.status != 200:
                failures.append(f"{r.status} {body[:200]!r}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if failures:
        raise SystemExit(f"{len(failures)} enrollments failed, e.g. {failures[0]}")
    return len(work) / wall, latencies


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=192, help="timed enrollments per service (and baseline issuances)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds the timed work is split into (see above)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--pg", action="store_true", help="on a throwaway PostgreSQL 15 cluster instead of SQLite")
    args = ap.parse_args()
    _softhsm.setup()
    with postgresql() if args.pg else contextlib.nullcontext() as db:
        return run(args, db)


def run(args, db: str | None) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="unica-enroll-bench-"))
    env = build(tmp, db)
    os.environ.update({k: env[k] for k in ("UNICA_HOME", "UNICA_PASSPHRASE", "UNICA_DB") if k in env})
    from unica.store import open_store

    store = open_store()
    chunk, rounds = args.n // args.rounds, args.rounds
    warm = min(3 * args.clients, chunk)
    modes = (1, 2)  # worker processes of the two services
    napps = len(modes) * (warm + chunk * rounds)
    requests = csrs(1 + chunk * rounds + napps)
    base_requests, svc_requests = requests[: 1 + chunk * rounds], requests[1 + chunk * rounds:]
    apps = applications(store, napps, 0)
    work = {w: [(a, c, svc_requests[i]) for i, (a, c) in enumerate(apps) if i % len(modes) == k]
            for k, w in enumerate(modes)}
    from unica.ca.issuance import IssuingCA

    ca = IssuingCA(store, "root")
    ca.issue(base_requests[0], "enterprise-sign")  # the key loaded, pkilint imported: not timed
    servers = {}
    try:
        for w in modes:
            servers[w] = start(env, tmp, w)
            # warm-up (not timed): every worker loads the CA key and pkilint on its first enrollments
            load(servers[w][1], tmp / "root.pem", work[w][:warm], args.clients)
        # rounds: in each, the baseline and each service in turn (the order rotating), so that all
        # see the same machine -- on a shared 2-core machine the speed drifts by a third in minutes
        took = {m: 0.0 for m in ("base", *modes)}
        cpu = {m: 0.0 for m in took}
        client_cpu = {w: 0.0 for w in modes}
        lat: dict = {w: [] for w in modes}
        per_round: dict = {w: [] for w in modes}
        for r in range(rounds):
            order = ["base", *modes]
            order = order[r % len(order):] + order[: r % len(order)]
            t_round = {}
            for mode in order:
                if mode == "base":
                    t0, c0 = time.perf_counter(), time.process_time()
                    for req in base_requests[1 + r * chunk: 1 + (r + 1) * chunk]:
                        ca.issue(req, "enterprise-sign")
                    t_round[mode] = time.perf_counter() - t0
                    cpu[mode] += time.process_time() - c0
                else:
                    proc, port = servers[mode]
                    mine = work[mode][warm + r * chunk: warm + (r + 1) * chunk]
                    s0, c0 = cpu_seconds(proc.pid), time.process_time()
                    rate, latencies = load(port, tmp / "root.pem", mine, args.clients)
                    t_round[mode] = len(mine) / rate
                    cpu[mode] += cpu_seconds(proc.pid) - s0
                    client_cpu[mode] += time.process_time() - c0
                    lat[mode] += latencies
                took[mode] += t_round[mode]
            for w in modes:
                per_round[w].append(t_round["base"] / t_round[w])
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    n = chunk * rounds
    base = n / took["base"]
    print(f"EST simpleenroll end to end (TLS, new connection per enrollment, lint on), {args.clients} clients; "
          f"{rounds} rounds of {chunk} certificates each for the baseline and each service, in turn (after {warm} "
          f"untimed enrollments per service); {'PostgreSQL 15' if db else 'SQLite'}, CA key on SoftHSM2; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"  baseline IssuingCA.issue in-process: {base:6.1f} /s; CPU {cpu['base'] / n * 1000:.1f} ms per certificate")
    for w in modes:
        rate = n / took[w]
        rs = sorted(per_round[w])
        print(f"  service, {w} worker{'s' if w > 1 else ' '}: {rate:6.1f} /s = {rate / base:4.2f} x baseline"
              f" (rounds {rs[0]:.2f}-{rs[-1]:.2f})   latency p50 {statistics.median(lat[w]) * 1000:6.0f} ms"
              f"  p99 {pct(lat[w], 99) * 1000:6.0f} ms"
              + "   [target >= 0.6 x: " + ("met" if rate / base >= 0.6 else "NOT met") + "]")
        print(f"      CPU per enrollment: service {cpu[w] / n * 1000:.1f} ms, the clients (this process) "
              f"{client_cpu[w] / n * 1000:.1f} ms")
    print(f"  a second worker: {took[1] / took[2]:4.2f} x the throughput of one (2 cores)")
    store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
