"""GM/T 0015 private extensions and the built-in profiles enterprise-sign-gm / enterprise-auth-gm.

The extension bytes are checked against DER written out by hand here (not produced by unica's
encoder), the OID encodings against ``openssl asn1parse -genstr``; the values are per
certificate (the TBS template fills them from each subject); the end-to-end run is the CLI as
an operator uses it, with an ``openssl req -sm3 -sigopt distid:1234567812345678`` request, read
back by ``openssl x509 -text``, its signature checked by ``gmssl`` (an independent SM2, default
signer ID), linted by pkilint -- and what pkilint does *not* look at (the 1.2.156.10260 arc) is
pinned and checked by unica's own GM/T 0015 check (docs/sm2-gmt0015.md, unica/ca/gmt0015.py).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from tests.conftest import assert_one_line_error, run_unica
from unica import der
from unica.ca import engine, gmt0015
from unica.ca.request import CSRRequest
from unica.errors import MalformedInput, PolicyViolation, ProfileError
from unica.hsm.keytypes import key_identifier, key_type_of
from unica.policies import get_profile, parse_profile
from unica.sm2 import SM2PrivateKey

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.timezone.utc)
USCC = "91350100M000100Y43"  # valid per GB 32100 (check character 3)
USCC_B = "91110000600037341L"  # another valid code (check character L)
HEX_USCC = "3931333530313030" "4d303030313030" "593433"  # "91350100" "M000100" "Y43"
HEX_ORG = "4d3030303130305934"  # "M000100Y4", characters 9-17

# --- hand-written DER --------------------------------------------------------------------
# OID 1.2.156.10260.4.4: 1*40+2 = 0x2a; 156 = 0x81 0x1c; 10260 = 80*128+20 = 0xd0 0x14; 4; 4
OID_USCC_2023 = "06072a811cd0140404"
OID_ORG_2012 = "06082a811cd014040104"
OID_TAX_2012 = "06082a811cd014040105"
OID_IC_2012 = "06082a811cd014040103"
# Extension ::= SEQUENCE { extnID, extnValue OCTET STRING { UTF8String (0x0c) 18 octets } }, no critical
EXT_USCC_2023 = "301f" + OID_USCC_2023 + "0414" + "0c12" + HEX_USCC
# ... { PrintableString (0x13) 9 octets }
EXT_ORG_2012 = "3017" + OID_ORG_2012 + "040b" + "1309" + HEX_ORG
EXT_TAX_2012 = "3020" + OID_TAX_2012 + "0414" + "1312" + HEX_USCC
EXT_IC_2012 = "3020" + OID_IC_2012 + "0414" + "1312" + HEX_USCC

DISTID = "distid:1234567812345678"
PASSPHRASE = "gm-t0015-test-passphrase"


def test_hex_constants_are_the_text():
    assert bytes.fromhex(HEX_USCC).decode() == USCC and bytes.fromhex(HEX_ORG).decode() == "M000100Y4"


def test_extension_der_is_the_hand_written_vector():
    assert gmt0015.extension_der(gmt0015.USCC_2023, USCC).hex() == EXT_USCC_2023
    assert gmt0015.extension_der(gmt0015.ORGANIZATION_CODE_2012, gmt0015.organization_code(USCC)).hex() == EXT_ORG_2012
    assert gmt0015.extension_der(gmt0015.TAXATION_NUMBER_2012, USCC).hex() == EXT_TAX_2012
    assert gmt0015.extension_der(gmt0015.IC_REGISTRATION_NUMBER_2012, USCC).hex() == EXT_IC_2012


@pytest.mark.parametrize("oid, want", [("1.2.156.10260.4.4", OID_USCC_2023), ("1.2.156.10260.4.1.4", OID_ORG_2012),
                                       ("1.2.156.10260.4.1.5", OID_TAX_2012), ("1.2.156.10260.4.1.3", OID_IC_2012)])
def test_oid_encodings_agree_with_openssl(oid, want):
    p = subprocess.run(["openssl", "asn1parse", "-genstr", f"OID:{oid}", "-out", "/dev/stdout", "-noout"],
                       capture_output=True, check=True)
    assert p.stdout.hex() == want
    assert der.oid(oid).hex() == want


def test_the_2023_uscc_oid_has_one_definition():
    """Single-sourced (XiPKI only): one named constant, so a correction is one edit."""
    src = Path(gmt0015.__file__).read_text(encoding="utf-8")
    assert src.count('"1.2.156.10260.4.4"') == 1
    root = Path(gmt0015.__file__).parents[1]
    others = [p for p in root.rglob("*.py") if p.name != "gmt0015.py" and "10260.4.4" in p.read_text(encoding="utf-8")]
    assert others == []


def test_check_extension_value_refuses_what_is_wrong():
    ok = bytes.fromhex("0c12" + HEX_USCC)
    assert gmt0015.check_extension_value(gmt0015.USCC_2023, ok) == USCC
    bad = [
        ("must be a UTF8String", gmt0015.USCC_2023, bytes.fromhex("1312" + HEX_USCC)),
        ("wrong check character", gmt0015.USCC_2023, der.tlv(0x0C, (USCC[:-1] + "4").encode())),
        ("trailing data", gmt0015.USCC_2023, ok + b"\x00"),
        ("must be a PrintableString", gmt0015.ORGANIZATION_CODE_2012, bytes.fromhex("0c09" + HEX_ORG)),
        ("an organisation code has 9", gmt0015.ORGANIZATION_CODE_2012, der.tlv(0x13, b"M000100Y")),
        ("not a PrintableString", gmt0015.TAXATION_NUMBER_2012, der.tlv(0x13, b"91*350")),
        ("65 characters (1 to 64)", gmt0015.TAXATION_NUMBER_2012, der.tlv(0x13, b"9" * 65)),
        ("not a GM/T 0015 item unica knows", "1.2.156.10260.4.1.1", der.tlv(0x13, b"1")),
    ]
    for needle, oid, content in bad:
        with pytest.raises(MalformedInput) as e:
            gmt0015.check_extension_value(oid, content)
        assert needle in str(e.value)


def test_value_der_refuses_non_printable_text():
    with pytest.raises(PolicyViolation, match="PrintableString"):
        gmt0015.value_der(gmt0015.TAXATION_NUMBER_2012, "税号123")


# --- profiles --------------------------------------------------------------------------------


def test_builtin_gm_profiles():
    sign, auth = get_profile("enterprise-sign-gm", Path("/x")), get_profile("enterprise-auth-gm", Path("/x"))
    for p in (sign, auth):
        assert p.key_types == ("sm2",) and p.subject.uscc == "required" and p.subject.gmt0015 == ("2012", "2023")
        assert "organizationIdentifier" in p.subject.required and not p.is_ca
        assert p.to_dict()["subject"]["gmt0015"] == ["2012", "2023"]
    assert sign.key_usage == ("digitalSignature", "nonRepudiation")
    assert sign.extended_key_usage == ("1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.4")  # clientAuth, emailProtection
    assert auth.key_usage == ("digitalSignature",) and auth.extended_key_usage == ("1.3.6.1.5.5.7.3.2",)
    # the other profiles say nothing new (their 'profile show' output is unchanged)
    assert "gmt0015" not in get_profile("enterprise-sign", Path("/x")).to_dict()["subject"]


BASE = """\
kind = "end-entity"
validity = "1y"
[key_usage]
usages = ["digitalSignature"]
[keys]
allowed = ["sm2"]
[subject]
required = ["countryName", "organizationName", "organizationIdentifier", "commonName"]
"""


def _parse(extra_subject: str, head: str = BASE):
    import tomllib

    return parse_profile(tomllib.loads(head + extra_subject), name="t", source="t.toml")


@pytest.mark.parametrize("subject_lines, needle", [
    ('uscc = "required"\ngmt0015 = ["2019"]\n', "unknown value '2019'"),
    ('uscc = "required"\ngmt0015 = ["2012", "2012"]\n', "listed twice"),
    ('uscc = "required"\ngmt0015 = "2023"\n', "must be a list of strings"),
    ('uscc = "optional"\ngmt0015 = ["2023"]\n', "must be 'required'"),
    ('uscc = "required"\ngmt0016 = ["2023"]\n', "unknown key"),
])
def test_loader_refuses_bad_gmt0015_settings(subject_lines, needle):
    with pytest.raises(ProfileError, match="subject.gmt001") as e:
        _parse(subject_lines)
    assert needle in str(e.value)


def test_loader_refuses_gmt0015_on_a_ca_profile():
    head = BASE.replace('kind = "end-entity"', 'kind = "sub-ca"').replace(
        '["digitalSignature"]', '["keyCertSign", "cRLSign"]')
    with pytest.raises(ProfileError, match="end-entity"):
        _parse('uscc = "required"\ngmt0015 = ["2023"]\n', head)


def test_loader_takes_one_edition():
    assert _parse('uscc = "required"\ngmt0015 = ["2023"]\n').subject.gmt0015 == ("2023",)
    assert _parse('uscc = "required"\n').subject.gmt0015 == ()


# --- the engine and the TBS template -------------------------------------------------------------


def _name(*pairs) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, v) for oid, v in pairs])


def _subject(uscc: str) -> x509.Name:
    return _name((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "示例贸易有限公司"),
                 (NameOID.ORGANIZATION_IDENTIFIER, uscc), (NameOID.COMMON_NAME, "申报员"))


def _issuer(pub, subject=None) -> engine.Issuer:
    return engine.Issuer(
        name="gmsub", public_key=pub, ski=key_identifier(pub),
        # the issuer carries a USCC of its own: a template that kept the sample's value would show it
        subject=subject or _name((NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, "口岸"),
                                 (NameOID.ORGANIZATION_IDENTIFIER, USCC_B), (NameOID.COMMON_NAME, "SM2 CA")),
        not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=3650),
        crl_url="http://crl.example.cn/gmsub.crl", ocsp_url="http://ocsp.example.cn/")


def _request(pub, subject) -> CSRRequest:
    return CSRRequest(public_key=pub, key_type=key_type_of(pub), subject=subject, requested_sans=(),
                      requested_extensions=())


def _extensions(tbs_der: bytes) -> dict[str, bytes]:
    """extnID -> the whole Extension DER, read from a TBSCertificate with unica's DER reader."""
    s, e = der.expect(tbs_der, 0, der.SEQUENCE)
    last = list(der.children(tbs_der, s, e))[-1]
    assert last[0] == 0xA3
    xs, xe = der.expect(tbs_der, last[1], der.SEQUENCE)
    out = {}
    for _, es, ee, start in der.children(tbs_der, xs, xe):
        _, os_, oe = der.read_tlv(tbs_der, es, ee)
        out[_dotted(tbs_der[es:oe])] = tbs_der[start:ee]
    return out


