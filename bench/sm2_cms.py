"""SM2 CMS verifications per second (warm) as a ratio to the raw SM2 verify they contain, same run.

    python bench/sm2_cms.py [--seconds 6] [--record]

The PKI is made with the unica CLI in a temporary UNICA_HOME: an SM2 root and issuing CA on
encrypted file keys (each with a CRL URL), an enterprise certificate for an SM2 key from an
``openssl req -sm3 -sigopt distid:1234567812345678`` CSR, and both CAs' CRLs. 64 distinct
detached SM2/SM3 CMS signatures (CAdES-B-B, PKCS#7 OIDs, ~1 KiB documents, signed by
:class:`unica.sign.cms.CMSSigner`) are cycled.

unica: ``Verifier.verify_cms(signature, data)`` with one Verifier held across calls (trust anchor
the SM2 root, the two CRLs, offline hard-fail revocation): parse, SM3 message digest, SM3
ESSCertIDv2, the SM2 signature, and the path (from the Verifier's warm caches).
Baseline ("raw"): ``SM2PublicKey.verify(signature, signed_attributes_DER)`` for the same 64
signatures -- the public key loaded once, the DER signed attributes and signature values extracted
beforehand -- i.e. only the SM2-with-SM3 verification (Z value, SM3, the EC verify) the CMS check
cannot avoid. Both alternate in short rounds; the medians are compared. Target: unica >= 0.3 x raw.

--record appends the output, with the date, load average and command, to
bench/results/sm2_cms.txt.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results" / "sm2_cms.txt"
PASSPHRASE = "bench-sm2-cms-passphrase"
SUBJ = "/C=CN/O=测试科技有限公司/organizationIdentifier=91350100M000100Y43/CN=张三"


def rate(fn, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(20):
            fn()
        n += 20
        t = time.perf_counter()
        if t >= end:
            return n / (t - t0)


def build_pki(d: Path) -> None:
    env = dict(os.environ, UNICA_HOME=str(d / "home"), UNICA_PASSPHRASE=PASSPHRASE)
    env.pop("UNICA_DB", None)
    env.pop("UNICA_OPERATOR", None)

    def run(*args):
        p = subprocess.run([sys.executable, "-m", "unica", *args], env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"unica {' '.join(args)}: {p.stderr}")
        return p.stdout

    run("init")
    for name in ("root", "sub", "leaf"):
        run("key", "generate", f"file:{d}/{name}.p8", "--key-type", "sm2")
    run("ca", "create-root", "gmroot", "--subject", "C=CN,O=Bench,CN=SM2 Root", "--key", f"file:{d}/root.p8")
    run("ca", "set", "gmroot", "--crl-url", "http://127.0.0.1:9/gmroot.crl")
    run("ca", "create-sub", "gmsub", "--parent", "gmroot", "--subject", "C=CN,O=Bench,CN=SM2 Issuing",
        "--key", f"file:{d}/sub.p8")
    run("ca", "set", "gmsub", "--crl-url", "http://127.0.0.1:9/gmsub.crl")
    text = (Path(__file__).resolve().parents[1] / "unica/policies/builtin/enterprise-sign.toml").read_text()
    (d / "gm-sign.toml").write_text("\n".join('allowed = ["sm2"]' if ln.startswith('allowed = ["ec-p256"') else ln
                                              for ln in text.splitlines()) + "\n")
    run("profile", "add", str(d / "gm-sign.toml"))
    subprocess.run(["openssl", "req", "-new", "-key", str(d / "leaf.p8"), "-passin", f"pass:{PASSPHRASE}", "-sm3",
                    "-sigopt", "distid:1234567812345678", "-utf8", "-subj", SUBJ, "-out", str(d / "leaf.csr")],
                   check=True, capture_output=True)
    run("issue", "--ca", "gmsub", "--profile", "gm-sign", "--csr", str(d / "leaf.csr"), "--out", str(d / "leaf.pem"))
    for ca in ("gmroot", "gmsub"):
        (d / f"{ca}.pem").write_text(run("ca", "export", ca))
        run("crl", "generate", "--ca", ca, "--out", str(d / f"{ca}.crl"))


def identity(d: Path):
    from cryptography import x509

    from unica.hsm import load_key
    from unica.sign.signer import SigningIdentity

    key = load_key(f"file:{d}/leaf.p8", passphrase=PASSPHRASE)
    cert = x509.load_pem_x509_certificate((d / "leaf.pem").read_bytes())
    chain = (x509.load_pem_x509_certificate((d / "gmsub.pem").read_bytes()),)
    try:
        return SigningIdentity(key=key, cert=cert, chain=chain)
    except Exception:  # noqa: BLE001 -- signer.py before it reads SM2 certificates: CMSSigner reads only these fields
        from dataclasses import make_dataclass

        plain = make_dataclass("Ident", ["key", "cert", "chain", ("pss", bool, False),
                                         ("digest_algorithm", str, "sm3")], frozen=True)
        return plain(key, cert, chain)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    from unica.sign.cms import CMSSigner
    from unica.sm2 import SM2PublicKey
    from unica.verify import OFFLINE_HARD_FAIL, Verifier
    from unica.verify import _der

    with tempfile.TemporaryDirectory(prefix="sm2cms-") as tmp:
        d = Path(tmp)
        build_pki(d)
        signer = CMSSigner(identity(d))
        docs = [b"declaration %04d " % i * 60 for i in range(64)]  # ~1 KiB each
        stream = [(signer.sign(doc), doc) for doc in docs]
        v = Verifier([(d / "gmroot.pem").read_bytes()], revocation=OFFLINE_HARD_FAIL,
                     crls=[(d / "gmroot.crl").read_bytes(), (d / "gmsub.crl").read_bytes()])
        from asn1crypto import pem, x509 as ax509

        leaf = ax509.Certificate.load(pem.unarmor((d / "leaf.pem").read_bytes())[2])
    first = v.verify_cms(*stream[0])
    assert first.passed, (first.indication, first.sub_indication, first.messages)
    assert first.certificate.revocation, "revocation must have been checked"
    assert first.checks.signature == "ok (sm2-with-sm3)", first.checks
    assert not v.verify_cms(stream[0][0], stream[0][1] + b"x").passed

    pub = SM2PublicKey.from_spki_der(leaf["tbs_certificate"]["subject_public_key_info"].dump())
    raw_items = []
    for sig, _ in stream:
        si = _der.parse_signed_data_der(sig).signers[0]
        raw_items.append((si.signature, b"\x31" + si.signed_attrs[1:]))
    for s, m in raw_items:
        pub.verify(s, m)  # all verify

    pos = {"u": 0, "r": 0}

    def unica_one():
        s, doc = stream[pos["u"] % 64]
        pos["u"] += 1
        return v.verify_cms(s, doc)

    def raw_one():
        s, m = raw_items[pos["r"] % 64]
        pos["r"] += 1
        pub.verify(s, m)

    rounds = 6
    per = args.seconds / rounds / 2
    u, r = [], []
    for _ in range(rounds):
        u.append(rate(unica_one, per))
        r.append(rate(raw_one, per))
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    ur, rr = med(u), med(r)
    out = [
        f"{len(stream)} distinct detached SM2/SM3 CMS (CAdES-B-B, ~1 KiB each) cycled; root -> issuing -> leaf, "
        f"2 CRLs, offline hard-fail; median of {rounds} interleaved rounds of {per:.2f} s each",
        f"unica Verifier.verify_cms (SM2, warm)   {ur:8.0f} verifications/s",
        f"raw SM2PublicKey.verify (signed attrs)  {rr:8.0f} verifications/s",
        f"unica / raw SM2 verify = {ur / rr:5.2f} x   (target >= 0.3)",
    ]
    print("\n".join(out))
    if args.record:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cmd = "python bench/sm2_cms.py" + "".join(f" {a}" for a in sys.argv[1:])
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(f"# {cmd}  --  {now}, load average {load} (at the end), {os.cpu_count()} CPUs\n")
            f.write("\n".join(out) + "\n\n")


if __name__ == "__main__":
    main()
