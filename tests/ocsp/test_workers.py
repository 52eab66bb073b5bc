"""``serve(app, workers=2)``: two processes answer on one socket and stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ocsppki import free_port, openssl_ocsp


def test_two_workers_serve_and_stop(tmp_path: Path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "serve_workers.py"), str(tmp_path),
                             str(port), "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.1)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2
        for _ in range(6):
            p = openssl_ocsp("-issuer", str(tmp_path / "Workers_CA.pem"), "-cert", str(tmp_path / "leaf.pem"),
                             "-url", f"http://127.0.0.1:{port}/", "-CAfile", str(tmp_path / "Workers_CA.pem"), "-nonce")
            assert p.returncode == 0 and ": good" in p.stdout and "Response verify OK" in p.stderr, p.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