def _dotted(oid_tlv: bytes) -> str:
    from asn1crypto.core import ObjectIdentifier as AsnOID

    return AsnOID.load(oid_tlv).dotted


@pytest.fixture(scope="module")
def sm2_issuer():
    return _issuer(SM2PrivateKey.generate().public_key())


def test_each_certificate_gets_its_own_subjects_values(sm2_issuer):
    profile = get_profile("enterprise-sign-gm", Path("/x"))
    leaf = SM2PrivateKey.generate().public_key()
    # the issuer's USCC must never leak in; the second and third come from the cached template
    for uscc, org in ((USCC, HEX_ORG), (USCC_B, USCC_B[8:17].encode().hex()), (USCC, HEX_ORG)):
        p = engine.prepare(sm2_issuer, profile, _request(leaf, _subject(uscc)), now=NOW, lint=True)
        exts = _extensions(p.tbs_der)
        assert exts[gmt0015.USCC_2023].hex() == "301f" + OID_USCC_2023 + "04140c12" + uscc.encode().hex()
        assert exts[gmt0015.ORGANIZATION_CODE_2012].hex() == "3017" + OID_ORG_2012 + "040b1309" + org
        assert gmt0015.TAXATION_NUMBER_2012 not in exts and gmt0015.IC_REGISTRATION_NUMBER_2012 not in exts
        # the order extensions_for gives, at the end; and what it gives for the real subject is the same bytes
        assert list(exts)[-2:] == [gmt0015.USCC_2023, gmt0015.ORGANIZATION_CODE_2012]
        decided = engine.extensions_for(profile, sm2_issuer, leaf, _subject(uscc), [], p.serial)
        for value, critical in decided[-2:]:
            assert not critical
            assert der.extension(der.oid(value.oid.dotted_string), value.value) == exts[value.oid.dotted_string]


