"""One exit-code mapping for every command (issue #11, item 4), run on the real ``unica``
binary: a usage error is exit 2 and one line ``unica: error: ...`` (no click "Usage:" block,
no traceback); the environment refusing (a read-only home, an address in use, a host that
does not resolve) is exit 1; 70 is left for bugs. No warning text reaches the operator, and
human output survives a terminal encoding that cannot show Chinese.

The walk enumerates every group and command from the click root, so a command added later is
checked without editing this file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest

from tests.conftest import run_unica
from tests.clitree import all_commands
from unica.cli.main import cli

PASSPHRASE = "exit-codes-passphrase-4"


COMMANDS = list(all_commands(cli))


def assert_usage_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, exactly one stderr line ``unica: error: ...``, nothing of click's usage block."""
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err)
    assert_one_error_line(err)
    for needle in needles:
        assert needle in err, err
    return err


def assert_one_error_line(err: str, *, after_progress: bool = False) -> None:
    """Exactly one line ``unica: error: ...`` (with ``after_progress``: the last of stderr, after the
    status lines a long-running command such as ``ocsp serve`` writes as it starts)."""
    lines = err.splitlines()
    if after_progress:
        assert lines and sum(line.startswith("unica: error: ") for line in lines) == 1, err
        lines = lines[-1:]
    assert len(lines) == 1, err
    assert lines[0].startswith("unica: error: "), err
    for noise in ("Traceback", "Usage:", "Try '", "Warning"):
        assert noise not in err, err


def _bad_value(param: click.Parameter) -> str | None:
    """A value the parameter's type refuses, or None when its type accepts any string."""
    t = param.type
    if isinstance(t, (click.types.IntParamType, click.types.FloatParamType)):  # IntRange / FloatRange too
        return "not-a-number"
    if isinstance(t, click.Choice):
        return "no-such-choice"
    return None


def _cases(path: tuple[str, ...], command: click.Command) -> list[tuple[str, list[str]]]:
    """(a) an unknown option; (b) nothing given where something is required; (c) the first option
    with a checked type given a bad value (required parameters filled with dummies); for a group,
    (d) an unknown subcommand."""
    cases = [("unknown option", [*path, "--no-such-option-x"])]
    if isinstance(command, click.Group):
        cases.append(("unknown command", [*path, "no-such-command-x"]))
        return cases
    if any(p.required for p in command.params):
        cases.append(("missing required", list(path)))
    typed = [(p, _bad_value(p)) for p in command.params if isinstance(p, click.Option) and not p.is_flag]
    typed = [(p, v) for p, v in typed if v is not None]
    if typed:
        param, bad = typed[0]
        dummies: list[str] = []
        for p in command.params:
            if p.required and isinstance(p, click.Argument):
                dummies.append("x")
            elif p.required and isinstance(p, click.Option) and p is not param:
                dummies += [p.opts[0], "x"]
        cases.append((f"bad {param.opts[0]}", [*path, *dummies, param.opts[0], bad]))
    return cases


def test_the_walk_finds_every_area():
    paths = {" ".join(p) for p, _ in COMMANDS}
    for expected in ("init", "ca create-root", "cert show", "ocsp serve", "token init", "verify pdf", "sign cms",
                     "cert revoke", "audit verify", "key generate", "profile check", "crl generate"):
        assert expected in paths
    assert len(paths) >= 50


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "unica" for p, _ in COMMANDS])
def test_every_command_reports_usage_errors_in_one_line_exit_2(path, command, tmp_path):
    env = {"UNICA_HOME": str(tmp_path / "never-created"), "UNICA_DB": None}
    cases = _cases(path, command)
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        procs = list(pool.map(lambda case: run_unica(*case[1], env=env, timeout=120), cases))
    for (what, args), proc in zip(cases, procs):
        try:
            err = assert_usage_error(proc)
        except AssertionError as e:
            raise AssertionError(f"{what}: unica {' '.join(args)}: {e}") from None
        if what == "unknown option":
            assert "--no-such-option-x" in err
        if path:  # the line names the command it is about
            assert f"{' '.join(path)}: " in err and f"'unica {' '.join(path)} --help'" in err, err
    assert not (tmp_path / "never-created").exists()  # parsing failed before any command ran


