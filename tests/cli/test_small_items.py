"""Smaller items of issue #11 (item 15), through the real ``unica`` binary on SoftHSM2:

* ``unica init`` over an empty (0-byte) database file, a database of another application or a
  file that is no database: refused (exit 1, a hint, nothing written) unless ``--new-audit-chain``
  (for the empty file), which is audited;
* a U-label SAN (例子.中国) is issued as its IDNA A-label (xn--…), the commonName that repeats it
  too; openssl shows the A-label and pkilint accepts the certificate;
* a wrong PIN (or passphrase) at ``crl generate`` is audited (``crl.refused``) and reserves no
  CRL number;
* a Chinese commonName is bounded by 64 characters (X.520), not 64 bytes: 30 and 64 characters are
  accepted with no warning, pkilint -s WARNING accepts them; 65 are refused (exit 3);
* ``token csr --profile`` refuses what the CA would refuse under that profile (exit 3), and what
  it accepts the CA issues.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.conftest import TEST_PIN, assert_one_line_error

#: reading a 30-character Chinese CN here (90 bytes), cryptography warns; the CLI never shows it
pytestmark = pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")

PASSPHRASE = "small-items-passphrase"
TOKEN = "unica-test"


def _run(args, env: dict, **kw) -> subprocess.CompletedProcess:
    full = dict(os.environ)
    full.update(env)
    return subprocess.run([sys.executable, "-m", "unica", *map(str, args)], env=full, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL, **kw)


def _lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["lint_pkix_cert", "lint", "-s", "WARNING", str(path)], capture_output=True, text=True)


@dataclass
class Env:
    dir: Path
    env: dict
    root: str  # key on the SoftHSM2 token

    def run(self, *args, env: dict | None = None, **kw):
        return _run(args, {**self.env, **(env or {})}, **kw)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stderr == "", p.stderr
        return p

    def query(self, sql: str):
        with sqlite3.connect(self.dir / "home" / "unica.db") as c:
            return c.execute(sql).fetchall()


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    d = tmp_path_factory.mktemp("small")
    e = Env(dir=d, env={"UNICA_HOME": str(d / "home"), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DEBUG": ""},
            root=f"small-root-{uuid.uuid4().hex[:6]}")
    e.ok("init")
    e.ok("ca", "create-root", e.root, "--subject", "C=CN, O=小项测试, CN=small items root", "--key-type", "ec-p256",
         "--token", TOKEN, "--crl-url", "http://crl.example.cn/small.crl")
    return e


def _csr(d: Path, subj: str, san: str | None = None) -> Path:
    name = uuid.uuid4().hex[:8]
    cmd = ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"), "-utf8", "-subj", subj]
    if san:
        cmd += ["-addext", f"subjectAltName={san}"]
    subprocess.run(cmd, check=True, capture_output=True)
    return d / f"{name}.csr"


# --- init over what is not a unica database ---------------------------------------------------


def test_init_refuses_an_empty_database_file(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "keys").mkdir()
    (home / "keys" / "old-root.pem").write_text("an old CA key that outlived its database\n")
    db = home / "unica.db"
    db.write_bytes(b"")
    env = {"UNICA_HOME": str(home), "UNICA_DEBUG": ""}
    p = _run(["init"], env)
    assert p.returncode == 1, p.stdout + p.stderr
    assert_one_line_error(p, "exists and is empty (0 bytes)", "restore it from a backup", "--new-audit-chain")
    assert db.stat().st_size == 0, "init wrote into the empty database"
    assert not (home / "config.toml").exists(), "init wrote UNICA_HOME before refusing"

    p = _run(["init", "--new-audit-chain"], env)
    assert p.returncode == 0, p.stdout + p.stderr
    p = _run(["audit", "show", "--json"], env)
    assert p.returncode == 0, p.stderr
    entries = json.loads(p.stdout)
    assert len(entries) == 1 and entries[0]["event"] == "home.initialised", entries
    assert "new_audit_chain" in entries[0]["details"], entries[0]
    assert "empty" in entries[0]["details"]["new_audit_chain"]
    # a unica database is migrated again as before, flag or not
    assert _run(["init"], env).returncode == 0


def test_init_refuses_a_database_of_another_application(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    before = other.read_bytes()
    for flags in ([], ["--new-audit-chain"]):
        p = _run(["init", "--db", f"sqlite:///{other}", *flags], {"UNICA_HOME": str(tmp_path / "h"), "UNICA_DEBUG": ""})
        assert p.returncode == 1, p.stdout + p.stderr
        assert_one_line_error(p, "holds other tables (invoices) and no unica schema", "choose another")
        assert other.read_bytes() == before


def test_init_refuses_a_file_that_is_no_database(tmp_path):
    notdb = tmp_path / "notes.txt"
    notdb.write_text("not a database\n")
    p = _run(["init", "--db", f"sqlite:///{notdb}"], {"UNICA_HOME": str(tmp_path / "h"), "UNICA_DEBUG": ""})
    assert p.returncode == 1, p.stdout + p.stderr
    assert_one_line_error(p, "is not an SQLite database")
    assert notdb.read_text() == "not a database\n"


# --- U-label SANs --------------------------------------------------------------------------------


def test_u_label_san_is_issued_as_its_a_label(env):
    csr = _csr(env.dir, "/CN=例子.中国", "DNS:例子.中国,DNS:www.例子.中国,DNS:plain.example.cn")
    out = env.dir / "idn.pem"
    env.ok("issue", "--ca", env.root, "--profile", "tls-server", "--csr", csr, "--out", out)
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sans == ["xn--fsqu00a.xn--fiqs8s", "www.xn--fsqu00a.xn--fiqs8s", "plain.example.cn"]
    # the commonName that repeated the U-label is the same A-label (a copy of a SAN)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "xn--fsqu00a.xn--fiqs8s"
    text = subprocess.run(["openssl", "x509", "-in", str(out), "-noout", "-text"], capture_output=True, text=True,
                          check=True).stdout
    assert "DNS:xn--fsqu00a.xn--fiqs8s, DNS:www.xn--fsqu00a.xn--fiqs8s" in text
    lint = _lint(out)
    assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout + lint.stderr
    # the database lists what the certificate says
    p = env.ok("cert", "show", format(cert.serial_number, "x"), "--json")
    assert "xn--fsqu00a.xn--fiqs8s" in p.stdout


def test_invalid_idn_is_refused_with_the_reason(env):
    csr = _csr(env.dir, "/CN=bad idn", "DNS:例子..中国")
    before = env.query("SELECT count(*) FROM certificates")
    p = env.run("issue", "--ca", env.root, "--profile", "tls-server", "--csr", csr)
    assert p.returncode == 3, p.stdout + p.stderr
    assert_one_line_error(p, "'例子..中国' is not a valid internationalised domain name")
    assert env.query("SELECT count(*) FROM certificates") == before


# --- a wrong PIN at crl generate ------------------------------------------------------------------


def test_wrong_pin_at_crl_generate_is_audited(env):
    number = env.query(f"SELECT crl_number FROM cas WHERE name = '{env.root}'")
    refused = "SELECT count(*) FROM audit_log WHERE event = 'crl.refused'"
    n = env.query(refused)[0][0]
    p = env.run("crl", "generate", "--ca", env.root, "--out", env.dir / "small.crl", env={"UNICA_PIN": "0000-wrong"})
    assert p.returncode == 1, p.stdout + p.stderr
    assert_one_line_error(p, "wrong")
    assert env.query(refused)[0][0] == n + 1
    (details,) = env.query("SELECT details FROM audit_log WHERE event = 'crl.refused' ORDER BY id DESC LIMIT 1")[0]
    details = json.loads(details) if isinstance(details, str) else details
    assert details["error"] == "PinIncorrect", details
    assert "0000-wrong" not in json.dumps(details) and TEST_PIN not in json.dumps(details)
    assert env.query(f"SELECT crl_number FROM cas WHERE name = '{env.root}'") == number, "a CRL number was used"
    assert not (env.dir / "small.crl").exists()
    # the right PIN then works, with the next number
    env.ok("crl", "generate", "--ca", env.root, "--out", env.dir / "small.crl")
    assert env.query(f"SELECT crl_number FROM cas WHERE name = '{env.root}'")[0][0] == number[0][0] + 1


def test_wrong_passphrase_at_crl_generate_is_audited(env):
    name = f"small-file-{uuid.uuid4().hex[:6]}"
    env.ok("ca", "create-root", name, "--subject", "C=CN, O=小项测试, CN=file key root", "--key-type", "ec-p256")
    p = env.run("crl", "generate", "--ca", name, "--out", env.dir / "file.crl",
                env={"UNICA_PASSPHRASE": "not-the-passphrase"})
    assert p.returncode == 1, p.stdout + p.stderr
    rows = env.query("SELECT ca_name, details FROM audit_log WHERE event = 'crl.refused' ORDER BY id DESC LIMIT 1")
    assert rows and rows[0][0] == name, rows
    assert "PassphraseIncorrect" in rows[0][1]


# --- the length of a Chinese commonName -----------------------------------------------------------


@pytest.mark.parametrize("length", [30, 64])
def test_chinese_common_name_up_to_64_characters(env, length):
    cn = ("中华人民共和国" * 10)[:length]  # 3 bytes each in UTF-8: 90 and 192 bytes
    name = f"cn{length}-{uuid.uuid4().hex[:6]}"
    env.ok("ca", "create-root", name, "--subject", f"C=CN, O=示例, CN={cn}", "--key-type", "ec-p256")
    pem = env.dir / f"{name}.pem"
    env.ok("ca", "export", name, "--out", pem)
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    lint = _lint(pem)
    assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout + lint.stderr
    # an end-entity certificate with such a CN, from a CSR
    csr = _csr(env.dir, f"/C=CN/O=示例/CN={cn}")
    out = env.dir / f"{name}-ee.pem"
    env.ok("issue", "--ca", env.root, "--profile", "agency-sign", "--csr", csr, "--out", out)
    lint = _lint(out)
    assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout + lint.stderr


def test_chinese_common_name_of_65_characters_is_refused(env):
    cn = ("中华人民共和国" * 10)[:65]
    p = env.run("ca", "create-root", f"cn65-{uuid.uuid4().hex[:6]}", "--subject", f"C=CN, O=示例, CN={cn}",
                "--key-type", "ec-p256")
    assert p.returncode == 3, p.stdout + p.stderr
    assert_one_line_error(p, "commonName is longer than 64 characters")


# --- token csr applies the profile the CA will apply --------------------------------------------


@pytest.fixture(scope="module")
def token_key(env) -> str:
    label = f"small-{uuid.uuid4().hex[:6]}"
    env.ok("token", "keygen", "--token", TOKEN, "--label", label, "--type", "ec-p256")
    return f"pkcs11:token={TOKEN};object={label}"


@pytest.mark.parametrize("subject,profile,needle", [
    ("C=CN, O=" + "很长的机构名称" * 10 + ", CN=x", None, "organizationName is longer than 64 characters"),
    ("C=CN, O=示例, CN=x", "enterprise-sign", "lacks organizationIdentifier"),
    ("C=CN, O=示例, OU=部门, CN=x.example.cn", "tls-server", "organizationalUnitName is not allowed"),
    ("C=cn, O=示例, CN=x", None, "not a two-letter ISO 3166 code in capitals"),
])
def test_token_csr_refuses_what_the_ca_refuses(env, token_key, subject, profile, needle):
    out = env.dir / f"refused-{uuid.uuid4().hex[:6]}.csr"
    p = env.run("token", "csr", "--key", token_key, "--subject", subject, "--out", out,
                *(["--profile", profile] if profile else []))
    assert p.returncode == 3, p.stdout + p.stderr
    assert_one_line_error(p, needle)
    assert not out.exists()


def test_token_csr_accepted_under_a_profile_is_issued(env, token_key):
    out = env.dir / "accepted.csr"
    env.ok("token", "csr", "--key", token_key, "--subject", "CN=企业用户, O=示例科技, C=CN", "--uscc",
           "91350100M000100Y43", "--profile", "enterprise-sign", "--out", out)
    env.ok("issue", "--ca", env.root, "--profile", "enterprise-sign", "--csr", out, "--out", env.dir / "accepted.pem")