def test_auth_gm_extensions_are_exactly_the_vectors(sm2_issuer):
    p = engine.prepare(sm2_issuer, get_profile("enterprise-auth-gm", Path("/x")),
                       _request(SM2PrivateKey.generate().public_key(), _subject(USCC)), now=NOW, lint=False)
    exts = _extensions(p.tbs_der)
    assert exts[gmt0015.USCC_2023].hex() == EXT_USCC_2023 and exts[gmt0015.ORGANIZATION_CODE_2012].hex() == EXT_ORG_2012


@pytest.mark.parametrize("editions, want", [(["2023"], [gmt0015.USCC_2023]),
                                            (["2012"], [gmt0015.ORGANIZATION_CODE_2012])])
def test_one_edition_writes_only_its_item(sm2_issuer, editions, want):
    profile = _parse(f'uscc = "required"\ngmt0015 = {json.dumps(editions)}\n')
    p = engine.prepare(sm2_issuer, profile, _request(SM2PrivateKey.generate().public_key(), _subject(USCC)),
                       now=NOW, lint=False)
    assert [o for o in _extensions(p.tbs_der) if o.startswith(gmt0015.ARC)] == want


def test_gm_profiles_take_sm2_keys_only(sm2_issuer):
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(PolicyViolation, match="not allowed by profile 'enterprise-sign-gm'"):
        engine.prepare(sm2_issuer, get_profile("enterprise-sign-gm", Path("/x")), _request(pub, _subject(USCC)),
                       now=NOW, lint=False)


