"""SM2 certificates issued per second through unica, lint off, as a ratio to a raw SM2 build+sign.

The unica side is :class:`unica.ca.issuance.IssuingCA` over a root CA whose SM2 key lives in an
encrypted key file (``create_root`` with ``KeySpec(key_type="sm2")``, passphrase from
``UNICA_PASSPHRASE``), in a temporary ``UNICA_HOME`` with a SQLite store, set up as
``bench/issue_rate.py`` does. Requests are SM2 PKCS#10 CSR bytes (one SM2 subject key, a distinct
name per request, SM2-with-SM3 self-signature under the GM/T 0009 default signer ID, assembled
here with asn1crypto); the profile is the built-in ``tls-server`` with ``sm2`` added to its
allowed keys (no built-in end-entity profile admits SM2 keys yet). Two modes, both ``lint=False``:
``issue_many`` in batches (the bulk mode: two transactions per batch, every 32nd signature verified)
and ``issue`` one request at a time (two transactions and a signature check per certificate). Each
counts everything from CSR bytes in to the certificate stored.

The baseline (``raw``) builds, for every certificate, a ``TBSCertificate`` from asn1crypto objects
-- version, random serial, SM2-with-SM3 AlgorithmIdentifier (no parameters), the CA's issuer name,
397-day validity, a CN subject, the subject's SPKI, and the SAME extensions, in the same order and
criticality, that unica writes for this profile and CA: basicConstraints (critical), keyUsage
digitalSignature (critical), extKeyUsage serverAuth, subjectKeyIdentifier (SHA-1 of the subject
key, computed each time), authorityKeyIdentifier, subjectAltName (the DNS name), CRL distribution
point, AIA OCSP -- DER-encodes it, signs it with the SAME CA key (:meth:`unica.sm2.SM2PrivateKey.sign`,
default signer ID) and encodes the Certificate. No CSR parsing, no policy, no database: that is
what unica adds. The issuer name and the subject SPKI object are prepared once, as the P-256
baseline of ``bench/issue_rate.py`` prepares its issuer name and public key once.

For scale, in the same run: SM2PrivateKey.sign alone over one such TBS (the floor under both
SM2 sides: it shows how much of the baseline is asn1crypto), and the same two unica modes with an
ECDSA P-256 CA (also an encrypted file key, P-256 CSRs, same profile), beside cryptography's
``CertificateBuilder`` build+sign with the same extensions (the baseline of ``bench/issue_rate.py``).

Every unica measurement is bracketed by two baseline measurements of its own algorithm (raw,
case, raw, case, raw ...), and its ratio is taken to the mean of the two around it, so both see
the same load on a shared machine; ``--rounds`` rounds, medians reported. Rates are given per
wall-clock second and per second of this process's CPU time (what one core does when the
machine is shared); the process is pinned to one CPU. The cyclic GC is left as it is: unica's
``issue_many`` pauses it for an unlinted batch by design, the other paths run with it on.

After measuring, the certificates are checked: one from each unica SM2 mode and one raw one
verify with :meth:`unica.sm2.SM2PublicKey.verify` (the CA's key, default ID) over their TBS and
fail once the TBS is altered; all carry SM2-with-SM3; the raw certificate has the same extension
OIDs, criticality and (for the same name and key) the same extension bytes as unica's; and
``openssl verify -partial_chain -vfyopt distid:1234567812345678`` accepts the unica and the raw
certificate and refuses both with another signer ID (told no ID, openssl would use an empty one).

    python bench/sm2_issue.py [--n 1000] [--batch 500] [--rounds 3] [--record]

Target: unica SM2 lint off >= 0.5 x raw SM2 build+sign (judged on CPU-time rates, printed for
both modes: ``issue_many`` is the bulk path, ``issue`` pays two transactions per certificate).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

SM2_WITH_SM3 = "1.2.156.10197.1.501"
CRL_URL = "http://crl.example.cn/b.crl"
OCSP_URL = "http://ocsp.example.cn/"
RESULTS = Path(__file__).resolve().parent / "results" / "sm2_issue.txt"


def setup_env(tmp: Path) -> None:
    os.environ["UNICA_PASSPHRASE"] = "bench-passphrase"
    os.environ["UNICA_HOME"] = str(tmp / "home")
    os.environ.pop("UNICA_DB", None)


def bench_profile():
    """The built-in tls-server profile with ``sm2`` among its allowed keys (same for both CAs)."""
    import unica.policies as policies
    from unica.policies.loader import parse_profile

    data = tomllib.loads((Path(policies.__file__).parent / "builtin" / "tls-server.toml").read_text())
    data["keys"]["allowed"] = list(data["keys"]["allowed"]) + ["sm2"]
    return parse_profile(data, name="tls-server-sm2-bench", source="bench/sm2_issue.py")


def host(i: int) -> str:
    return f"host{i}.bench.example.cn"


def sm2_csrs(key, n: int) -> list[bytes]:
    """SM2 PKCS#10 requests (DER) with a CN and a SAN per name, signed SM2-with-SM3, default ID."""
    from asn1crypto import csr as acsr, keys, x509 as ax509

    spki = keys.PublicKeyInfo.load(key.public_key().spki_der())
    out = []
    for i in range(n):
        exts = ax509.Extensions([{"extn_id": "subject_alt_name", "critical": False,
                                  "extn_value": [ax509.GeneralName({"dns_name": host(i)})]}])
        info = acsr.CertificationRequestInfo({
            "version": "v1", "subject": ax509.Name.build({"common_name": host(i)}), "subject_pk_info": spki,
            "attributes": [acsr.CRIAttribute({"type": "extension_request", "values": [exts]})]})
        tbs = info.dump()
        out.append(acsr.CertificationRequest({
            "certification_request_info": info, "signature_algorithm": {"algorithm": SM2_WITH_SM3},
            "signature": key.sign(tbs)}).dump())
    return out


