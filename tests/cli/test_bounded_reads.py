"""Every file the ``unica`` CLI reads is read with a bound (issue #10, finding 11).

Each command that reads a file, pipe or stdin is run as the real binary on:

* ``/dev/zero`` (endless, not a regular file),
* a FIFO a writer thread feeds with zeros until the reader goes away,
* ``-`` with an endless standard input (where the command takes ``-``),
* a sparse regular file one byte over the limit,

under ``RLIMIT_AS`` = 1 GiB (an unbounded read dies of MemoryError instead of eating the
machine) and a timeout (an unbounded *streaming* read never ends). Each run must end with
exit 2 and one line ``unica: error: ... larger than N bytes`` on stderr, no traceback. For the
FIFO the writer must have got more than N bytes into the pipe: the read really happened (a
command that refused earlier for another reason would leave them in the pipe buffer).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from unica.boundedio import (MAX_CERTIFICATE, MAX_CRL, MAX_CSR, MAX_DATA, MAX_OCSP_RESPONSE, MAX_PDF,
                             MAX_PUBLIC_KEY, MAX_SIGNATURE, MAX_TEXT)

GiB = 1 << 30
PASSPHRASE = "bounded-reads-passphrase"
TIMEOUT = 120
PIPE_CHUNK = 64 * 1024  # the writer counts whole chunks: unread, at most a pipe buffer (64 KiB) gets in


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (GiB, GiB))


def run_bounded(args, *, env: dict, stdin=subprocess.DEVNULL, cwd=None) -> subprocess.CompletedProcess:
    """The real ``unica`` in a child limited to 1 GiB of address space."""
    full = dict(os.environ)
    full.update(env)
    return subprocess.run([sys.executable, "-m", "unica", *map(str, args)], env=full, stdin=stdin,
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, preexec_fn=_limit_memory)


class FifoFeeder:
    """A FIFO whose writer pushes zeros in 64 KiB chunks until the reader closes it."""

    def __init__(self, path: Path):
        self.path = path
        os.mkfifo(path)
        self.written = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        fd = None
        while fd is None and not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                time.sleep(0.01)
        if fd is None:
            return
        os.set_blocking(fd, True)
        chunk = bytes(PIPE_CHUNK)
        try:
            while not self._stop.is_set():
                os.write(fd, chunk)
                self.written += len(chunk)
        except BrokenPipeError:
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        self._stop.set()
        # a writer blocked in write() on a pipe nobody reads: open and drain it so it can see the stop
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                deadline = time.monotonic() + 5
                while self._t.is_alive() and time.monotonic() < deadline:
                    with contextlib.suppress(BlockingIOError):
                        os.read(fd, 1 << 20)
                    time.sleep(0.001)
            finally:
                os.close(fd)
        self._t.join(5)


# --- the environment the commands need ---------------------------------------------------


@dataclass
class Env:
    dir: Path
    env: dict
    ca: str
    root: Path  # trust anchor (tests.verify.pki)
    inter: Path
    leaf: Path
    crl: Path
    ocsp: Path
    sig: Path  # detached CMS over data
    data: Path
    pdf: Path  # signed PDF
    blank_pdf: Path
    sign_key: str  # file: URI of a software key
    sign_cert: Path  # its (self-signed) certificate
    public_key: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    from tests.verify.pki import PKI, blank_pdf, make_crl, make_ocsp, pyhanko_sign, pyhanko_sign_pdf

    d = tmp_path_factory.mktemp("bounded")
    home = d / "home"
    e_run = {"UNICA_HOME": str(home), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DEBUG": ""}

    def ok(*args):
        p = run_bounded(args, env=e_run)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    # a database with a CA: issue / issue-batch / ca import-cert find what they need
    ok("init")
    ok("ca", "create-root", "bounded-root", "--subject", "C=CN,O=有界读取,CN=bounded root", "--key-type", "ec-p256")
    ok("ca", "create-sub", "bounded-pending", "--csr-out", d / "pending.csr", "--subject",
       "C=CN,O=有界读取,CN=bounded pending sub", "--key-type", "ec-p256")

    pki = PKI()
    (d / "root.pem").write_bytes(pki.root.pem)
    (d / "inter.pem").write_bytes(pki.inter.pem)
    (d / "leaf.pem").write_bytes(pki.signer.pem)
    (d / "inter.crl").write_bytes(make_crl(pki.inter).public_bytes(serialization.Encoding.DER))
    (d / "leaf.ocsp").write_bytes(make_ocsp(pki.signer.cert, pki.inter, pki.responder))
    (d / "data.bin").write_bytes(b"bounded data")
    (d / "sig.p7s").write_bytes(pyhanko_sign(pki, pki.signer, b"bounded data"))
    (d / "signed.pdf").write_bytes(pyhanko_sign_pdf(pki, pki.signer, blank_pdf()))
    (d / "blank.pdf").write_bytes(blank_pdf())
    (d / "batch-out").mkdir()  # issue-batch --out-dir must exist (unica creates no directories)
    (d / "pub.pem").write_bytes(pki.root.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    # a software signing key and a certificate for it (sign cms / sign pdf)
    key_path = d / "signer.key"
    ok("key", "generate", f"file:{key_path}", "--type", "ec-p256")
    key = serialization.load_pem_private_key(key_path.read_bytes(), PASSPHRASE.encode())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bounded signer")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), True)
            .sign(key, hashes.SHA256()))
    (d / "signer.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Env(dir=d, env=e_run, ca="bounded-root", root=d / "root.pem", inter=d / "inter.pem",
               leaf=d / "leaf.pem", crl=d / "inter.crl", ocsp=d / "leaf.ocsp", sig=d / "sig.p7s",
               data=d / "data.bin", pdf=d / "signed.pdf", blank_pdf=d / "blank.pdf",
               sign_key=f"file:{key_path}", sign_cert=d / "signer.pem", public_key=d / "pub.pem")


# --- the commands, each with the input under test as BAD ------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    build: object  # (Env, bad path) -> argv
    limit: int
    stdin: bool = False  # the input takes '-'


def _verify(sub, *, at="main"):
    """verify SUB with BAD as the main input (at="main") or as one of the shared options."""

    def build(e: Env, bad):
        good_main = {"cert": e.leaf, "cms": e.sig, "pdf": e.pdf}[sub]
        args = ["verify", sub, bad if at == "main" else good_main]
        trust = bad if at == "--trust" else e.root
        args += ["--trust", trust, "--untrusted", bad if at == "--untrusted" else e.inter, "--offline",
                 "--revocation", "hard-fail"]
        args += ["--crl", bad if at == "--crl" else e.crl]
        args += ["--ocsp-response", bad if at == "--ocsp-response" else e.ocsp]
        if sub == "cms":
            args += ["--data", bad if at == "--data" else e.data]
        return args

    return build


CASES = [
    Case("verify-cert-FILE", _verify("cert"), MAX_CERTIFICATE, stdin=True),
    Case("verify-cms-SIG", _verify("cms"), MAX_SIGNATURE, stdin=True),
    Case("verify-cms-data", _verify("cms", at="--data"), MAX_DATA, stdin=True),
    Case("verify-pdf-FILE", _verify("pdf"), MAX_PDF, stdin=True),
    *[Case(f"verify-{sub}{opt}", _verify(sub, at=opt), limit)
      for sub in ("cert", "cms", "pdf")
      for opt, limit in (("--trust", MAX_CERTIFICATE), ("--untrusted", MAX_CERTIFICATE), ("--crl", MAX_CRL),
                         ("--ocsp-response", MAX_OCSP_RESPONSE))],
    Case("issue-csr", lambda e, bad: ["issue", "--ca", e.ca, "--profile", "enterprise-auth", "--csr", bad,
                                      "--out", e.dir / "never.pem"], MAX_CSR, stdin=True),
    Case("issue-batch-CSR", lambda e, bad: ["issue-batch", "--ca", e.ca, "--profile", "enterprise-auth",
                                            "--out-dir", e.dir / "batch-out", bad], MAX_CSR),
    Case("profile-check", lambda e, bad: ["profile", "check", bad], MAX_TEXT),
    Case("ca-import-cert", lambda e, bad: ["ca", "import-cert", "bounded-pending", bad], MAX_CERTIFICATE),
    Case("audit-verify-public-key", lambda e, bad: ["audit", "verify", "--public-key", bad], MAX_PUBLIC_KEY),
    Case("token-import-cert-FILE", lambda e, bad: ["token", "import-cert", "--token", "unica-test", bad],
         MAX_CERTIFICATE),
    Case("token-import-cert-chain", lambda e, bad: ["token", "import-cert", "--token", "unica-test", e.root,
                                                    "--chain", bad], MAX_CERTIFICATE),
    Case("sign-cms-FILE", lambda e, bad: ["sign", "cms", bad, "--key", e.sign_key, "--cert", e.sign_cert,
                                          "--out", e.dir / "never.p7s"], MAX_DATA),
    Case("sign-cms-FILE-attached", lambda e, bad: ["sign", "cms", bad, "--attached", "--key", e.sign_key,
                                                   "--cert", e.sign_cert, "--out", e.dir / "never.p7s"], MAX_DATA),
    Case("sign-cms-cert", lambda e, bad: ["sign", "cms", e.data, "--key", e.sign_key, "--cert", bad,
                                          "--out", e.dir / "never.p7s"], MAX_CERTIFICATE),
    Case("sign-cms-chain", lambda e, bad: ["sign", "cms", e.data, "--key", e.sign_key, "--cert", e.sign_cert,
                                           "--chain", bad, "--out", e.dir / "never.p7s"], MAX_CERTIFICATE),
    Case("sign-pdf-SRC", lambda e, bad: ["sign", "pdf", bad, e.dir / "never.pdf", "--key", e.sign_key,
                                         "--cert", e.sign_cert], MAX_PDF),
    Case("sign-pdf-cert", lambda e, bad: ["sign", "pdf", e.blank_pdf, e.dir / "never.pdf", "--key", e.sign_key,
                                          "--cert", bad], MAX_CERTIFICATE),
]


def _assert_refused(p: subprocess.CompletedProcess, limit: int) -> None:
    err = p.stderr.strip()
    assert p.returncode == 2, f"exit {p.returncode}: {p.stdout}{p.stderr}"
    assert "Traceback" not in err and "MemoryError" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("unica: error:"), err
    assert f"larger than {limit} bytes" in err, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_dev_zero(env, case):
    p = run_bounded(case.build(env, "/dev/zero"), env=env.env)
    _assert_refused(p, case.limit)
    assert "/dev/zero" in p.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fifo_fed_forever(env, case, tmp_path):
    feeder = FifoFeeder(tmp_path / "endless.fifo")
    try:
        p = run_bounded(case.build(env, feeder.path), env=env.env)
    finally:
        feeder.close()
    _assert_refused(p, case.limit)
    # more than the limit went into the pipe: the command read it (not refused for another reason)
    assert feeder.written > case.limit, (feeder.written, case.limit)


@pytest.mark.parametrize("case", [c for c in CASES if c.stdin], ids=[c.id for c in CASES if c.stdin])
def test_endless_stdin(env, case):
    with open("/dev/zero", "rb") as zero:
        p = run_bounded(case.build(env, "-"), env=env.env, stdin=zero)
    _assert_refused(p, case.limit)
    assert "standard input" in p.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_oversized_regular_file(env, case, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:  # sparse: costs no disk
        f.truncate(case.limit + 1)
    p = run_bounded(case.build(env, big), env=env.env)
    _assert_refused(p, case.limit)
    assert str(big) in p.stderr


def test_file_at_the_limit_is_read(env, tmp_path):
    """Exactly the limit is not "larger": the read succeeds and the content is judged (here:
    zeros are no certificate), so the bound is not off by one."""
    f = tmp_path / "limit.bin"
    with open(f, "wb") as fh:
        fh.truncate(MAX_CSR)
    p = run_bounded(["issue", "--ca", env.ca, "--profile", "enterprise-auth", "--csr", f], env=env.env)
    assert p.returncode == 2 and "larger than" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("unica: error:"), p.stderr


def test_max_data_size_option_and_env(env, tmp_path):
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 2048)
    for args, extra_env in (
        (["verify", "cms", env.sig, "--data", small, "--max-data-size", "1K", "--trust", env.root], {}),
        (["verify", "cms", env.sig, "--data", small, "--trust", env.root], {"UNICA_MAX_DATA_SIZE": "1K"}),
        (["sign", "cms", small, "--key", env.sign_key, "--cert", env.sign_cert, "--max-data-size", "1KiB",
          "--out", tmp_path / "s.p7s"], {}),
    ):
        p = run_bounded(args, env={**env.env, **extra_env})
        _assert_refused(p, 1024)
    assert not (tmp_path / "s.p7s").exists()
    p = run_bounded(["verify", "cms", env.sig, "--data", small, "--max-data-size", "lots", "--trust", env.root],
                    env=env.env)
    assert p.returncode == 2 and p.stderr.startswith("unica: error: bad size 'lots'"), p.stderr


def test_signing_under_the_data_limit_still_works(env, tmp_path):
    out = tmp_path / "ok.p7s"
    p = run_bounded(["sign", "cms", env.data, "--key", env.sign_key, "--cert", env.sign_cert, "--out", out,
                     "--max-data-size", "1K"], env=env.env)
    assert p.returncode == 0, p.stderr
    assert out.stat().st_size > 0


# --- files the commands read on their own: config.toml, operator profiles, secrets, keys ------


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "oversized"])
def test_config_toml(tmp_path, kind):
    home = tmp_path / "home"
    home.mkdir()
    cfg = home / "config.toml"
    feeder = None
    if kind == "dev-zero":
        cfg.symlink_to("/dev/zero")
    elif kind == "fifo":
        feeder = FifoFeeder(cfg)
    else:
        with open(cfg, "wb") as f:
            f.truncate(MAX_TEXT + 1)
    try:
        p = run_bounded(["ca", "list"], env={"UNICA_HOME": str(home)})
    finally:
        if feeder:
            feeder.close()
    _assert_refused(p, MAX_TEXT)
    assert "config" in p.stderr
    if feeder:
        assert feeder.written > MAX_TEXT


def test_operator_profile_oversized(tmp_path):
    home = tmp_path / "home"
    (home / "profiles").mkdir(parents=True)
    with open(home / "profiles" / "huge.toml", "wb") as f:
        f.truncate(MAX_TEXT + 1)
    for args in (["profile", "show", "huge"], ["profile", "list"]):
        p = run_bounded(args, env={"UNICA_HOME": str(home)})
        _assert_refused(p, MAX_TEXT)
        assert "huge.toml" in p.stderr


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_secret_and_key_files(env, tmp_path, kind):
    """--pin-file / --passphrase-file and file: key URIs were bounded before (4 KiB secrets,
    64 KiB key files); they stay so. A key file that is too large is a corrupt key (exit 1)."""
    feeder = FifoFeeder(tmp_path / "endless.fifo") if kind == "fifo" else None
    bad = feeder.path if feeder else Path("/dev/zero")
    try:
        p = run_bounded(["key", "show", env.sign_key, "--passphrase-file", bad], env=env.env)
    finally:
        if feeder:
            feeder.close()
    assert p.returncode == 2 and "too large" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("unica: error:"), p.stderr
    feeder = FifoFeeder(tmp_path / "endless2.fifo") if kind == "fifo" else None
    bad = feeder.path if feeder else Path("/dev/zero")
    try:
        p = run_bounded(["key", "show", f"file:{bad}"], env=env.env)
    finally:
        if feeder:
            feeder.close()
    assert p.returncode == 1 and "too large" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("unica: error:"), p.stderr


# --- the library: unica.verify reads paths through the same bound -----------------------------


def test_library_read_bytes_is_bounded(tmp_path):
    from unica.errors import MalformedInput, VerificationError
    from unica.verify._util import read_bytes

    with pytest.raises(MalformedInput, match=r"^CRL /dev/zero: larger than \d+ bytes$"):
        read_bytes("/dev/zero", "CRL")
    with pytest.raises(VerificationError, match="cannot read"):
        read_bytes(tmp_path / "missing", "CRL")
    f = tmp_path / "ok.bin"
    f.write_bytes(b"abc")
    assert read_bytes(f, "certificate") == (b"abc", f"certificate {f}")
    assert read_bytes(b"abc", "certificate") == (b"abc", "certificate")


def test_read_limited_reads_at_most_limit_plus_one(tmp_path):
    import io

    from unica.boundedio import LimitedReader, parse_size, read_limited
    from unica.errors import MalformedInput

    class Counting(io.RawIOBase):
        def __init__(self):
            self.n = 0

        def readable(self):
            return True

        def readinto(self, b):
            self.n += len(b)
            b[:] = bytes(len(b))
            return len(b)

    src = Counting()
    with pytest.raises(MalformedInput, match="larger than 5000000 bytes"):
        read_limited(src, 5_000_000, "thing")
    assert src.n == 5_000_001
    assert read_limited(io.BytesIO(b"x" * 10), 10, "thing") == b"x" * 10
    with pytest.raises(MalformedInput):
        read_limited(io.BytesIO(b"x" * 11), 10, "thing")
    r = LimitedReader(io.BytesIO(b"y" * 100), 99, "stream")
    with pytest.raises(MalformedInput, match="stream .*larger than 99 bytes"):
        while r.read(7):
            pass
    r = LimitedReader(io.BytesIO(b"y" * 99), 99, "stream")
    assert b"".join(iter(lambda: r.read(7), b"")) == b"y" * 99
    assert parse_size("64K") == 65536 and parse_size("256MiB") == 256 << 20 and parse_size("10") == 10
    for bad in ("", "0", "-1", "1X", "1.5G", "Mi"):
        with pytest.raises(Exception, match="bad size"):
            parse_size(bad)