def test_a_subject_without_a_valid_uscc_is_refused(sm2_issuer):
    profile = get_profile("enterprise-sign-gm", Path("/x"))
    pub = SM2PrivateKey.generate().public_key()
    with pytest.raises(PolicyViolation):
        engine.prepare(sm2_issuer, profile, _request(pub, _subject(USCC[:-1] + "4")), now=NOW, lint=False)
    with pytest.raises(PolicyViolation):
        engine.prepare(sm2_issuer, profile, _request(pub, _name((NameOID.COUNTRY_NAME, "CN"),
                                                                (NameOID.ORGANIZATION_NAME, "示例"),
                                                                (NameOID.COMMON_NAME, "x"))), now=NOW, lint=False)
    # the slot itself refuses a subject without a code (never writes an empty value)
    slot = gmt0015.SubjectDerived(gmt0015.USCC_2023, _subject(USCC))
    with pytest.raises(PolicyViolation, match="no Unified Social Credit Code"):
        slot.extension_der(_name((NameOID.COMMON_NAME, "x")).public_bytes())
    assert gmt0015.uscc_of_subject_der(_subject("NTRCN-" + USCC).public_bytes()) == USCC


# --- pkilint: what it lints, what it passes over, and unica's check of the rest --------------------


def _ec_cert(extra: list[tuple[x509.ExtensionType, bool]]) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(_subject(USCC)).issuer_name(_issuer(key.public_key()).subject)
         .public_key(key.public_key()).serial_number(12345).not_valid_before(NOW)
         .not_valid_after(NOW + dt.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
         .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False))
    for value, critical in extra:
        b = b.add_extension(value, critical)
    return b.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def _unrec(oid: str, content_hex: str) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(ObjectIdentifier(oid), bytes.fromhex(content_hex))


