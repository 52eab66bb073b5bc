"""CMS SignedData with SM2/SM3 (GM/T 0010): signed by unica, verified by unica, checked by peers.

The PKI is built on the CLI as an operator would (an SM2 root and issuing CA on encrypted file keys,
an enterprise certificate from an ``openssl req -sm3 -sigopt distid:1234567812345678`` CSR whose
key unica generated). The signatures are checked

* by ``gmssl`` (pure-Python SM2/SM3, test-only, no OpenSSL): the signature over the DER signed
  attributes with the GM/T 0009 default signer ID, the SM3 message digest, the SM3 ESSCertIDv2;
* by unica.verify (library and ``unica verify cms``), in both OID sets, attached and detached,
  and against tampering (content, signature, a signed attribute, the digest algorithm, the signer
  ID);
* by ``openssl cms`` 3.0, whose behaviour is measured and pinned here: it cannot sign CMS with an
  SM2 key, it verifies the SignerInfo signature with an EMPTY signer ID (a default-ID signature
  fails, the same attributes signed with the empty ID pass with -noverify) and its chain check
  fails for the same reason, and it does not read the GM/T 0010 content types at all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_unica

PASSPHRASE = "gm-cms-test-passphrase"
DISTID = "distid:1234567812345678"
SUBJ = "/C=CN/O=测试科技有限公司/organizationIdentifier=91350100M000100Y43/CN=张三"
CONTENT = "申报单 2026-11-30\n".encode() * 40

OID = {  # dotted OIDs the tests look for, written out (not taken from the code under test)
    "pkcs7-signed": "1.2.840.113549.1.7.2", "pkcs7-data": "1.2.840.113549.1.7.1",
    "gm-signed": "1.2.156.10197.6.1.4.2.2", "gm-data": "1.2.156.10197.6.1.4.2.1",
    "sm3": "1.2.156.10197.1.401", "sm2-with-sm3": "1.2.156.10197.1.501",
}
SETS = {"pkcs7": ("pkcs7-signed", "pkcs7-data"), "gmt0010": ("gm-signed", "gm-data")}


@dataclasses.dataclass
class PKI:
    dir: Path
    env: dict

    def run(self, *args, **kw):
        return run_unica(*args, env=self.env, **kw)

    def ok(self, *args, **kw) -> str:
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    def path(self, name: str) -> Path:
        return self.dir / name


def openssl(*args, check: bool = True, env=None) -> subprocess.CompletedProcess:
    p = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    d = tmp_path_factory.mktemp("gmcms")
    env = {"UNICA_HOME": str(d / "home"), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None, "UNICA_OPERATOR": None}
    g = PKI(d, env)
    g.ok("init")
    for name in ("root", "sub", "leaf", "other"):
        g.ok("key", "generate", f"file:{d}/{name}.p8", "--key-type", "sm2")
    g.ok("ca", "create-root", "gmroot", "--subject", "C=CN,O=GM CMS Test,CN=SM2 Root", "--key", f"file:{d}/root.p8")
    g.ok("ca", "set", "gmroot", "--crl-url", "http://127.0.0.1:9/gmroot.crl")
    g.ok("ca", "create-sub", "gmsub", "--parent", "gmroot", "--subject", "C=CN,O=GM CMS Test,CN=SM2 Issuing",
         "--key", f"file:{d}/sub.p8")
    profile = Path(__file__).parents[2] / "unica/policies/builtin/enterprise-sign.toml"
    text = profile.read_text()
    lines = [('allowed = ["sm2"]' if ln.startswith('allowed = ["ec-p256"') else ln) for ln in text.splitlines()]
    assert lines != text.splitlines(), "enterprise-sign.toml's keys.allowed line moved"
    g.path("gm-sign.toml").write_text("\n".join(lines) + "\n")
    g.ok("profile", "add", str(g.path("gm-sign.toml")))
    for ca in ("gmroot", "gmsub"):
        g.path(f"{ca}.pem").write_text(g.ok("ca", "export", ca))
    for name in ("leaf", "other"):  # 'other': a second SM2 signer under the same CA
        openssl("req", "-new", "-key", g.path(f"{name}.p8"), "-passin", f"pass:{PASSPHRASE}", "-sm3",
                "-sigopt", DISTID, "-utf8", "-subj", SUBJ, "-out", g.path(f"{name}.csr"))
        g.ok("issue", "--ca", "gmsub", "--profile", "gm-sign", "--csr", str(g.path(f"{name}.csr")),
             "--out", str(g.path(f"{name}.pem")))
    g.path("doc.txt").write_bytes(CONTENT)
    return g


# --- helpers ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _PlainIdentity:
    """What CMSSigner reads of a SigningIdentity, for when SigningIdentity itself cannot take an
    SM2 certificate yet (unica/sign/signer.py before the lead's public_key_of change)."""

    key: object
    cert: object
    chain: tuple = ()
    pss: bool = False
    digest_algorithm: str = "sm3"


def _cert(path: Path):
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())