# --- targeted cases -------------------------------------------------------------------


@pytest.mark.parametrize("args,needle", [
    (["--workers", "0"], "'--workers': 0 is not in the range x>=1"),
    (["--workers", "-3"], "'--workers': -3 is not in the range x>=1"),
    (["--port", "99999"], "'--port': 99999 is not in the range 0<=x<=65535"),
    (["--port", "-1"], "'--port'"),
    (["--poll-interval", "0"], "'--poll-interval'"),
    (["--refresh-interval", "-5"], "'--refresh-interval'"),
    (["--prefix", "ocsp"], "'--prefix': 'ocsp' must start and end with '/'"),
])
def test_ocsp_serve_out_of_range_options_are_usage_errors(args, needle, tmp_path):
    proc = run_unica("ocsp", "serve", *args, env={"UNICA_HOME": str(tmp_path / "h"), "UNICA_DB": None})
    err = assert_usage_error(proc, needle)
    assert err.startswith("unica: error: ocsp serve: ")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> dict:
    """A home with one root CA (key in an encrypted file), its subject in Chinese."""
    h = tmp_path_factory.mktemp("exit-codes") / "home"
    env = {"UNICA_HOME": str(h), "UNICA_DB": None, "UNICA_PASSPHRASE": PASSPHRASE}
    for args in (["init"], ["ca", "create-root", "zh-root", "--subject", "C=CN,O=统一测试根,CN=中文根",
                            "--key-type", "ec-p256"]):
        p = run_unica(*args, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
    return env


def _serve(home: dict, *args: str) -> subprocess.CompletedProcess:
    return run_unica("ocsp", "serve", "--ca", "zh-root", "--no-signer-keys", *args, env=home, timeout=120)


def test_ocsp_serve_unresolvable_host_is_exit_1(home):
    proc = _serve(home, "--host", "no-such-host.invalid", "--port", "0")
    assert proc.returncode == 1, proc.stderr
    assert_one_error_line(proc.stderr, after_progress=True)
    assert "cannot resolve host 'no-such-host.invalid'" in proc.stderr


def test_ocsp_serve_port_in_use_is_exit_1(home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):  # 2: the SO_REUSEPORT socket does not share with a plain listener
            proc = _serve(home, "--port", str(port), "--workers", workers)
            assert proc.returncode == 1, proc.stderr
            assert_one_error_line(proc.stderr, after_progress=True)
            assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr


def _init_fails_with_1(home_dir: str, reason: str, wrap: list[str] | None = None) -> None:
    env = dict(os.environ, UNICA_HOME=home_dir)
    env.pop("UNICA_DB", None)
    proc = subprocess.run([*(wrap or []), sys.executable, "-m", "unica", "init"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert_one_error_line(proc.stderr)
    assert f"cannot create unica home {home_dir}: {reason}" in proc.stderr, proc.stderr


def test_init_where_a_file_is_is_exit_1(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    _init_fails_with_1(str(tmp_path / "file" / "home"), "Not a directory")


def test_init_under_proc_is_exit_1():
    _init_fails_with_1("/proc/unica-no-such/home", "No such file or directory")


def test_init_on_a_read_only_file_system_is_exit_1(tmp_path):
    """EROFS for real: the test directory bind-mounted read-only in a private mount namespace
    (tests run as root, for whom chmod 0555 refuses nothing)."""
    if not (shutil.which("unshare") and shutil.which("mount")):
        pytest.skip("unshare / mount not available")
    ro = tmp_path / "ro"
    ro.mkdir()
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "--bind", "-o", "ro",
                            str(ro), str(ro)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount here: {probe.stderr.decode(errors='replace').strip()}")
    home_dir = str(ro / "home")
    env = dict(os.environ, UNICA_HOME=home_dir)
    env.pop("UNICA_DB", None)
    script = f'mount --bind -o ro "{ro}" "{ro}" && exec "{sys.executable}" -m unica init'
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert_one_error_line(proc.stderr)
    assert f"cannot create unica home {home_dir}: Read-only file system" in proc.stderr
    assert not (ro / "home").exists()


def test_ten_thousand_character_cn_in_subject_is_one_clean_line_exit_2(home):
    proc = run_unica("ca", "create-root", "long-cn", "--subject", "C=CN,O=T,CN=" + "a" * 10_000,
                     "--key-type", "ec-p256", env=home)
    err = assert_usage_error(proc, "subject DN is 10012 characters long")
    assert len(err) < 300, err  # the 10,000 characters are not echoed back
    assert run_unica("ca", "show", "long-cn", env=home).returncode == 1  # nothing was created


def test_ten_thousand_character_cn_in_a_csr_is_malformed_exit_2(home, tmp_path):
    """cryptography only warns (UserWarning) about a CN beyond its bound when it parses a request:
    the warning must not print, the request is refused as malformed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    with pytest.warns(UserWarning, match="length"):  # what the operator must not see
        long_cn = x509.NameAttribute(NameOID.COMMON_NAME, "a" * 10_000, _validate=False)
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"), long_cn])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(ec.generate_private_key(ec.SECP256R1()),
                                                                          hashes.SHA256())
    path = tmp_path / "long-cn.csr"
    path.write_bytes(csr.public_bytes(Encoding.PEM))
    proc = run_unica("issue", "--ca", "zh-root", "--profile", "tls-server", "--csr", str(path), env=home)
    assert_usage_error(proc, "malformed subject")
    assert "UserWarning" not in proc.stderr


def test_latin1_terminal_does_not_crash_human_output(home):
    env = dict(os.environ, **{k: v for k, v in home.items() if v is not None}, PYTHONIOENCODING="latin-1")
    env.pop("UNICA_DB", None)
    for args in (["ca", "list"], ["ca", "show", "zh-root"]):
        proc = subprocess.run([sys.executable, "-m", "unica", *args], env=env, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode("latin-1")
        out = proc.stdout.decode("latin-1")
        assert "zh-root" in out and "\\u4e2d\\u6587\\u6839" in out, out  # 中文根, escaped, not a crash
        assert proc.stderr == b""
    # an error line naming Chinese text is escaped the same way
    proc = subprocess.run([sys.executable, "-m", "unica", "ca", "show", "无此"], env=env, capture_output=True,
                          timeout=120)
    assert proc.returncode != 70, proc.stderr
    assert_one_error_line(proc.stderr.decode("latin-1"))


@pytest.mark.parametrize("args,needle", [
    (["cert", "list", "--limit", "99999999999999999999999"], "'--limit'"),  # was OverflowError in SQLite: 70
    (["audit", "show", "--limit", "0"], "'--limit'"),
    (["ca", "create-root", "far", "--subject", "C=CN,O=T,CN=far", "--key-type", "ec-p256", "--validity", "99999y"],
     "longer than 100 years"),  # was OverflowError: date value out of range: 70
    (["cert", "list", "--expiring", "500y"], "longer than 100 years"),
])
def test_out_of_range_numbers_are_usage_errors_not_bugs(home, args, needle):
    assert_usage_error(run_unica(*args, env=home), needle)


@pytest.mark.parametrize("serial", ["00", "0", "-1", "zz"])
def test_cert_show_odd_serial_is_one_clean_line(home, serial):
    proc = run_unica("cert", "show", serial, env=home)
    assert proc.returncode in (1, 2), proc.stderr
    assert_one_error_line(proc.stderr)
