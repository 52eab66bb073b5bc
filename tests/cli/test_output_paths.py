"""Every output file of the ``unica`` CLI is checked before any work and written atomically
(issue #11, item 1).

Each command that writes a file is run as the real binary with its output

* in a directory that does not exist: exit 2, one line ``unica: error: ... does not exist``,
  no directory created, and the database (certificates, CAs, CRLs, CRL numbers, audit log) and
  the token exactly as they were;
* naming an existing directory: exit 2, nothing changed;
* under /proc (a file system where nothing can be created, even by root; the tests run as root,
  so permissions cannot be used): exit 1, ``cannot create files``, nothing changed.

Then: ``unica issue --out /dev/full`` (the write fails after the certificate is committed)
exits 1 naming the serial and the ``unica cert export`` command that gets it again, and that
command works; an existing output file is only ever seen whole, old or new, while it is
rewritten, and a failed write leaves it as it was with no temporary file behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tests.conftest import assert_one_line_error

PASSPHRASE = "output-paths-passphrase"
TOKEN = "unica-test"
UNWRITABLE_PARENT = Path("/proc")  # exists, is a directory, and nobody (not even root) creates files in it


def _run(args, env: dict, **kw) -> subprocess.CompletedProcess:
    full = dict(os.environ)
    full.update(env)
    return subprocess.run([sys.executable, "-m", "unica", *map(str, args)], env=full, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL, **kw)


@dataclass
class Env:
    dir: Path
    env: dict
    ca: str
    csr: Path
    serial: str  # a certificate issued in setup
    sign_key: str
    sign_cert: Path
    data: Path
    pdf: Path
    token_key: str  # pkcs11: URI of a key on the test token

    def run(self, *args, **kw):
        return _run(args, self.env, **kw)

    def ok(self, *args, **kw):
        p = self.run(*args, **kw)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    def db_state(self) -> tuple:
        """What a refused command must leave as it was."""
        from sqlalchemy import create_engine, text

        eng = create_engine(f"sqlite:///{self.dir / 'home' / 'unica.db'}")
        try:
            with eng.connect() as c:
                return tuple(c.execute(text(q)).scalar() for q in (
                    "SELECT count(*) FROM certificates", "SELECT count(*) FROM cas", "SELECT count(*) FROM crls",
                    "SELECT count(*) FROM audit_log", "SELECT coalesce(sum(crl_number), 0) FROM cas"))
        finally:
            eng.dispose()

    def token_objects(self) -> list:
        p = self.ok("key", "list", "--token", TOKEN, "--json")
        return sorted(k["uri"] for k in json.loads(p.stdout))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    from tests.verify.pki import blank_pdf

    d = tmp_path_factory.mktemp("outputs")
    e = Env(dir=d, env={"UNICA_HOME": str(d / "home"), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DEBUG": ""},
            ca=f"out-root-{uuid.uuid4().hex[:6]}", csr=d / "req.csr", serial="", sign_key="", sign_cert=d / "signer.pem",
            data=d / "data.bin", pdf=d / "blank.pdf", token_key="")
    e.ok("init")
    e.ok("ca", "create-root", e.ca, "--subject", "C=CN,O=输出路径,CN=output root", "--key-type", "ec-p256",
         "--crl-url", "http://crl.example.cn/out.crl")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(d / "req.key"), "-out", str(e.csr), "-subj", "/CN=out.example.cn",
                    "-addext", "subjectAltName=DNS:out.example.cn"], check=True, capture_output=True)
    p = e.ok("issue", "--ca", e.ca, "--profile", "tls-server", "--csr", e.csr, "--no-lint", "--json")
    e.serial = json.loads(p.stdout)["serial"]

    key_path = d / "signer.key"
    e.ok("key", "generate", f"file:{key_path}", "--type", "ec-p256")
    e.sign_key = f"file:{key_path}"
    key = serialization.load_pem_private_key(key_path.read_bytes(), PASSPHRASE.encode())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "output signer")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), True)
            .sign(key, hashes.SHA256()))
    e.sign_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    e.data.write_bytes(b"data to sign\n")
    e.pdf.write_bytes(blank_pdf())

    label = f"out-{uuid.uuid4().hex[:8]}"
    e.ok("token", "keygen", "--token", TOKEN, "--label", label, "--type", "ec-p256")
    e.token_key = f"pkcs11:token={TOKEN};object={label}"
    return e


# --- every output, refused before any work ------------------------------------------------


def _commands(e: Env, out: Path) -> dict:
    """argv per command, with ``out`` as the output under test."""
    sub = f"pending-{uuid.uuid4().hex[:6]}"
    return {
        "issue --out": ["issue", "--ca", e.ca, "--profile", "tls-server", "--csr", e.csr, "--no-lint", "--out", out],
        "issue-batch --out-dir": ["issue-batch", "--ca", e.ca, "--profile", "tls-server", "--no-lint",
                                  "--out-dir", out, e.csr],
        "sign cms --out": ["sign", "cms", e.data, "--key", e.sign_key, "--cert", e.sign_cert, "--out", out],
        "sign pdf DST": ["sign", "pdf", e.pdf, out, "--key", e.sign_key, "--cert", e.sign_cert],
        "token csr --out": ["token", "csr", "--key", e.token_key, "--subject", "CN=out token", "--out", out],
        "token renew --out": ["token", "renew", "--key", e.token_key, "--rekey", "--subject", "CN=out token",
                              "--out", out],
        "token enroll --csr-out": ["token", "enroll", "--token", TOKEN, "--label", f"enr-{uuid.uuid4().hex[:6]}",
                                   "--type", "ec-p256", "--subject", "CN=out.example.cn", "--ca", e.ca,
                                   "--profile", "tls-server", "--csr-out", out],
        "ca export --out": ["ca", "export", e.ca, "--out", out],
        "cert export --out": ["cert", "export", e.serial, "--out", out],
        "crl generate --out": ["crl", "generate", "--ca", e.ca, "--out", out],
        "crl generate --out-dir": ["crl", "generate", "--ca", e.ca, "--out-dir", out],
        "ca create-sub --csr-out": ["ca", "create-sub", sub, "--csr-out", out, "--subject", f"CN={sub}",
                                    "--key-type", "ec-p256"],
    }


COMMANDS = list(_commands(Env(*[None] * 10), Path("x")))
DIR_OPTIONS = {"issue-batch --out-dir", "crl generate --out-dir"}


def _refused(e: Env, cmd: str, out: Path, code: int, *needles: str) -> None:
    db, objects, keys = e.db_state(), e.token_objects(), sorted((e.dir / "home" / "keys").iterdir())
    p = e.run(*_commands(e, out)[cmd])
    assert p.returncode == code, p.stdout + p.stderr
    assert_one_line_error(p, *needles)
    assert p.stderr.startswith("unica: error:"), p.stderr
    assert e.db_state() == db, "the database changed"
    assert e.token_objects() == objects, "the token changed"
    assert sorted((e.dir / "home" / "keys").iterdir()) == keys, "a key file was made"


@pytest.mark.parametrize("cmd", COMMANDS)
def test_missing_directory_is_a_usage_error(env, cmd):
    missing = env.dir / f"missing-{uuid.uuid4().hex[:6]}"
    out = missing if cmd in DIR_OPTIONS else missing / "sub" / "out.pem"
    _refused(env, cmd, out, 2, "does not exist")
    assert not missing.exists(), "a directory was created"


@pytest.mark.parametrize("cmd", sorted(set(COMMANDS) - DIR_OPTIONS))
def test_directory_as_output_file(env, cmd):
    d = env.dir / f"a-dir-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    _refused(env, cmd, d, 2, "directory")
    assert list(d.iterdir()) == []


@pytest.mark.parametrize("cmd", COMMANDS)
def test_unwritable_place(env, cmd):
    out = UNWRITABLE_PARENT if cmd in DIR_OPTIONS else UNWRITABLE_PARENT / f"unica-{uuid.uuid4().hex[:6]}.pem"
    _refused(env, cmd, out, 1, "cannot create files", str(UNWRITABLE_PARENT))


def test_file_where_a_directory_is_expected(env):
    f = env.dir / f"plain-{uuid.uuid4().hex[:6]}"
    f.write_text("x")
    _refused(env, "issue --out", f / "out.pem", 2, "not a directory")
    _refused(env, "crl generate --out-dir", f, 2, "not a directory")


def test_crl_is_never_renamed_over_a_special_file(env):
    # the CRL is renamed into place: as root that would replace the device node /dev/full
    _refused(env, "crl generate --out", Path("/dev/full"), 2, "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_issue_batch_refuses_two_requests_for_one_file(env):
    other = env.dir / f"again-{uuid.uuid4().hex[:4]}"
    other.mkdir()
    twin = other / env.csr.name
    twin.write_bytes(env.csr.read_bytes())
    out = env.dir / f"batch-{uuid.uuid4().hex[:6]}"
    out.mkdir()
    db = env.db_state()
    p = env.run("issue-batch", "--ca", env.ca, "--profile", "tls-server", "--out-dir", out, env.csr, twin)
    assert p.returncode == 2
    assert_one_line_error(p, "would both be written to")
    assert env.db_state() == db


# --- a write that fails after the certificate is committed ---------------------------------


def test_issue_write_fails_after_commit_names_the_serial(env):
    before = env.db_state()[0]
    p = env.run("issue", "--ca", env.ca, "--profile", "tls-server", "--csr", env.csr, "--no-lint",
                "--out", "/dev/full")
    assert p.returncode == 1, p.stdout + p.stderr  # an operational failure, not 70 "internal error"
    assert_one_line_error(p, "issued", "stored", "no space left on device")
    assert "internal error" not in p.stderr
    assert env.db_state()[0] == before + 1  # it was committed, and the message says so
    m = re.search(r"certificate serial ([0-9a-f]+) was issued by CA (\S+) and stored", p.stderr)
    assert m and m.group(2) == env.ca, p.stderr
    serial = m.group(1)
    hint = re.search(r"export again with: (unica cert export .*--out FILE)$", p.stderr.strip())
    assert hint, p.stderr
    assert hint.group(1) == f"unica cert export {serial} --ca {env.ca} --out FILE"
    # the hint works
    out = env.dir / f"again-{serial}.pem"
    env.ok(*hint.group(1).split()[1:-1], out)
    assert x509.load_pem_x509_certificate(out.read_bytes()).serial_number == int(serial, 16)


def test_issue_to_a_full_stdout_names_the_serial(env):
    before = env.db_state()[0]
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "unica", "issue", "--ca", env.ca, "--profile", "tls-server",
                            "--csr", str(env.csr), "--no-lint"], env={**os.environ, **env.env}, stdout=full,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    assert "internal error" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert re.search(r"certificate serial [0-9a-f]+ was issued by CA \S+ and stored, but cannot write to "
                     r"standard output: No space left on device; export again with: unica cert export", p.stderr)
    assert env.db_state()[0] == before + 1


def test_issue_json_with_out_reports_after_writing(env, tmp_path):
    out = tmp_path / "leaf.pem"
    p = env.ok("issue", "--ca", env.ca, "--profile", "tls-server", "--csr", env.csr, "--no-lint",
               "--out", out, "--json")
    rep = json.loads(p.stdout)
    assert rep["out"] == str(out) and rep.get("pem") is None  # --json leaves out what has no value
    assert x509.load_pem_x509_certificate(out.read_bytes()).serial_number == int(rep["serial"], 16)


# --- atomic replacement ----------------------------------------------------------------------


def _leftovers(d: Path, name: str) -> list:
    return [p.name for p in d.iterdir() if p.name != name]


def test_export_replaces_an_existing_file_atomically(env, tmp_path):
    """A reader polling the file while it is rewritten (two different certificates in turn)
    only ever sees one of them whole; no temporary file is left; mode 0644."""
    second = json.loads(env.ok("issue", "--ca", env.ca, "--profile", "tls-server", "--csr", env.csr,
                               "--no-lint", "--json").stdout)["serial"]
    contents = {env.ok("cert", "export", s).stdout for s in (env.serial, second)}
    assert len(contents) == 2
    out = tmp_path / "cert.pem"
    out.write_text("old content\n")
    contents.add("old content\n")
    seen, bad, stop = set(), [], threading.Event()

    def reader():
        while not stop.is_set():
            text = out.read_text()
            if text in contents:
                seen.add(text)
            else:
                bad.append(text)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        for i in range(6):
            env.ok("cert", "export", (env.serial, second)[i % 2], "--out", out)
    finally:
        stop.set()
        t.join(10)
    assert not bad, f"a reader saw a partial file: {bad[0]!r}"
    assert len(seen) >= 2
    assert out.read_text() == env.ok("cert", "export", second).stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o644 & ~_umask()
    assert _leftovers(tmp_path, "cert.pem") == []


def test_failed_pdf_signature_leaves_dst_as_it_was(env, tmp_path):
    not_pdf = tmp_path / "not.pdf"
    not_pdf.write_bytes(b"%PDF-1.7\nthis is no PDF\n")
    dst = tmp_path / "dst.pdf"
    dst.write_bytes(b"the previous signed PDF")
    p = env.run("sign", "pdf", not_pdf, dst, "--key", env.sign_key, "--cert", env.sign_cert)
    assert p.returncode == 2, p.stdout + p.stderr
    assert_one_line_error(p, "not a readable PDF")
    assert dst.read_bytes() == b"the previous signed PDF"
    assert sorted(_leftovers(tmp_path, "dst.pdf")) == ["not.pdf"]


def test_outputs_are_written_and_nothing_else_is_left(env, tmp_path):
    """The happy paths through the new writer: every command still writes what it did."""
    d = tmp_path
    env.ok("issue", "--ca", env.ca, "--profile", "tls-server", "--csr", env.csr, "--no-lint", "--out", d / "i.pem")
    (d / "batch").mkdir()
    env.ok("issue-batch", "--ca", env.ca, "--profile", "tls-server", "--no-lint", "--out-dir", d / "batch", env.csr)
    env.ok("sign", "cms", env.data, "--key", env.sign_key, "--cert", env.sign_cert, "--out", d / "s.p7s")
    env.ok("sign", "pdf", env.pdf, d / "s.pdf", "--key", env.sign_key, "--cert", env.sign_cert)
    env.ok("token", "csr", "--key", env.token_key, "--subject", "CN=out token", "--out", d / "t.csr")
    env.ok("ca", "export", env.ca, "--out", d / "ca.pem")
    env.ok("cert", "export", env.serial, "--out", d / "c.pem")
    env.ok("crl", "generate", "--ca", env.ca, "--out", d / "ca.crl")
    sub = f"pending-{uuid.uuid4().hex[:6]}"
    env.ok("ca", "create-sub", sub, "--csr-out", d / "sub.csr", "--subject", f"CN={sub}", "--key-type", "ec-p256")
    assert sorted(p.name for p in d.iterdir()) == ["batch", "c.pem", "ca.crl", "ca.pem", "i.pem", "s.p7s",
                                                     "s.pdf", "sub.csr", "t.csr"]
    assert [p.name for p in (d / "batch").iterdir()] == [env.csr.stem + ".pem"]
    x509.load_pem_x509_certificate((d / "i.pem").read_bytes())
    x509.load_pem_x509_csr((d / "t.csr").read_bytes())
    x509.load_pem_x509_csr((d / "sub.csr").read_bytes())
    x509.load_der_x509_crl((d / "ca.crl").read_bytes())
    assert (d / "s.pdf").read_bytes().startswith(b"%PDF")
    # '-' is standard output
    p = env.ok("cert", "export", env.serial, "--out", "-")
    assert p.stdout == (d / "c.pem").read_text()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# --- the helper itself -------------------------------------------------------------------------


def test_atomic_output_failure_keeps_the_old_file(tmp_path):
    from unica.cli.output import atomic_output, write_atomic

    f = tmp_path / "f"
    f.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(f) as out:
            out.write(b"new, half written")
            raise RuntimeError("the work failed")
    assert f.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
    write_atomic(f, "neu: 新", mode=0o600)
    assert f.read_bytes() == "neu: 新".encode()
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_atomic_output_through_a_symlink_keeps_the_link(tmp_path):
    from unica.cli.output import write_atomic

    real = tmp_path / "real.pem"
    real.write_text("old")
    link = tmp_path / "link.pem"
    link.symlink_to(real)
    write_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_write_to_dev_full_is_an_output_error():
    from unica.cli.output import check_output_path, write_atomic
    from unica.errors import OutputError

    check_output_path("/dev/full")  # a writable special file passes the check ...
    with pytest.raises(OutputError, match="No space left on device"):
        write_atomic("/dev/full", b"x" * 10)  # ... and the write fails, named
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # written in place, never replaced
