"""Shared helpers of the reliability tests: a small PKI in a store, worker bodies for the
child processes (importable, so multiprocessing 'spawn' and ``python -m`` can run them),
and the database consistency check run after every concurrency and crash test."""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

PASSPHRASE = "reliability-passphrase-5b1e"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
ROOT, SUB = "rel-root", "rel-sub"


# --- databases -----------------------------------------------------------------------


def new_pg_database(base_url: str, template: str | None = None) -> str:
    """A fresh database in the cluster of ``base_url`` (optionally a copy of ``template``)."""
    from sqlalchemy import create_engine, text

    name = "rel_" + uuid.uuid4().hex[:12]
    eng = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")))
            # commits need not wait for the disk: the tests kill clients, not the server
            c.execute(text(f"ALTER DATABASE {name} SET synchronous_commit = off"))
    finally:
        eng.dispose()
    return base_url.rsplit("/", 1)[0] + "/" + name


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


class PGCluster:
    """A throwaway PostgreSQL 15 cluster of our own (the recipe of tests/conftest.py's
    ``pg_url``), which a test may stop and start again."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="unica-relpg-"))
        self.data = self.base / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._as_pg = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        subprocess.run([*self._as_pg, str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True)
        self.start()
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c",
                        "CREATE DATABASE unica_rel"], check=True, capture_output=True)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/unica_rel"

    def start(self) -> None:
        subprocess.run([*self._as_pg, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                        str(self.base / "log"), "-o",
                        f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=100",
                        "start"], check=True, capture_output=True)
        for _ in range(100):
            if subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not come up")

    def stop(self, mode: str = "fast") -> None:
        subprocess.run([*self._as_pg, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
                       capture_output=True)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


# --- a small PKI ---------------------------------------------------------------------


@dataclass
class Pki:
    url: str
    home: Path
    root: str = ROOT
    sub: str = SUB
    key_uris: dict = field(default_factory=dict)


def make_pki(url: str, home: Path, *, certs: int = 0, revoked: int = 0, presign: bool = False) -> Pki:
    """A root and a sub CA (P-256 file keys under ``home``), a delegated OCSP signer for the sub
    in pre-signed mode, ``certs`` certificates issued (``revoked`` of them revoked), and, with
    ``presign``, every response pre-signed."""
    saved = os.environ.get("UNICA_HOME")
    os.environ["UNICA_HOME"] = str(home)  # where the new key files go
    try:
        return _make_pki(url, home, certs, revoked, presign)
    finally:
        if saved is None:
            os.environ.pop("UNICA_HOME", None)
        else:
            os.environ["UNICA_HOME"] = saved


def _make_pki(url: str, home: Path, certs: int, revoked: int, presign: bool) -> Pki:
    from unica.ca.authority import CASettings, KeySpec, create_root, create_sub
    from unica.ca.ocspsigner import issue_ocsp_signer
    from unica.ca.revocation import revoke
    from unica.store import models as m
    from unica.store import open_store

    store = open_store(url, create=True)
    create_root(store, ROOT, "C=CN,O=Reliability,CN=Reliability Root",
                KeySpec(key_type="ec-p256", passphrase=PASSPHRASE))
    create_sub(store, SUB, ROOT, "C=CN,O=Reliability,CN=Reliability Issuing CA",
               KeySpec(key_type="ec-p256", passphrase=PASSPHRASE), parent_key=load_ca_key(store, ROOT),
               settings=CASettings(crl_url="http://crl.rel.example/sub.crl", ocsp_url="http://ocsp.rel.example/"))
    sub_key = load_ca_key(store, SUB)
    issue_ocsp_signer(store, SUB, ca_key=sub_key, passphrase=PASSPHRASE)
    with store.write() as s:
        from unica.ca.records import get_ca_row

        row = s.get(m.CA, get_ca_row(s, SUB).id, with_for_update=True)
        row.ocsp_mode = "presigned"
    if certs:
        from unica.ca.issuance import IssuingCA

        ca = IssuingCA(store, SUB, key=sub_key)
        issued = []
        for i in range(0, certs, 200):
            issued += ca.issue_many([leaf_request(f"seed{j}") for j in range(i, min(certs, i + 200))],
                                    "tls-server", requester="seed", lint=False)
        for it in issued[:revoked]:
            revoke(store, it.serial, ca=SUB, reason="superseded")
    if presign:
        run_presign(store)
    store.dispose()
    return Pki(url, home)


def load_ca_key(store, name: str):
    from unica.ca.records import get_ca_row
    from unica.hsm import load_key

    with store.read() as s:
        uri = get_ca_row(s, name).key_uri
    return load_key(uri, passphrase=PASSPHRASE)


def leaf_request(tag: str):
    """A CSRRequest for a TLS server certificate (a fresh P-256 key; no CSR parsing)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from unica.ca.names import parse_dn
    from unica.ca.request import CSRRequest

    host = f"{tag}.rel.example"
    k = ec.generate_private_key(ec.SECP256R1())
    return CSRRequest(k.public_key(), "ec-p256", parse_dn(f"CN={host}"), (x509.DNSName(host),), ())


def served(store):
    from unica.ocsp.service import served_cas

    return served_cas(store, [SUB], passphrase=PASSPHRASE)


def run_presign(store, **kw):
    from unica.ocsp.service import presign

    return presign(store, served(store), **kw)