def test_pkilint_passes_the_gm_arc_over_without_a_word(tmp_path):
    """Pinned: lint_pkix_cert (0.13.3) has no finding at any severity for a *wrong* GM/T 0015
    value -- which is why unica checks these extensions itself."""
    wrong = _ec_cert([(_unrec(gmt0015.USCC_2023, "1305" + b"hello".hex()), True)])
    f = tmp_path / "wrong.der"
    f.write_bytes(wrong)
    p = subprocess.run(["lint_pkix_cert", "lint", "-s", "DEBUG", str(f)], capture_output=True, text=True)
    assert "10260" not in p.stdout + p.stderr and "extensions.4" not in p.stdout, p.stdout
    findings = gmt0015.lint_findings(wrong)
    assert any(x.startswith("ERROR unica.gmt0015.invalid_value (1.2.156.10260.4.4") or
               x.startswith("ERROR unica.gmt0015.invalid_value (unifiedSocialCreditCode") for x in findings), findings


@pytest.mark.parametrize("ext, critical, needle", [
    (_unrec(gmt0015.USCC_2023, "0c12" + HEX_USCC), True, "ERROR unica.gmt0015.invalid_value (unifiedSocialCreditCode"),
    (_unrec(gmt0015.USCC_2023, "1312" + HEX_USCC), False, "must be a UTF8String"),
    (_unrec(gmt0015.ORGANIZATION_CODE_2012, "0c09" + HEX_ORG), False, "must be a PrintableString"),
    (_unrec("1.2.156.10260.4.1.1", "1301" + "31"), False, "WARNING unica.gmt0015.unchecked_item"),
])
def test_unica_gm_lint_reports_bad_values(ext, critical, needle):
    findings = gmt0015.lint_findings(_ec_cert([(ext, critical)]))
    assert any(needle in x for x in findings), findings


def test_unica_gm_lint_is_clean_on_good_values():
    good = _ec_cert([(_unrec(gmt0015.USCC_2023, "0c12" + HEX_USCC), False),
                     (_unrec(gmt0015.ORGANIZATION_CODE_2012, "1309" + HEX_ORG), False)])
    assert gmt0015.lint_findings(good) == []


# --- end to end on the CLI -------------------------------------------------------------------


@dataclass
class Home:
    dir: Path
    env: dict

    def ok(self, *args) -> str:
        p = run_unica(*args, env=self.env)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    def run(self, *args):
        return run_unica(*args, env=self.env)