def p256_csrs(n: int) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    out = []
    for i in range(n):
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host(i))]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(host(i))]), False)
               .sign(key, hashes.SHA256()))
        out.append(csr.public_bytes(serialization.Encoding.DER))
    return out


class RawSM2:
    """The baseline: asn1crypto TBSCertificate built per certificate, signed with the CA's SM2 key."""

    def __init__(self, ca_key, ca_cert_der: bytes, subject_spki_der: bytes):
        from asn1crypto import keys, x509 as ax509

        ca = ax509.Certificate.load(ca_cert_der)
        self.key = ca_key
        self.issuer = ca["tbs_certificate"]["subject"]
        self.aki = ca.key_identifier  # the CA's SKI
        self.spki = keys.PublicKeyInfo.load(subject_spki_der)
        self.point = bytes(self.spki["public_key"])  # the BIT STRING's value: SKI method 1

    def build(self, i: int, now: dt.datetime) -> bytes:
        from asn1crypto import x509 as ax509

        name = host(i)
        tbs = ax509.TbsCertificate({
            "version": "v3",
            "serial_number": int.from_bytes(secrets.token_bytes(16), "big") >> 1,
            "signature": {"algorithm": SM2_WITH_SM3},
            "issuer": self.issuer,
            "validity": {"not_before": ax509.Time({"utc_time": now}),
                         "not_after": ax509.Time({"utc_time": now + dt.timedelta(days=397)})},
            "subject": ax509.Name.build({"common_name": name}),
            "subject_public_key_info": self.spki,
            "extensions": [
                {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": False}},
                {"extn_id": "key_usage", "critical": True, "extn_value": {"digital_signature"}},
                {"extn_id": "extended_key_usage", "critical": False, "extn_value": ["server_auth"]},
                {"extn_id": "key_identifier", "critical": False,
                 "extn_value": hashlib.sha1(self.point).digest()},
                {"extn_id": "authority_key_identifier", "critical": False,
                 "extn_value": {"key_identifier": self.aki}},
                {"extn_id": "subject_alt_name", "critical": False,
                 "extn_value": [ax509.GeneralName({"dns_name": name})]},
                {"extn_id": "crl_distribution_points", "critical": False,
                 "extn_value": [{"distribution_point": {"full_name": [
                     ax509.GeneralName({"uniform_resource_identifier": CRL_URL})]}}]},
                {"extn_id": "authority_information_access", "critical": False,
                 "extn_value": [{"access_method": "ocsp", "access_location": ax509.GeneralName(
                     {"uniform_resource_identifier": OCSP_URL})}]},
            ]})
        signature = self.key.sign(tbs.dump())
        return ax509.Certificate({"tbs_certificate": tbs, "signature_algorithm": {"algorithm": SM2_WITH_SM3},
                                  "signature_value": signature}).dump()


def raw_p256_builder(ca_key, ca_cert_der: bytes):
    """cryptography's CertificateBuilder with the same extensions (bench/issue_rate.py's baseline)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ee = ec.generate_private_key(ec.SECP256R1()).public_key()
    issuer = x509.load_der_x509_certificate(ca_cert_der).subject
    ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()).digest

    def build(i: int, now: dt.datetime) -> bytes:
        name = host(i)
        return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(issuer).public_key(ee).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=397))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(ee), False)
                .add_extension(x509.AuthorityKeyIdentifier(ski, None, None), False)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                    [x509.UniformResourceIdentifier(CRL_URL)], None, None, None)]), False)
                .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(OCSP_URL))]), False)
                .sign(ca_key, hashes.SHA256()))
    return build


def _clock():
    return time.perf_counter(), time.process_time()


def _rates(n: int, start) -> tuple[float, float]:
    """(wall rate, CPU-time rate)."""
    w, c = _clock()
    return n / (w - start[0]), n / max(c - start[1], 1e-9)


def raw_rate(build, n: int) -> tuple[float, float]:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    t = _clock()
    for i in range(n):
        build(i, now)
    return _rates(n, t)


def sign_rate(key, tbs: bytes, n: int) -> tuple[float, float]:
    """SM2PrivateKey.sign alone over one certificate's TBS: the floor under both SM2 sides."""
    t = _clock()
    for _ in range(n):
        key.sign(tbs)
    return _rates(n, t)


def issue_rate(ca, profile, csrs: list[bytes], batch: int) -> tuple[float, float]:
    t = _clock()
    if batch == 1:
        for csr in csrs:
            ca.issue(csr, profile, requester="bench", lint=False)
    else:
        for k in range(0, len(csrs), batch):
            for r in ca.issue_many(csrs[k:k + batch], profile, requester="bench", lint=False):
                assert not isinstance(r, Exception), r
    return _rates(len(csrs), t)


def _ext_list(cert_der: bytes) -> list[tuple[str, bool, bytes]]:
    from asn1crypto import x509 as ax509

    tbs = ax509.Certificate.load(cert_der)["tbs_certificate"]
    return [(e["extn_id"].dotted, bool(e["critical"].native), e["extn_value"].contents) for e in tbs["extensions"]]


def check_certificates(ca, profile, csrs, raw: RawSM2, tmp: Path) -> list[str]:
    """Verify what both sides produce; return one line per check (raise on failure)."""
    from asn1crypto import x509 as ax509

    from unica.errors import SM2SignatureInvalid
    from unica.hsm.keytypes import public_key_of
    from cryptography import x509

    ca_pub = ca.key.public_key()
    lines = []
    one = ca.issue(csrs[0], profile, requester="bench-check", lint=False).der
    many = ca.issue_many(csrs[1:3], profile, requester="bench-check", lint=False)[1].der
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    raw_der = raw.build(0, now)
    for label, der in (("unica issue()", one), ("unica issue_many()", many), ("raw asn1crypto", raw_der)):
        c = ax509.Certificate.load(der)
        tbs = c["tbs_certificate"].dump()
        assert c["signature_algorithm"]["algorithm"].dotted == SM2_WITH_SM3, label
        assert c["tbs_certificate"]["signature"]["algorithm"].dotted == SM2_WITH_SM3, label
        sig = c["signature_value"].native
        ca_pub.verify(sig, tbs)  # raises SM2SignatureInvalid on failure
        bad = bytearray(tbs)
        bad[-40] ^= 1
        try:
            ca_pub.verify(sig, bytes(bad))
        except SM2SignatureInvalid:
            pass
        else:
            raise AssertionError(f"{label}: a tampered TBS verified")
        assert c["tbs_certificate"]["issuer"].dump() == raw.issuer.dump(), label
        assert public_key_of(x509.load_der_x509_certificate(der)).spki_der() == raw.spki.dump(), label
        lines.append(f"{label}: SM2-with-SM3, SM2PublicKey.verify over the TBS OK (default ID), "
                     f"a one-bit change in the TBS refused")
    u, r = _ext_list(one), _ext_list(raw_der)
    assert [(o, c) for o, c, _ in u] == [(o, c) for o, c, _ in r], (u, r)
    assert u == r, "extension bytes differ"
    lines.append("raw certificate: the same extensions as unica's, same order and criticality, "
                 "byte-identical values (" + ", ".join(o + ("!" if c else "") for o, c, _ in u) + "; ! = critical)")
    # an independent verifier: openssl, told the signer ID (it uses an empty ID otherwise)
    if shutil.which("openssl"):
        from cryptography.hazmat.primitives.serialization import Encoding

        ca_pem, leaf = tmp / "ca.pem", tmp / "leaf.pem"
        ca_pem.write_bytes(x509.load_der_x509_certificate(_ca_der(ca.store, ca.name)).public_bytes(Encoding.PEM))
        results = {}
        for what, der in (("unica", one), ("raw", raw_der)):
            leaf.write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))
            for distid in ("1234567812345678", "1234567812345679"):
                p = subprocess.run(["openssl", "verify", "-partial_chain", "-vfyopt", f"distid:{distid}",
                                    "-CAfile", str(ca_pem), str(leaf)], capture_output=True, text=True)
                results[(what, distid)] = p.returncode
        assert results[("unica", "1234567812345678")] == 0 and results[("raw", "1234567812345678")] == 0, results
        assert results[("unica", "1234567812345679")] != 0 and results[("raw", "1234567812345679")] != 0, results
        lines.append("openssl verify -partial_chain -vfyopt distid:1234567812345678: unica and raw OK; "
                     "with distid:1234567812345679 both refused")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="certificates per measurement (default 1000)")
    ap.add_argument("--batch", type=int, default=500, help="issue_many batch size (default 500)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; medians reported (default 3)")
    ap.add_argument("--record", action="store_true", help=f"append the results to {RESULTS}")
    args = ap.parse_args()
    command = "python bench/sm2_issue.py " + " ".join(sys.argv[1:])
    load_start = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    cpus = os.cpu_count()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    tmp = Path(tempfile.mkdtemp(prefix="unica-bench-sm2-"))
    try:
        setup_env(tmp)
        from unica.ca.authority import CASettings, KeySpec, create_root
        from unica.ca.issuance import IssuingCA
        from unica.config import write_default_config
        from unica.sm2 import SM2PrivateKey
        from unica.store import open_store

        write_default_config(tmp / "home")
        store = open_store(None, create=True)
        settings = CASettings(crl_url=CRL_URL, ocsp_url=OCSP_URL)
        create_root(store, "sm2", "C=CN,O=Bench,CN=Bench SM2", KeySpec(key_type="sm2"), settings=settings)
        create_root(store, "p256", "C=CN,O=Bench,CN=Bench P-256", KeySpec(key_type="ec-p256"), settings=settings)
        profile = bench_profile()
        n = args.n
        ee = SM2PrivateKey.generate()  # one subject key, distinct names: we measure the CA, not keygen
        csrs = {"sm2": sm2_csrs(ee, n), "p256": p256_csrs(n)}
        cas, builds = {}, {}
        for name in ("sm2", "p256"):
            cas[name] = ca = IssuingCA(store, name)
            assert "file:" in ca.key_uri
            ca_der = _ca_der(store, name)
            ca.issue(csrs[name][0], profile, lint=False)  # warm-up: key file decrypted, DB connection
            builds[name] = (RawSM2(ca.key, ca_der, ee.public_key().spki_der()).build if name == "sm2"
                            else raw_p256_builder(ca.key, ca_der))
            raw_rate(builds[name], 50)  # warm-up of the baseline's imports
        assert type(cas["sm2"].key).__name__ == "SM2PrivateKey"
        from asn1crypto import x509 as ax509

        tbs = ax509.Certificate.load(builds["sm2"](0, dt.datetime.now(dt.timezone.utc)))["tbs_certificate"].dump()
        signs = []
        raws: dict[str, list] = {"sm2": [], "p256": []}
        cases: dict[tuple, list] = {}  # (alg, batch) -> [(wall, cpu, wall ratio, cpu ratio)]
        for rnd in range(args.rounds):
            signs.append(sign_rate(cas["sm2"].key, tbs, n))
            for alg in ("sm2", "p256"):
                modes = (args.batch, 1) if rnd % 2 == 0 else (1, args.batch)  # alternate which goes first
                before = raw_rate(builds[alg], n)
                raws[alg].append(before)
                for batch in modes:
                    got = issue_rate(cas[alg], profile, csrs[alg], batch)
                    after = raw_rate(builds[alg], n)
                    raws[alg].append(after)
                    rw, rc = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
                    cases.setdefault((alg, batch), []).append((got[0], got[1], got[0] / rw, got[1] / rc))
                    before = after
        checks = check_certificates(cas["sm2"], profile, csrs["sm2"], RawSM2(
            cas["sm2"].key, _ca_der(store, "sm2"), ee.public_key().spki_der()), tmp)
        load_end = os.getloadavg()
        med = statistics.median
        out = []
        out.append(f"# {command}  --  {started:%Y-%m-%d %H:%M} UTC, load average "
                   f"{' '.join(f'{x:.2f}' for x in load_start)} (start), "
                   f"{' '.join(f'{x:.2f}' for x in load_end)} (end), {cpus} CPUs, pinned to one")
        out.append(f"unica issuance, lint off, {n} certificates per measurement, CA keys in encrypted files, "
                   f"SQLite store, medians of {args.rounds} rounds; every case bracketed by two raw runs")
        out.append("  wall = per elapsed second, cpu = per second of this process's CPU time; ratio = case / "
                   "mean of the raw runs just before and after it (median over rounds)")
        labels = {"sm2": ("SM2 raw: asn1crypto TBS + SM2PrivateKey.sign (same CA key)",),
                  "p256": ("P-256 raw: cryptography CertificateBuilder build+sign",)}
        for alg in ("sm2", "p256"):
            r = raws[alg]
            if alg == "sm2":
                sw, sc = med(x[0] for x in signs), med(x[1] for x in signs)
                out.append(f"  {'SM2 floor: SM2PrivateKey.sign alone over a %d-byte TBS' % len(tbs):58s} "
                           f"wall {sw:7.1f}/s   cpu {sc:7.1f}/s   ({len(signs)} runs; for scale, no ratio target)")
            out.append(f"  {labels[alg][0]:58s} wall {med(x[0] for x in r):7.1f}/s   cpu {med(x[1] for x in r):7.1f}/s"
                       f"   ({len(r)} runs)")
            for batch in (args.batch, 1):
                v = cases[(alg, batch)]
                mode = f"issue_many({batch})" if batch != 1 else "issue()"
                rw, rc, qw, qc = (med(x[k] for x in v) for k in range(4))
                verdict = ""
                if alg == "sm2":
                    verdict = f"   [target >= 0.5 x: {'met' if qc >= 0.5 else 'NOT met'} (cpu)]"
                key = "SM2  " if alg == "sm2" else "P-256"
                floor = f" ({rc / sc:4.2f} x sign alone)" if alg == "sm2" else ""
                out.append(f"  unica {key} {mode:16s} lint off: wall {rw:7.1f}/s = {qw:5.3f} x raw | "
                           f"cpu {rc:7.1f}/s = {qc:5.3f} x raw{floor}{verdict}")
        out.append("  checks: " + "\n  checks: ".join(checks))
        text = "\n".join(out) + "\n"
        print(text, end="")
        if args.record:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            with RESULTS.open("a") as f:
                f.write(text + "\n")
        store.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _ca_der(store, name: str) -> bytes:
    from unica.ca.records import get_ca_row

    with store.read() as s:
        return get_ca_row(s, name).cert_der


if __name__ == "__main__":
    sys.exit(main())
