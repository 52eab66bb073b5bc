"""Shared fixtures: a per-run SoftHSM2 token store, the CLI as a user runs it, PostgreSQL.

Every test run gets its own ``SOFTHSM2_CONF`` and token directory (made before any test
loads the PKCS#11 module, because SoftHSM2 reads its configuration when it is
initialised). Two tokens are ready: ``unica-test`` and ``unica-aux``, with the user
PIN in ``UNICA_PIN`` and the SO PIN in ``UNICA_SO_PIN``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TEST_PIN = "4826-user"
TEST_SO_PIN = "9173-so-officer"
TOKENS = ("unica-test", "unica-aux")  # neither a prefix of the other: OpenSC matches --token-label by prefix
PG_BIN = Path("/usr/lib/postgresql/15/bin")

_RUN_DIR = Path(tempfile.mkdtemp(prefix="unica-test-"))


def softhsm_init_token(label: str, pin: str = TEST_PIN, so_pin: str = TEST_SO_PIN) -> None:
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
        check=True,
        capture_output=True,
    )


def pytest_configure(config: pytest.Config) -> None:
    tokendir = _RUN_DIR / "tokens"
    tokendir.mkdir(parents=True, exist_ok=True)
    conf = _RUN_DIR / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    os.environ["UNICA_PKCS11_MODULE"] = SOFTHSM_MODULE
    os.environ["UNICA_PIN"] = TEST_PIN
    os.environ["UNICA_SO_PIN"] = TEST_SO_PIN
    os.environ.pop("UNICA_PASSPHRASE", None)
    os.environ.pop("UNICA_DB", None)
    os.environ["UNICA_HOME"] = str(_RUN_DIR / "default-home")
    if shutil.which("softhsm2-util") and Path(SOFTHSM_MODULE).exists():
        for label in TOKENS:
            softhsm_init_token(label)


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Tests marked ``slow`` (the long variants: repeats, the other database, the 10,000-chain
    differential run) are skipped unless asked for: ``-m slow`` or ``UNICA_SLOW_TESTS=1``. CI runs
    the rest; docs/testing.md lists the slow ones and when they are run."""
    if "slow" in (config.getoption("-m") or "") or os.environ.get("UNICA_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or UNICA_SLOW_TESTS=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


# --- pytest-xdist (setup.cfg runs the suite on 2 workers, one test file at a time) -----------
# Each worker is its own process: it imports this file, so it has its own _RUN_DIR, token store,
# SOFTHSM2_CONF, UNICA_HOME and PostgreSQL cluster; the controller makes (and removes) one too
# but runs no test in it.

#: directories whose test files must run on one worker, one after the other (not one file per
#: work unit): tests/fuzz/test_zz_budget.py counts the inputs of every fuzz file in its process.
ONE_WORKER_DIRS = ("tests/fuzz/",)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadfile``, except that each of ONE_WORKER_DIRS is a single work unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            for d in ONE_WORKER_DIRS:
                if nodeid.startswith(d):
                    return d
            return super()._split_scope(nodeid)

    return Scheduling(config, log)


_WORKER_SECTIONS: list = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """A worker finished: keep the summary sections it could not print (e.g. "fuzz inputs")."""
    _WORKER_SECTIONS.extend(getattr(node, "workeroutput", None) and node.workeroutput.get("summary_sections") or ())


def pytest_terminal_summary(terminalreporter) -> None:
    for title, lines in _WORKER_SECTIONS:
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def run_dir() -> Path:
    """The per-run scratch directory (holds the SoftHSM2 token store)."""
    return _RUN_DIR


@pytest.fixture(scope="session")
def token_label() -> str:
    return TOKENS[0]


@pytest.fixture
def unica_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh UNICA_HOME for this test (no database yet)."""
    home = tmp_path / "unica-home"
    monkeypatch.setenv("UNICA_HOME", str(home))
    monkeypatch.delenv("UNICA_DB", raising=False)
    return home


def run_unica(*args: str, env: dict[str, str] | None = None, input: str | None = None,
              cwd: str | Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the ``unica`` CLI in a subprocess, as an operator would."""
    full_env = dict(os.environ)
    if env:
        for k, v in env.items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
    return subprocess.run(
        [sys.executable, "-m", "unica", *args],
        env=full_env,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def unica():
    """``unica(*args, env=..., input=...)`` runs the CLI in a subprocess."""
    return run_unica


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """A failed CLI run: non-zero exit, one line on stderr naming the problem, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("unica: error:"), err
    for needle in needles:
        assert needle.lower() in err.lower(), err


# --- PostgreSQL ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A throwaway PostgreSQL 15 cluster under /tmp on a free port (or UNICA_TEST_PG_URL).

    Skips when neither is available; CI (CI=true) fails instead of skipping.
    """
    url = os.environ.get("UNICA_TEST_PG_URL")
    if url:
        yield url
        return
    if not (PG_BIN / "initdb").exists():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL 15 is not installed (needed by the store tests in CI)")
        pytest.skip("PostgreSQL 15 is not installed")
    base = Path(tempfile.mkdtemp(prefix="unica-pg-"))
    data = base / "data"
    port = _free_port()
    as_postgres = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True)
    subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"),
                    "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
                   check=True, capture_output=True)
    try:
        for _ in range(50):
            if subprocess.run([str(PG_BIN.parent / "bin" / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c",
                        "CREATE DATABASE unica_test"], check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/unica_test"
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