def _openssl(*args) -> str:
    p = subprocess.run(["openssl", *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Home:
    d = tmp_path_factory.mktemp("gmt0015")
    h = Home(d, {"UNICA_HOME": str(d / "home"), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None,
                 "UNICA_OPERATOR": None})
    h.ok("init")
    for name in ("root", "sub"):
        h.ok("key", "generate", f"file:{d}/{name}.sm2.pem", "--key-type", "sm2")
    h.ok("ca", "create-root", "gmroot", "--subject", "C=CN,O=电子口岸联合认证中心,CN=SM2 Root CA",
         "--key", f"file:{d}/root.sm2.pem")
    h.ok("ca", "create-sub", "gmsub", "--parent", "gmroot", "--subject", "C=CN,O=电子口岸联合认证中心,CN=SM2 Issuing CA",
         "--key", f"file:{d}/sub.sm2.pem")
    h.ok("ca", "set", "gmsub", "--crl-url", "http://127.0.0.1:9/gmsub.crl")
    for ca in ("gmroot", "gmsub"):
        (d / f"{ca}.pem").write_text(h.ok("ca", "export", ca))
    return h


def _csr(h: Home, name: str, *addext: str) -> Path:
    key, csr = h.dir / f"{name}.key", h.dir / f"{name}.csr"
    subprocess.run(["openssl", "genpkey", "-algorithm", "SM2", "-out", str(key)], check=True, capture_output=True)
    extra = [a for x in addext for a in ("-addext", x)]
    subprocess.run(["openssl", "req", "-new", "-key", str(key), "-sm3", "-sigopt", DISTID, "-utf8", "-subj",
                    f"/C=CN/O=测试科技有限公司/organizationIdentifier={USCC}/CN=张三", *extra, "-out", str(csr)],
                   check=True, capture_output=True)
    return csr


def _issue(h: Home, name: str, profile: str, *addext: str) -> Path:
    out = h.dir / f"{name}.pem"
    h.ok("issue", "--ca", "gmsub", "--profile", profile, "--csr", str(_csr(h, name, *addext)), "--out", str(out))
    return out


def _asn1_cert(pem: Path):
    from asn1crypto import pem as apem, x509 as ax

    return ax.Certificate.load(apem.unarmor(pem.read_bytes())[2])


def _gmssl_verifies(issuer_pem: Path, cert_pem: Path) -> bool:
    """gmssl (pure Python, test-only) checks the SM2-with-SM3 signature with its default ID (the
    openssl command line where gmssl itself fails: tests/sm2/peers.py)."""
    from tests.gm.test_sm2_pki import gmssl_verifies

    c = _asn1_cert(cert_pem)
    return gmssl_verifies(_asn1_cert(issuer_pem)["tbs_certificate"]["subject_public_key_info"].dump(),
                          c["tbs_certificate"].dump(), c["signature_value"].native)


def test_e2e_enterprise_sign_gm(home):
    cert = _issue(home, "sign", "enterprise-sign-gm")
    text = _openssl("x509", "-in", str(cert), "-noout", "-text")
    assert "Signature Algorithm: SM2-with-SM3" in text
    lines = text.splitlines()
    for oid, value in (("1.2.156.10260.4.4", USCC), ("1.2.156.10260.4.1.4", "M000100Y4")):
        i = next(k for k, line in enumerate(lines) if line.strip().startswith(oid + ":"))
        assert "critical" not in lines[i], lines[i]  # OpenSSL prints ': critical' for a critical one
        assert lines[i + 1].strip().endswith(value), lines[i + 1]
    assert "Digital Signature, Non Repudiation" in text
    assert "TLS Web Client Authentication, E-mail Protection" in text
    # the bytes are the hand-written vectors
    der_cert = _asn1_cert(cert)
    exts = {e["extn_id"].dotted: e.dump().hex() for e in der_cert["tbs_certificate"]["extensions"]}
    assert exts[gmt0015.USCC_2023] == EXT_USCC_2023 and exts[gmt0015.ORGANIZATION_CODE_2012] == EXT_ORG_2012
    # an independent SM2 checks the signature with the GM/T 0009 default ID; OpenSSL with the ID given
    assert _gmssl_verifies(home.dir / "gmsub.pem", cert)
    _openssl("verify", "-partial_chain", "-vfyopt", DISTID, "-CAfile", str(home.dir / "gmsub.pem"), str(cert))
    # pkilint: clean at WARNING (what it lints), and unica's GM/T 0015 check (what it skips) too
    p = subprocess.run(["lint_pkix_cert", "lint", "-s", "WARNING", str(cert)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "", p.stdout + p.stderr
    assert gmt0015.lint_findings(der_cert.dump()) == []


def test_e2e_enterprise_auth_gm(home):
    cert = _issue(home, "auth", "enterprise-auth-gm", "subjectAltName=email:it@trade.example.cn")
    text = _openssl("x509", "-in", str(cert), "-noout", "-text", "-certopt", "no_sigdump")
    assert "Digital Signature\n" in text and "Non Repudiation" not in text
    assert "TLS Web Client Authentication\n" in text and "E-mail Protection" not in text
    assert "email:it@trade.example.cn" in text
    assert "1.2.156.10260.4.4:" in text and "1.2.156.10260.4.1.4:" in text
    assert _gmssl_verifies(home.dir / "gmsub.pem", cert)
    assert gmt0015.lint_findings(_asn1_cert(cert).dump()) == []


def test_e2e_requested_taxation_number_is_written_as_supplied(home):
    """TaxationNumber / ICRegistrationNumber are never derived: the built-in GM profiles honour
    them from a request that supplies them, as supplied (tests/gm/test_sm2_pki.py checks a
    profile that does not honour them, and a wrong string type)."""
    cert = _issue(home, "tax", "enterprise-sign-gm",
                  f"{gmt0015.TAXATION_NUMBER_2012}=ASN1:PRINTABLESTRING:{USCC}",
                  f"{gmt0015.IC_REGISTRATION_NUMBER_2012}=ASN1:PRINTABLESTRING:350100000012345")
    exts = {e["extn_id"].dotted: e for e in _asn1_cert(cert)["tbs_certificate"]["extensions"]}
    assert {gmt0015.TAXATION_NUMBER_2012, gmt0015.IC_REGISTRATION_NUMBER_2012, gmt0015.USCC_2023} <= set(exts)
    assert exts[gmt0015.TAXATION_NUMBER_2012]["extn_value"].native == gmt0015.value_der(gmt0015.TAXATION_NUMBER_2012,
                                                                                       USCC)
    assert not exts[gmt0015.IC_REGISTRATION_NUMBER_2012]["critical"].native
    untouched = _issue(home, "no-tax", "enterprise-sign-gm")
    assert gmt0015.TAXATION_NUMBER_2012 not in {e["extn_id"].dotted
                                                 for e in _asn1_cert(untouched)["tbs_certificate"]["extensions"]}


def test_requested_value_reads_and_checks_a_csr(home):
    csr = x509.load_pem_x509_csr(_csr(home, "req-tax", f"{gmt0015.TAXATION_NUMBER_2012}=ASN1:PRINTABLESTRING:{USCC}",
                                      f"{gmt0015.IC_REGISTRATION_NUMBER_2012}=ASN1:UTF8String:350100000012345"
                                      ).read_bytes())
    assert gmt0015.requested_value(csr, "taxationNumber") == USCC
    with pytest.raises(MalformedInput, match="PrintableString"):
        gmt0015.requested_value(csr, "icRegistrationNumber")
    plain = x509.load_pem_x509_csr(_csr(home, "req-plain").read_bytes())
    assert gmt0015.requested_value(plain, "taxationNumber") is None


def test_e2e_ec_key_refused_by_gm_profile(home):
    key, csr = home.dir / "ec.key", home.dir / "ec.csr"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)], check=True)
    subprocess.run(["openssl", "req", "-new", "-key", str(key), "-utf8", "-subj",
                    f"/C=CN/O=测试/organizationIdentifier={USCC}/CN=x", "-out", str(csr)], check=True)
    p = home.run("issue", "--ca", "gmsub", "--profile", "enterprise-sign-gm", "--csr", str(csr),
                 "--out", str(home.dir / "ec.pem"))
    assert_one_line_error(p, "ec-p256", "enterprise-sign-gm")


def test_profile_show_and_check(home, tmp_path):
    for name in ("enterprise-sign-gm", "enterprise-auth-gm"):
        text = home.ok("profile", "show", name)
        assert 'gmt0015 = ["2012", "2023"]' in text
        copy = tmp_path / f"copy-{name}.toml"
        copy.write_text(text, encoding="utf-8")
        assert "OK" in home.ok("profile", "check", str(copy))
        want = json.loads(home.ok("profile", "show", name, "--json"))
        got = json.loads(home.ok("profile", "check", str(copy), "--json"))
        assert want["subject"]["gmt0015"] == ["2012", "2023"]
        assert {k: v for k, v in got.items() if k not in ("name", "source")} == \
            {k: v for k, v in want.items() if k not in ("name", "source")}
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + 'uscc = "required"\ngmt0015 = ["2024"]\n', encoding="utf-8")
    assert_one_line_error(home.run("profile", "check", str(bad)), "subject.gmt0015", "2024")
