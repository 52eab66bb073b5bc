"""--db / UNICA_DB take a URL: a plain path is refused with one line that shows a URL to use,
and the path itself (nothing secret in it); a URL's password is never shown."""

from __future__ import annotations

import os
import subprocess
import sys


def _unica(*args, db: str, tmp_path):
    env = dict(os.environ, UNICA_HOME=str(tmp_path / "home"), UNICA_DB=db)
    return subprocess.run([sys.executable, "-m", "unica", *args], capture_output=True, text=True, env=env, timeout=60)


def test_a_plain_path_is_refused_with_the_url_form(tmp_path):
    path = str(tmp_path / "unica.db")
    p = _unica("cert", "list", db=path, tmp_path=tmp_path)
    assert p.returncode == 2, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unica: error: bad database URL"), p.stderr
    assert repr(path) in lines[0] and "sqlite:////" in lines[0]
    assert not os.path.exists(path)


def test_a_bad_url_keeps_its_password_hidden(tmp_path):
    p = _unica("cert", "list", db="postgresql+psycopg://u:s3cret@[::1/unica", tmp_path=tmp_path)
    assert p.returncode in (1, 2), p
    assert "s3cret" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
