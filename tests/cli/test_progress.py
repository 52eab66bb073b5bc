"""Progress of long work (issue #11 item 12), through the real ``unica`` binary:

* stderr not a terminal (a pipe, a log): whole lines, never a carriage return, each with
  done/total, percentage, rate, and ETA or the total time -- for ``cert issue-batch``,
  ``cert revoke --serials-file`` and ``ocsp presign``; none for a run shorter than a few seconds
  (so an error stays one line), unless ``UNICA_PROGRESS=always``; none with ``UNICA_PROGRESS=never``;
* stderr a terminal (a pseudo-terminal): rich's bar, with the rate and ETA;
* nothing on stdout but the result (JSON stays parseable).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
import uuid

import pytest

from tests.ca.conftest import PASSPHRASE, openssl_csr
from tests.conftest import run_unica

LINE = re.compile(r"^(?P<label>.+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>[a-z ]+) \((?P<pct>\d+)%\), "
                  r"(?P<rate>[\d,]+)/s, (?:ETA [\d.]+ (?:s|min \d+ s|h \d+ min)|in [\d.]+ s|in .+)(?:; .*)?$")


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    d = tmp_path_factory.mktemp("progress")
    env = base = {"UNICA_HOME": str(d / "home"), "UNICA_PASSPHRASE": PASSPHRASE, "UNICA_DB": None,
                  "UNICA_PROGRESS": None}
    name = f"prog-{uuid.uuid4().hex[:6]}"

    def ok(*args, env=None):
        p = run_unica(*args, env={**base, **(env or {})})
        assert p.returncode == 0, f"unica {' '.join(args)}: {p.stdout}{p.stderr}"
        return p

    ok("init")
    ok("ca", "create-root", name, "--subject", "C=CN,O=进度测试,CN=Progress Root", "--key-type", "ec-p256",
       "--crl-url", "http://crl.example.cn/p.crl", "--ocsp-url", "http://ocsp.example.cn/")
    csrs = [str(openssl_csr(d, f"/C=CN/O=示例/CN=p{i}.example.cn", san=f"DNS:p{i}.example.cn", name=f"p{i}"))
            for i in range(12)]
    (d / "out").mkdir()
    return {"dir": d, "env": env, "name": name, "csrs": csrs, "ok": ok}


def _lines(stderr: str, label: str) -> list[re.Match]:
    assert "\r" not in stderr, repr(stderr)
    found = [LINE.match(line) for line in stderr.splitlines() if line.startswith(label + ":")]
    assert found and all(found), stderr
    return found


def test_plain_lines_without_a_terminal(ca):
    """UNICA_PROGRESS=always (these runs are short): issue-batch in batches of 2, revoke 12 serials in
    transactions of 1, presign: a line per tenth (at most), the last with the total time; the JSON
    result on stdout is untouched."""
    def ok(*args):
        return ca["ok"](*args, env={"UNICA_PROGRESS": "always"})

    p = ok("cert", "issue-batch", "--ca", ca["name"], "--profile", "tls-server", "--out-dir", str(ca["dir"] / "out"),
           "--no-lint", "--batch-size", "2", "--json", *ca["csrs"])
    report = json.loads(p.stdout)
    serials = [r["serial"] for r in report]
    assert len(serials) == 12
    lines = _lines(p.stderr, "unica issue-batch")
    assert [int(m["done"]) for m in lines] == sorted(int(m["done"]) for m in lines)
    assert all(m["total"] == "12" for m in lines) and len(lines) <= 11
    assert lines[-1]["done"] == "12" and lines[-1]["pct"] == "100" and " in " in lines[-1].group()

    f = ca["dir"] / "serials.txt"
    f.write_text("\n".join(serials) + "\n")
    p = ok("cert", "revoke", "--serials-file", str(f), "--ca", ca["name"], "--batch-size", "1", "--json")
    assert len(json.loads(p.stdout)["revoked"]) == 12
    lines = _lines(p.stderr, "unica revoke")
    assert len(lines) >= 2 and lines[-1]["done"] == "12" and lines[-1].group().endswith("; 0 refused")
    assert all(int(m["pct"]) == 100 * int(m["done"]) // 12 for m in lines)

    ok("ocsp", "signer", "--ca", ca["name"])
    ok("ocsp", "configure", "--ca", ca["name"], "--mode", "presigned")
    p = ok("ocsp", "presign", "--all")
    lines = _lines(p.stderr, f"CA {ca['name']}")
    assert lines[-1]["unit"] == "responses signed" and lines[-1]["pct"] == "100"
    assert f"{ca['name']}: {lines[-1]['done']} responses signed" in p.stdout


def test_quiet_for_a_short_run_a_single_batch_or_never(ca, tmp_path):
    """A run shorter than a few seconds says nothing on stderr, nor does issue-batch with everything
    in one batch (even with UNICA_PROGRESS=always), nor anything with UNICA_PROGRESS=never."""
    ok = ca["ok"]
    csrs = [str(openssl_csr(tmp_path, f"/CN=q{i}.example.cn", san=f"DNS:q{i}.example.cn", name=f"q{i}"))
            for i in range(4)]
    args = ["cert", "issue-batch", "--ca", ca["name"], "--profile", "tls-server", "--out-dir", str(tmp_path),
            "--no-lint", "--json"]
    p = ok(*args, "--batch-size", "1", *csrs[:2])
    assert p.stderr == "", p.stderr  # well under Progress.QUIET on any machine
    p = ok(*args, csrs[2], env={"UNICA_PROGRESS": "always"})
    assert p.stderr == "", p.stderr
    p = ok(*args, "--batch-size", "1", csrs[3], env={"UNICA_PROGRESS": "never"})
    assert p.stderr == "", p.stderr


def _run_on_pty(args, env, timeout=120.0) -> tuple[int, bytes]:
    """Run ``unica`` with stdin, stdout and stderr on a pseudo-terminal; its exit status and output."""
    main, sub = pty.openpty()
    full = {**os.environ, **{k: v for k, v in env.items() if v is not None}, "TERM": "xterm-256color",
            "COLUMNS": "120", "LINES": "40"}
    for k, v in env.items():
        if v is None:
            full.pop(k, None)
    proc = subprocess.Popen([sys.executable, "-m", "unica", *args], stdin=sub, stdout=sub, stderr=sub, env=full,
                            close_fds=True)
    os.close(sub)
    out, end = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            r, _, _ = select.select([main], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # the other side closed
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), out
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()


def test_a_bar_with_rate_and_eta_on_a_terminal(ca, tmp_path):
    """On a terminal: rich's bar (redrawn in place), done/total, the rate and the ETA."""
    ok = ca["ok"]
    d = tmp_path / "out"
    d.mkdir()
    csrs = [str(openssl_csr(tmp_path, f"/C=CN/O=示例/CN=t{i}.example.cn", san=f"DNS:t{i}.example.cn", name=f"t{i}"))
            for i in range(6)]
    report = json.loads(ok("cert", "issue-batch", "--ca", ca["name"], "--profile", "tls-server", "--out-dir", str(d),
                           "--no-lint", "--json", *csrs).stdout)
    f = tmp_path / "serials.txt"
    f.write_text("\n".join(r["serial"] for r in report) + "\n")
    status, out = _run_on_pty(["cert", "revoke", "--serials-file", str(f), "--ca", ca["name"], "--batch-size", "1"],
                              ca["env"])
    text = out.decode("utf-8", "replace")
    assert status == 0, text
    assert "━" in text, text  # the bar
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # without colours and cursor moves
    assert re.search(r"unica revoke ━+ 6/6 [\d,]+/s ETA \d+:\d\d:\d\d \d+:\d\d:\d\d 0 refused", plain), plain
    assert "\x1b[?25h" in text, text  # the cursor shown again when the bar ends
    assert "revoked 6 of 6 certificate(s)" in text, text