def cert_der(pki: PKI, name: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return _cert(pki.path(f"{name}.pem")).public_bytes(Encoding.DER)


def identity(pki: PKI, name: str = "leaf"):
    from cryptography.exceptions import UnsupportedAlgorithm

    from unica.hsm import load_key
    from unica.sign.signer import SigningIdentity

    key = load_key(f"file:{pki.path(name + '.p8')}", passphrase=PASSPHRASE)
    cert, chain = _cert(pki.path(f"{name}.pem")), (_cert(pki.path("gmsub.pem")),)
    try:
        return SigningIdentity(key=key, cert=cert, chain=chain)
    except UnsupportedAlgorithm:
        return _PlainIdentity(key, cert, chain)


def sign(pki: PKI, oids: str = "pkcs7", *, detached: bool = True, name: str = "leaf", **kw) -> bytes:
    from unica.sign.cms import CMSSigner

    return CMSSigner(identity(pki, name), cms_oids=oids).sign(CONTENT, detached=detached, **kw)


def verify(pki: PKI, der: bytes, data: bytes | None = CONTENT):
    from unica.verify import verify_cms
    from unica.verify.revocation import OFF

    return verify_cms(der, data, trust=pki.path("gmroot.pem").read_bytes(),
                      intermediates=[pki.path("gmsub.pem").read_bytes()], revocation=OFF)


def _tlvs(buf: bytes) -> list[tuple[int, bytes, bytes]]:
    """(tag, contents, whole TLV) of each DER element in ``buf`` (a test-local reader: the SignedData
    is taken apart without unica's own DER code)."""
    out, pos = [], 0
    while pos < len(buf):
        tag, n = buf[pos], buf[pos + 1]
        hdr = 2
        if n & 0x80:
            k = n & 0x7F
            n, hdr = int.from_bytes(buf[pos + 2:pos + 2 + k], "big"), 2 + k
        out.append((tag, buf[pos + hdr:pos + hdr + n], buf[pos:pos + hdr + n]))
        pos += hdr + n
    assert pos == len(buf)
    return out


def _oid(tlv: bytes) -> str:
    from asn1crypto import core

    return core.ObjectIdentifier.load(tlv).dotted


def parts(der: bytes) -> dict:
    """The SignedData taken apart (RFC 5652 5.1/5.3 field order)."""
    from asn1crypto import core

    [(_, ci, _)] = _tlvs(der)
    ct, content = _tlvs(ci)
    [(_, sd, _)] = _tlvs(content[1])
    f = _tlvs(sd)
    encap = _tlvs(f[2][1])
    si = _tlvs(_tlvs(f[-1][1])[0][1])
    assert si[3][0] == 0xA0  # signed attributes present
    attrs = {}
    for _, a, _ in _tlvs(si[3][1]):
        a_oid, values = _tlvs(a)
        [(_, _, value)] = _tlvs(values[1])
        attrs[_oid(a_oid[2])] = value
    return {
        "content_type": _oid(ct[2]),
        "digest_algorithms": [x[2] for x in _tlvs(f[1][1])],
        "econtent_type": _oid(encap[0][2]),
        "econtent": core.OctetString.load(_tlvs(encap[1][1])[0][2]).native if len(encap) > 1 else None,
        "si_digest_alg": si[2][2],
        "signed_attrs_der": b"\x31" + si[3][2][1:],  # the DER the signature covers (SET OF, RFC 5652 5.4)
        "attrs": attrs,
        "sig_alg": si[4][2],
        "signature": si[5][1],
    }


def spki_of(pem: Path) -> bytes:
    from asn1crypto import pem as apem, x509

    return x509.Certificate.load(apem.unarmor(pem.read_bytes())[2])["tbs_certificate"]["subject_public_key_info"].dump()


def gmssl_verify(spki_der: bytes, signature: bytes, data: bytes, signer_id: bytes | None = None) -> bool:
    """gmssl (pure Python) checks an SM2-with-SM3 signature: its own verify_with_sm3 (built-in
    default ID), or for another ID the Z formula of tests/sm2/peers.py over gmssl's SM3."""
    from asn1crypto import keys

    from tests.sm2 import peers

    xy = keys.PublicKeyInfo.load(spki_der)["public_key"].native[1:]
    if signer_id is None:
        return peers.gm_verify_default_id(xy, signature, data)
    return peers.gm_verify(xy, signature, data, signer_id)


def gm_sm3(data: bytes) -> bytes:
    from tests.sm2 import peers

    return peers.gm_sm3_hash(data)


# --- structure, checked by asn1crypto and gmssl ------------------------------------------------


@pytest.mark.parametrize("oids", ["pkcs7", "gmt0010"])
def test_sm2_signed_data_structure_and_gmssl(pki, oids):
    der = sign(pki, oids, detached=False)
    p = parts(der)
    signed_oid, data_oid = (OID[k] for k in SETS[oids])
    assert p["content_type"] == signed_oid
    assert p["econtent_type"] == data_oid and p["econtent"] == CONTENT
    sm3_alg = bytes.fromhex("300a06082a811ccf55018311")  # SEQUENCE { sm3 }, parameters absent
    assert p["digest_algorithms"] == [sm3_alg] and p["si_digest_alg"] == sm3_alg
    assert p["sig_alg"] == bytes.fromhex("300a06082a811ccf55018375")  # SEQUENCE { SM2-with-SM3 }, no parameters
    attrs = p["attrs"]
    assert set(attrs) == {"1.2.840.113549.1.9.3", "1.2.840.113549.1.9.4", "1.2.840.113549.1.9.5",
                          "1.2.840.113549.1.9.16.2.47"}
    from asn1crypto import core, tsp

    assert core.ObjectIdentifier.load(attrs["1.2.840.113549.1.9.3"]).dotted == data_oid
    md = core.OctetString.load(attrs["1.2.840.113549.1.9.4"]).native
    assert md == gm_sm3(CONTENT) == hashlib.new("sm3", CONTENT).digest()
    ess = tsp.SigningCertificateV2.load(attrs["1.2.840.113549.1.9.16.2.47"])["certs"][0]
    assert ess["hash_algorithm"]["algorithm"].dotted == OID["sm3"]
    assert ess["cert_hash"].native == gm_sm3(cert_der(pki, "leaf"))
    # the independent SM2: the signature is over the DER signed attributes, GM/T 0009 default ID
    spki = spki_of(pki.path("leaf.pem"))
    assert gmssl_verify(spki, p["signature"], p["signed_attrs_der"])
    assert gmssl_verify(spki, p["signature"], p["signed_attrs_der"], b"1234567812345678")
    assert not gmssl_verify(spki, p["signature"], p["signed_attrs_der"], b"")  # the ID is bound
    assert not gmssl_verify(spki_of(pki.path("other.pem")), p["signature"], p["signed_attrs_der"])


def test_sm2_signer_refuses_other_digests_pss_and_timestamps(pki):
    from unica.errors import InputError
    from unica.sign.cms import CMSSigner

    ident = identity(pki)
    with pytest.raises(InputError, match="SM3 only"):
        CMSSigner(ident, "sha256")
    with pytest.raises(InputError, match="unknown CMS OID set"):
        CMSSigner(ident, cms_oids="pkcs9")
    with pytest.raises(InputError, match="B-B only"):
        CMSSigner(ident).sign(CONTENT, tsa_url="http://127.0.0.1:9/")
    if isinstance(ident, _PlainIdentity):
        ident = dataclasses.replace(ident, pss=True)
    else:
        ident = type(ident)(key=ident.key, cert=ident.cert, chain=ident.chain, pss=True)
    with pytest.raises(InputError, match="PSS"):
        CMSSigner(ident)


def test_ecdsa_signer_unchanged_and_refuses_gm_oids(tmp_path):
    """A non-SM2 signer: the GM/T 0010 OIDs and SM3 are refused; the default output is as before
    (PKCS#7 OIDs, SHA-256, ecdsa-with-SHA256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from unica.errors import InputError
    from unica.sign.cms import CMSSigner
    from unica.sign.signer import SigningIdentity

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecdsa")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    ident = SigningIdentity(key=key, cert=cert)
    with pytest.raises(InputError, match="SM2 signers only"):
        CMSSigner(ident, cms_oids="gmt0010")
    with pytest.raises(InputError, match="unsupported digest algorithm 'sm3'"):
        CMSSigner(ident, "sm3")
    p = parts(CMSSigner(ident).sign(b"x", detached=False))
    assert (p["content_type"], p["econtent_type"]) == (OID["pkcs7-signed"], OID["pkcs7-data"])
    assert p["sig_alg"] == bytes.fromhex("300a06082a8648ce3d040302")
    from asn1crypto import tsp

    ess = tsp.SigningCertificateV2.load(p["attrs"]["1.2.840.113549.1.9.16.2.47"])["certs"][0]
    assert ess["hash_algorithm"]["algorithm"].native == "sha256"
    # an ECDSA SignedData relabelled with the GM/T 0010 signedData OID is refused by the verifier
    from unica.verify import verify_cms
    from unica.verify.report import SubIndication as S

    der = CMSSigner(ident).sign(b"x", detached=False)
    [(_, ci, _)] = _tlvs(der)
    content = _tlvs(ci)[1][2]
    body = bytes.fromhex("060a2a811ccf550601040202") + content
    relabelled = b"\x30\x82" + len(body).to_bytes(2, "big") + body
    rep = verify_cms(relabelled, None, trust=[cert])
    assert rep.sub_indication is S.FORMAT_FAILURE and "GM/T 0010" in " ".join(rep.messages)


# --- unica.verify --------------------------------------------------------------------------------


@pytest.mark.parametrize("oids", ["pkcs7", "gmt0010"])
@pytest.mark.parametrize("detached", [True, False])
def test_verify_sm2_cms(pki, oids, detached):
    der = sign(pki, oids, detached=detached)
    rep = verify(pki, der, CONTENT if detached else None)
    assert rep.passed, (rep.indication, rep.sub_indication, rep.messages)
    assert rep.format == "CAdES-B-B"
    c = rep.checks
    assert (c.message_digest, c.signature, c.signing_certificate) == ("ok (sm3)", "ok (sm2-with-sm3)", "ok (v2)")
    assert c.content_type == ("ok (GM/T 0010 data)" if oids == "gmt0010" else "ok")
    assert rep.signer.subject and "张三" in rep.signer.subject
    # PEM input too
    import base64

    pem = b"-----BEGIN CMS-----\n" + base64.encodebytes(der) + b"-----END CMS-----\n"
    assert verify(pki, pem, CONTENT if detached else None).passed


@pytest.mark.parametrize("oids", ["pkcs7", "gmt0010"])
def test_verify_sm2_cms_tampered(pki, oids):
    from unica.verify.report import SubIndication as S

    der = sign(pki, oids, detached=False)
    p = parts(der)
    # content altered (attached)
    bad = der.replace(CONTENT[:30], b"X" + CONTENT[1:30], 1)
    assert verify(pki, bad, None).sub_indication is S.HASH_FAILURE
    # detached with other data
    det = sign(pki, oids)
    assert verify(pki, det, CONTENT + b"!").sub_indication is S.HASH_FAILURE
    # signature value altered (one byte of s, inside the DER SEQUENCE{r, s})
    sig = bytearray(p["signature"])
    sig[-3] ^= 0x01
    rep = verify(pki, der.replace(p["signature"], bytes(sig)), None)
    assert rep.sub_indication is S.SIG_CRYPTO_FAILURE and rep.checks.signature == "invalid"
    # a signed attribute altered: the signing time's seconds digit
    st_attr = p["attrs"]["1.2.840.113549.1.9.5"]
    assert der.count(st_attr) == 1
    digit = st_attr[-2]
    st_bad = st_attr[:-2] + bytes([ord("0") + (digit - ord("0") + 1) % 10]) + st_attr[-1:]
    rep = verify(pki, der.replace(st_attr, st_bad), None)
    assert rep.sub_indication is S.SIG_CRYPTO_FAILURE
    # the same attributes signed with another signer ID (here openssl's default, the empty ID)
    from unica.hsm import load_key

    key = load_key(f"file:{pki.path('leaf.p8')}", passphrase=PASSPHRASE)
    rep = verify(pki, with_signature(der, key.sign(p["signed_attrs_der"], signer_id=b"")), None)
    assert rep.sub_indication is S.SIG_CRYPTO_FAILURE
    # signed by another SM2 key (a valid signature, the wrong signer)
    other = load_key(f"file:{pki.path('other.p8')}", passphrase=PASSPHRASE)
    rep = verify(pki, with_signature(der, other.sign(p["signed_attrs_der"])), None)
    assert rep.sub_indication is S.SIG_CRYPTO_FAILURE
    # SM2 with a digest algorithm other than SM3 (SHA-256 OID put where sm3 was, twice)
    sm3_alg = bytes.fromhex("300a06082a811ccf55018311")
    sha256_alg = bytes.fromhex("300b0609608648016503040201")
    assert len(sha256_alg) == len(sm3_alg) + 1
    if oids == "pkcs7":
        from asn1crypto import algos, cms

        ci = cms.ContentInfo.load(der)
        ci["content"]["digest_algorithms"] = [algos.DigestAlgorithm({"algorithm": "sha256"})]
        ci["content"]["signer_infos"][0]["digest_algorithm"] = algos.DigestAlgorithm({"algorithm": "sha256"})
        rep = verify(pki, ci.dump(force=True), None)
        assert rep.sub_indication is S.CRYPTO_CONSTRAINTS_FAILURE
        assert "SM2 signs with SM3 only" in " ".join(rep.messages)


def _tlv(tag: int, contents: bytes) -> bytes:
    n = len(contents)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | (n.bit_length() + 7) // 8]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + contents


def with_signature(der: bytes, signature: bytes) -> bytes:
    """``der`` with its (first) SignerInfo's signature value replaced by ``signature`` and every
    enclosing length re-encoded -- SM2 signatures vary in DER length (r and s carry a leading zero
    byte or not), so a byte-level swap of equal length is not always possible."""
    [(t_ci, ci, _)] = _tlvs(der)
    ct, content = _tlvs(ci)
    [(t_sd, sd, _)] = _tlvs(content[1])
    f = _tlvs(sd)
    sis = _tlvs(f[-1][1])
    si = _tlvs(sis[0][1])
    assert si[5][0] == 0x04  # signature OCTET STRING (RFC 5652 5.3, after the signed attributes)
    si[5] = (0x04, signature, _tlv(0x04, signature))
    new_si = _tlv(sis[0][0], b"".join(x[2] for x in si))
    new_set = _tlv(f[-1][0], new_si + b"".join(x[2] for x in sis[1:]))
    new_sd = _tlv(t_sd, b"".join(x[2] for x in f[:-1]) + new_set)
    out = _tlv(t_ci, ct[2] + _tlv(content[0], new_sd))
    assert parts(out)["signature"] == signature
    return out


def test_verify_accepts_a_gmssl_signature(pki):
    """The other direction: gmssl (not OpenSSL) signs unica's signed attributes with the default ID;
    unica.verify accepts it, and rejects it when gmssl signs with another ID."""
    from asn1crypto import keys

    from tests.sm2 import peers
    from unica.hsm import load_key

    der = sign(pki, "gmt0010", detached=False)
    p = parts(der)
    d = peers.scalar_of(load_key(f"file:{pki.path('leaf.p8')}", passphrase=PASSPHRASE).private_bytes_pkcs8())
    xy = keys.PublicKeyInfo.load(spki_of(pki.path("leaf.pem")))["public_key"].native[1:]
    good = peers.gm_sign_default_id(d, xy, p["signed_attrs_der"])
    assert verify(pki, with_signature(der, good), None).passed
    other = peers.gm_sign(d, xy, p["signed_attrs_der"], b"alice@example.cn")
    assert not verify(pki, with_signature(der, other), None).passed


def test_verify_sm2_cms_without_the_signer_certificate(pki):
    """The signer's certificate replaced by another SM2 certificate of the same subject and issuer:
    the SignerInfo's issuer-and-serial finds no certificate, NO_SIGNING_CERTIFICATE_FOUND."""
    from asn1crypto import cms, x509

    from unica.verify.report import SubIndication as S

    ci = cms.ContentInfo.load(sign(pki, detached=False))
    ci["content"]["certificates"] = [cms.CertificateChoices(name="certificate", value=x509.Certificate.load(d))
                                     for d in (cert_der(pki, "other"), cert_der_pem(pki.path("gmsub.pem")))]
    rep = verify(pki, ci.dump(force=True), None)
    assert rep.sub_indication is S.NO_SIGNING_CERTIFICATE_FOUND
    assert rep.checks.signer_certificate == "not found"


def cert_der_pem(path: Path) -> bytes:
    from asn1crypto import pem

    return pem.unarmor(path.read_bytes())[2]


# --- openssl cms: measured behaviour ----------------------------------------------------------


def test_openssl_cms_behaviour_with_sm2(pki, tmp_path):
    """OpenSSL 3.0's CMS and SM2, as measured (docs): (1) ``openssl cms -sign`` cannot sign with an
    SM2 key; (2) with the PKCS#7 OIDs it reads unica's SignedData, names sm3 / SM2-with-SM3, and
    rejects the SignerInfo signature because it verifies with an EMPTY signer ID -- the same signed
    attributes signed with the empty ID pass ``-noverify``; without -noverify the chain fails first
    (certificate signatures, same cause); (3) the GM/T 0010 content types are not read at all."""
    from unica.hsm import load_key

    doc = pki.path("doc.txt")
    ver = openssl("version").stdout
    out = tmp_path / "ossl.p7s"
    p = openssl("cms", "-sign", "-binary", "-in", doc, "-signer", pki.path("leaf.pem"), "-inkey", pki.path("leaf.p8"),
                "-passin", f"pass:{PASSPHRASE}", "-md", "sm3", "-outform", "DER", "-out", out, check=False)
    assert p.returncode != 0 and "illegal zero content" in p.stderr, ver + p.stderr

    for oids in ("pkcs7", "gmt0010"):
        sig = tmp_path / f"{oids}.p7s"
        der = sign(pki, oids)
        sig.write_bytes(der)
        full = openssl("cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", doc,
                       "-CAfile", pki.path("gmroot.pem"), "-certfile", pki.path("gmsub.pem"), "-purpose", "any",
                       "-out", "/dev/null", check=False)
        nov = openssl("cms", "-verify", "-noverify", "-binary", "-inform", "DER", "-in", sig, "-content", doc,
                      "-out", "/dev/null", check=False)
        if oids == "gmt0010":
            for r in (full, nov):
                assert r.returncode == 4 and "content type not signed data" in r.stderr, r.stderr
            continue
        assert full.returncode == 4 and "certificate signature failure" in full.stderr, full.stderr
        assert nov.returncode == 4 and "CMS_SignerInfo_verify:verification failure" in nov.stderr, nov.stderr
        printed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", sig).stdout
        assert "sm3 (1.2.156.10197.1.401)" in printed and "SM2-with-SM3 (1.2.156.10197.1.501)" in printed
        # the same signed attributes signed with the EMPTY ID: openssl accepts the signature
        pp = parts(der)
        key = load_key(f"file:{pki.path('leaf.p8')}", passphrase=PASSPHRASE)
        sig2 = tmp_path / "empty-id.p7s"
        sig2.write_bytes(with_signature(der, key.sign(pp["signed_attrs_der"], signer_id=b"")))
        ok = openssl("cms", "-verify", "-noverify", "-binary", "-inform", "DER", "-in", sig2, "-content", doc,
                     "-out", "/dev/null", check=False)
        assert ok.returncode == 0 and "Verification successful" in ok.stderr, ok.stderr
        assert not verify(pki, sig2.read_bytes()).passed  # and unica, per GM/T 0009, does not


# --- the CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize("oids", ["pkcs7", "gmt0010"])
def test_cli_sign_and_verify_sm2_cms(pki, oids):
    doc = pki.path("doc.txt")
    out = pki.path(f"doc-{oids}.p7s")
    p = pki.run("sign", "cms", str(doc), "--key", f"file:{pki.path('leaf.p8')}", "--cert", str(pki.path("leaf.pem")),
                "--chain", str(pki.path("gmsub.pem")), "--cms-oids", oids, "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert parts(out.read_bytes())["content_type"] == OID[SETS[oids][0]]
    args = ("verify", "cms", str(out), "--data", str(doc), "--trust", str(pki.path("gmroot.pem")),
            "--revocation", "off")
    p = pki.run(*args)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "sm2-with-sm3" in p.stdout and "sm3" in p.stdout
    rep = json.loads(pki.ok(*args, "--json"))
    text = json.dumps(rep, ensure_ascii=False)
    assert "ok (sm2-with-sm3)" in text and "ok (sm3)" in text
    # tampered data: the CLI says so and fails
    bad = pki.path("doc-bad.txt")
    bad.write_bytes(CONTENT + b"x")
    p = pki.run("verify", "cms", str(out), "--data", str(bad), "--trust", str(pki.path("gmroot.pem")),
                "--revocation", "off")
    assert p.returncode != 0 and "HASH_FAILURE" in p.stdout + p.stderr


def test_cli_refuses_sm2_timestamps(pki, tmp_path):
    doc = pki.path("doc.txt")
    p = pki.run("sign", "cms", str(doc), "--key", f"file:{pki.path('leaf.p8')}", "--cert", str(pki.path("leaf.pem")),
                "--tsa", "http://127.0.0.1:9/", "--out", str(tmp_path / "x.p7s"))
    assert p.returncode != 0 and "B-B only" in p.stderr, p.stderr
    assert not (tmp_path / "x.p7s").exists()


def test_cli_refuses_unknown_oid_sets(pki, tmp_path):
    doc = pki.path("doc.txt")
    p = pki.run("sign", "cms", str(doc), "--key", f"file:{pki.path('leaf.p8')}", "--cert", str(pki.path("leaf.pem")),
                "--cms-oids", "cms", "--out", str(tmp_path / "y.p7s"))
    assert p.returncode == 2 and "Invalid value for '--cms-oids'" in p.stderr, p.stderr
