"""One DN parser and one encoded order everywhere (issue #11, item 13), through the real ``unica``
binary on SoftHSM2.

The order rule (unica.policies.dn): whatever order ``--subject`` is written in, the encoded Name
is in X.500 hierarchy order, most general first -- DC, C, ST, L, STREET, postalCode, O, OU,
organizationIdentifier, title, SN, GN, pseudonym, serialNumber, CN, emailAddress -- so
``openssl -nameopt RFC2253`` prints it most specific first (``CN=…,OU=…,O=…,C=CN``). Repeated
attributes (OU, DC) keep their order read from the general end of the text (or of a CSR's Name).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import assert_one_line_error

PASSPHRASE = "subject-names-passphrase"
TOKEN = "unica-test"

#: the subject of every test, written C first with spaces after the commas (the form that failed
#: with an empty reason), with a repeated OU; {cn} differs per object
SUBJECT = "C=CN, ST=北京, L=海淀区, O=示例科技有限公司, OU=研发部, OU=平台组, CN={cn}"
#: what openssl prints for it (RFC 2253: most specific first; the encoded Name is C first)
RFC2253 = "CN={cn},OU=平台组,OU=研发部,O=示例科技有限公司,L=海淀区,ST=北京,C=CN"
ENCODED = ["C", "ST", "L", "O", "OU", "OU", "CN"]
SHORT = {"2.5.4.6": "C", "2.5.4.8": "ST", "2.5.4.7": "L", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.3": "CN",
         "2.5.4.5": "serialNumber", "2.5.4.97": "organizationIdentifier", "0.9.2342.19200300.100.1.25": "DC"}


def _run(args, env: dict, **kw) -> subprocess.CompletedProcess:
    full = dict(os.environ)
    full.update(env)
    return subprocess.run([sys.executable, "-m", "unica", *map(str, args)], env=full, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL, **kw)


@dataclass
class Env:
    dir: Path
    env: dict
    root: str
    key: str  # pkcs11: URI of an EC key on the test token

    def run(self, *args, env: dict | None = None, **kw):
        return _run(args, {**self.env, **(env or {})}, **kw)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stderr == "", p.stderr  # no warning either (e.g. cryptography's about CN bytes)
        return p

    def db_state(self) -> tuple:
        from sqlalchemy import create_engine, text

        eng = create_engine(f"sqlite:///{self.dir / 'home' / 'unica.db'}")
        try:
            with eng.connect() as c:
                return tuple(c.execute(text(q)).scalar() for q in (
                    "SELECT count(*) FROM certificates", "SELECT count(*) FROM cas", "SELECT count(*) FROM audit_log"))
        finally:
            eng.dispose()

    def token_csr(self, subject: str, *extra) -> x509.CertificateSigningRequest:
        out = self.dir / f"t-{uuid.uuid4().hex[:8]}.csr"
        self.ok("token", "csr", "--key", self.key, "--subject", subject, "--out", out, *extra)
        return x509.load_pem_x509_csr(out.read_bytes())


def _types(name: x509.Name) -> list[str]:
    return ["+".join(SHORT.get(a.oid.dotted_string, a.oid.dotted_string) for a in rdn) for rdn in name.rdns]


def _openssl_subject(path: Path, kind: str = "x509") -> str:
    p = subprocess.run(["openssl", kind, "-in", str(path), "-noout", "-subject", "-nameopt", "RFC2253,-esc_msb"],
                       capture_output=True, text=True, check=True)
    return p.stdout.strip().removeprefix("subject=").strip()


def _openssl_name(name: x509.Name) -> str:
    """RFC 2253 form of ``name`` as rfc4514_string gives it (checked against openssl above)."""
    return name.rfc4514_string()


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    d = tmp_path_factory.mktemp("subjects")
    tag = uuid.uuid4().hex[:6]
    e = Env(dir=d, env={"UNICA_HOME": str(d / "home"), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DEBUG": ""},
            root=f"dn-root-{tag}", key="")
    e.ok("init")
    e.ok("ca", "create-root", e.root, "--subject", SUBJECT.format(cn="名称测试根"), "--key-type", "ec-p256",
         "--crl-url", "http://crl.example.cn/dn-root.crl")
    label = f"dn-{tag}"
    e.ok("token", "keygen", "--token", TOKEN, "--label", label, "--type", "ec-p256")
    e.key = f"pkcs11:token={TOKEN};object={label}"
    return e


# --- one order through every command --------------------------------------------------------


def test_same_subject_same_order_in_every_command(env):
    """create-root, create-sub (internal and --csr-out), token csr and issue (of the token's CSR,
    and of an openssl CSR whose Name is encoded most specific first) all encode C, ST, L, O, OU,
    OU, CN, and openssl prints the same RFC 2253 string for each."""
    d, tag = env.dir, uuid.uuid4().hex[:6]
    root_pem = d / "root.pem"
    env.ok("ca", "export", env.root, "--out", root_pem)

    sub = f"dn-sub-{tag}"
    env.ok("ca", "create-sub", sub, "--parent", env.root, "--subject", SUBJECT.format(cn="内部子CA"),
           "--key-type", "ec-p256")
    sub_pem = d / "sub.pem"
    env.ok("ca", "export", sub, "--out", sub_pem)

    ext, ext_csr = f"dn-ext-{tag}", d / "ext.csr"
    env.ok("ca", "create-sub", ext, "--csr-out", ext_csr, "--subject", SUBJECT.format(cn="外部子CA"),
           "--key-type", "ec-p256")

    tok_csr = d / "token.csr"
    env.ok("token", "csr", "--key", env.key, "--subject", SUBJECT.format(cn="令牌用户"), "--out", tok_csr)
    tok_pem = d / "token.pem"
    env.ok("issue", "--ca", env.root, "--profile", "agency-sign", "--csr", tok_csr, "--out", tok_pem)

    # an openssl CSR encoded CN first (reverse hierarchy), OUs reversed too
    rev_csr = d / "reverse.csr"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(d / "reverse.key"), "-out", str(rev_csr), "-utf8", "-subj",
                    "/CN=反序请求/OU=平台组/OU=研发部/O=示例科技有限公司/L=海淀区/ST=北京/C=CN"],
                   check=True, capture_output=True)
    rev_pem = d / "reverse.pem"
    env.ok("issue", "--ca", env.root, "--profile", "agency-sign", "--csr", rev_csr, "--out", rev_pem)

    made = {
        "ca create-root": (root_pem, "x509", "名称测试根"),
        "ca create-sub": (sub_pem, "x509", "内部子CA"),
        "ca create-sub --csr-out": (ext_csr, "req", "外部子CA"),
        "token csr": (tok_csr, "req", "令牌用户"),
        "issue (token csr)": (tok_pem, "x509", "令牌用户"),
        "issue (openssl CSR, CN first)": (rev_pem, "x509", "反序请求"),
    }
    for what, (path, kind, cn) in made.items():
        data = path.read_bytes()
        obj = x509.load_pem_x509_certificate(data) if kind == "x509" else x509.load_pem_x509_csr(data)
        assert _types(obj.subject) == ENCODED, what
        assert _openssl_subject(path, kind) == RFC2253.format(cn=cn), what
    # the sub CA's issuer is the root's subject, byte for byte
    assert (x509.load_pem_x509_certificate(sub_pem.read_bytes()).issuer.public_bytes()
            == x509.load_pem_x509_certificate(root_pem.read_bytes()).subject.public_bytes())
    # what unica shows is the same string
    shown = env.ok("ca", "show", sub, "--json").stdout
    assert RFC2253.format(cn="内部子CA") in shown


@pytest.mark.parametrize("spelling", [
    "C=CN, O=示例, OU=甲, OU=乙, CN=同名",             # C first, spaces after commas
    "C=CN,O=示例,OU=甲,OU=乙,CN=同名",                 # C first, no spaces
    "CN=同名,OU=乙,OU=甲,O=示例,C=CN",                 # RFC 4514 (most specific first)
    "CN = 同名 ,  OU=乙 , OU=甲, O=示例 ,C=CN",         # spaces around separators and '='
    "cn=同名;ou=乙;ou=甲;o=示例;c=CN",                 # RFC 2253 ';' separators, lower-case names
    "/C=CN/O=示例/OU=甲/OU=乙/CN=同名",                # OpenSSL's form
    "commonName=同名,organizationalUnitName=乙,organizationalUnitName=甲,organizationName=示例,countryName=CN",
    "2.5.4.3=同名,OU=乙,OU=甲,2.5.4.10=示例,C=CN",     # dotted OIDs
])
def test_spellings_give_the_same_name(env, spelling):
    """Every accepted way of writing one name gives the same DER subject in the token's CSR:
    C, O, OU=甲, OU=乙, CN (甲 the more general OU in each spelling)."""
    got = env.token_csr(spelling).subject
    assert _types(got) == ["C", "O", "OU", "OU", "CN"], got.rfc4514_string()
    assert [a.value for a in got] == ["CN", "示例", "甲", "乙", "同名"], got.rfc4514_string()
    assert _openssl_name(got) == "CN=同名,OU=乙,OU=甲,O=示例,C=CN"


@pytest.mark.parametrize("subject,values", [
    (r"C=CN, O=Acme\, Inc., CN=a\+b", {"O": "Acme, Inc.", "CN": "a+b"}),
    ('C=CN, O="Acme, Inc.", CN=x', {"O": "Acme, Inc.", "CN": "x"}),
    (r"C=CN, O=\E7\A4\BA\E4\BE\8B, CN=x", {"O": "示例"}),                  # UTF-8 hex pairs
    (r"C=CN, O=x, CN=\ lead and trail\ ", {"CN": " lead and trail "}),     # escaped spaces are kept
    (r"C=CN, O=x, CN=\#hash", {"CN": "#hash"}),
    ("C=CN, O=x, CN=#0C06E7A4BAE4BE8B", {"CN": "示例"}),                   # BER UTF8String
    ("C=CN, O=x, CN=a=b<c>", {"CN": "a=b<c>"}),
])
def test_escapes(env, subject, values):
    csr = env.token_csr(subject)
    got = {SHORT[a.oid.dotted_string]: a.value for a in csr.subject}
    for k, v in values.items():
        assert got[k] == v, (subject, got)


@pytest.mark.parametrize("subject,needle", [
    ("C=CN, O=示例, , CN=x", "empty RDN (nothing before ',') (at character 13)"),
    ("C=CN, O=示例, CN=x,", "ends with a separator"),
    ("C=CN, XY=1, CN=x", "unknown attribute 'XY'"),
    ("C=CN O=示例", "missing ',' before 'O='"),
    ('C=CN, O="A" B', "expected ',' or '+' after a value"),
    ("示例", "expected an attribute name"),
    ("CN", "expected '=' after 'CN', found the end"),
    ("CN=x, O=", "organizationName has an empty value"),
    (r"CN=a\q", r"'\q' in the value of CN is not an escape"),
    (r"CN=\FF\FE", "not UTF-8"),
    ("CN=x\\", "a '\\' ends the value of CN"),
    ('CN="open', "has no closing"),
    ("CN=#zz", "must be followed by the hex of a BER string"),
    ("CN=x+CN=y", "commonName appears twice in one multi-valued RDN"),
    ("CN=x\tO=y", "control character"),
    ("   ", "subject DN is empty"),
    ("1.2..3=x", "expected"),
])
def test_bad_subjects_are_usage_errors_with_a_reason(env, subject, needle):
    """Exit 2, one line naming the subject and what is wrong where; nothing made, no PIN asked."""
    before = env.db_state()
    p = env.run("ca", "create-root", f"bad-{uuid.uuid4().hex[:6]}", "--subject", subject, "--key-type", "ec-p256")
    assert p.returncode == 2, p.stdout + p.stderr
    assert_one_line_error(p, needle)
    assert env.db_state() == before
    p = env.run("token", "csr", "--key", env.key, "--subject", subject, env={"UNICA_PIN": ""})
    assert p.returncode == 2, p.stdout + p.stderr
    assert_one_line_error(p, needle)


def test_multi_valued_rdn_is_parsed_then_refused_by_the_subject_rules(env):
    """'+' is RFC 4514 syntax (parsed), but the CA refuses multi-valued RDNs (exit 3, saying so)."""
    before = env.db_state()
    p = env.run("ca", "create-root", f"mv-{uuid.uuid4().hex[:6]}", "--subject", "C=CN, O=示例, CN=x+OU=y",
                "--key-type", "ec-p256")
    assert p.returncode == 3, p.stdout + p.stderr
    assert_one_line_error(p, "multi-valued RDNs are not accepted")
    assert env.db_state() == before
    p = env.run("token", "csr", "--key", env.key, "--subject", "CN=x+OU=y")
    assert p.returncode == 3, p.stdout + p.stderr
    assert_one_line_error(p, "multi-valued RDNs are not accepted")


def test_uscc_option_takes_its_place_in_the_order(env):
    """token csr --uscc puts organizationIdentifier after O and OU, before CN (the one order)."""
    csr = env.token_csr("CN=企业用户, OU=财务, O=示例, C=CN", "--uscc", "91350100M000100Y43")
    assert _types(csr.subject) == ["C", "O", "OU", "organizationIdentifier", "CN"]