class HookedKey(ec.EllipticCurvePrivateKey):
    """A P-256 key whose ``sign`` first calls ``hook()``: the same kind of wrapper unica's token
    keys are (a subclass of ``ec.EllipticCurvePrivateKey`` forwarding ``sign``)."""

    def __init__(self, key, hook):
        self._key, self._hook = key, hook

    def sign(self, data, signature_algorithm):
        self._hook()
        return self._key.sign(data, signature_algorithm)

    def public_key(self):
        return self._key.public_key()

    @property
    def curve(self):
        return self._key.curve

    @property
    def key_size(self):
        return self._key.key_size

    def exchange(self, algorithm, peer_public_key):
        raise NotImplementedError

    def private_numbers(self):
        raise NotImplementedError

    def private_bytes(self, encoding, format, encryption_algorithm):
        raise NotImplementedError

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


# --- the consistency check -----------------------------------------------------------


@dataclass
class Consistency:
    certificates: int = 0
    valid: int = 0
    revoked: int = 0
    failed: int = 0
    crls: int = 0
    responses: int = 0
    audit_entries: int = 0


def check_consistency(store, *, crl_dirs=(), verify_sigs: bool = True) -> Consistency:
    """Assert the invariants of a store after concurrency or a crash (and recovery)."""
    from cryptography import x509
    from cryptography.x509 import ocsp
    from sqlalchemy import func, select

    from unica.store import models as m
    from unica.store.audit import verify_audit

    out = Consistency()
    with store.read() as s:
        cas = {ca.id: ca for ca in s.scalars(select(m.CA)).all()}
        rows = s.execute(select(m.Certificate.id, m.Certificate.ca_id, m.Certificate.serial, m.Certificate.status,
                                m.Certificate.der, m.Certificate.tbs_der, m.Certificate.fingerprint_sha256,
                                m.Certificate.revoked_at, m.Certificate.revocation_reason)).all()
        dup = s.execute(select(m.Certificate.ca_id, m.Certificate.serial, func.count())
                        .group_by(m.Certificate.ca_id, m.Certificate.serial).having(func.count() > 1)).all()
        assert not dup, f"duplicate serials: {dup[:5]}"
        responses = dict(s.execute(select(m.OCSPResponse.cert_id, m.OCSPResponse.der)).all())
        crls = s.execute(select(m.CRL.ca_id, m.CRL.number, m.CRL.shard, m.CRL.is_delta, m.CRL.path, m.CRL.sha256,
                                m.CRL.this_update).order_by(m.CRL.ca_id, m.CRL.number)).all()
        revoked_audit = [e.target for e in s.scalars(select(m.AuditEntry).where(
            m.AuditEntry.event.in_(("certificate.revoked", "certificate.held")))).all()]
    out.certificates = len(rows)
    for r in rows:
        where = f"certificate {r.serial} of CA {cas[r.ca_id].name}"
        assert r.status in ("valid", "revoked", "hold", "failed"), f"{where}: status {r.status} after recovery"
        if r.status == "failed":
            out.failed += 1
            assert r.der is None, f"{where}: failed but has a DER"
            continue
        # stored only where the row held exactly the signed TBS, which the certificate then replaced
        assert r.der and r.fingerprint_sha256 and r.tbs_der is None, f"{where}: {r.status} without DER, or TBS kept"
        if verify_sigs:
            cert = x509.load_der_x509_certificate(r.der)
            assert cert.serial_number == int(r.serial, 16), where
            cert.verify_directly_issued_by(_issuer_cert(cas[r.ca_id]))  # raises if the signature is bad
        revoked_like = r.status in ("revoked", "hold")
        assert revoked_like == (r.revoked_at is not None) == (r.revocation_reason is not None), \
            f"{where}: half-applied revocation ({r.status}, {r.revoked_at}, {r.revocation_reason})"
        if revoked_like:
            out.revoked += 1
        else:
            out.valid += 1
        resp_der = responses.get(r.id)
        if resp_der is not None:
            out.responses += 1
            single = ocsp.load_der_ocsp_response(resp_der)
            assert single.serial_number == int(r.serial, 16), where
            want = ocsp.OCSPCertStatus.REVOKED if revoked_like else ocsp.OCSPCertStatus.GOOD
            assert single.certificate_status == want, \
                f"{where}: pre-signed OCSP says {single.certificate_status.name} but the status is {r.status}"
    # every revocation has its audit entry (same transaction) and vice versa
    revoked_serials = sorted(r.serial for r in rows if r.status in ("revoked", "hold"))
    assert len(revoked_audit) == len(set(revoked_audit)), "a certificate revoked twice in the audit log"
    assert sorted(revoked_audit) == revoked_serials, "revocations and their audit entries disagree"
    # CRL numbers: unique and increasing per CA, files (where recorded) intact
    last: dict = {}
    for c in crls:
        assert c.number > last.get(c.ca_id, 0), f"CRL number {c.number} of CA {cas[c.ca_id].name} not increasing"
        last[c.ca_id] = c.number
        out.crls += 1
    assert all(c.number <= cas[c.ca_id].crl_number for c in crls), "a CRL number above the CA's counter"
    for d in crl_dirs:
        stray = [p.name for p in Path(d).glob("*.tmp*")]
        assert not stray, f"stray temporary CRL files: {stray}"
    report = verify_audit(store)
    assert report.ok, [p.message for p in report.problems][:5]
    out.audit_entries = report.entries
    return out


_ISSUERS: dict = {}


def _issuer_cert(ca_row):
    from cryptography import x509

    key = ca_row.cert_der
    if key not in _ISSUERS:
        _ISSUERS[key] = x509.load_der_x509_certificate(ca_row.cert_der)
    return _ISSUERS[key]


def parse_crl(path) -> tuple[int, set[int]]:
    from cryptography import x509

    crl = x509.load_der_x509_crl(Path(path).read_bytes())
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return number, {e.serial_number for e in crl}


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def jitter(a: float, b: float) -> None:
    time.sleep(random.uniform(a, b))
