"""The documentation site builds: ``mkdocs build --strict`` (mkdocs-material, a test dependency)
fails on a broken link, a page missing from the navigation, or a bad configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_mkdocs_build_strict(tmp_path: Path):
    site = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--clean",
                        "--config-file", str(REPO / "mkdocs.yml"), "--site-dir", str(site)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    for page in ("index", "operator", "enterprise", "integrator", "reference", "design", "benchmarks", "testing"):
        assert (site / page / "index.html").exists() or (site / f"{page}.html").exists() or \
            (page == "index" and (site / "index.html").exists()), page
    # the verification model is one section of the integrator guide
    html = (site / "integrator" / "index.html").read_text(encoding="utf-8")
    assert "Verification: the model, reports and limits" in html


def test_readme_links_resolve():
    """The README links into docs/ (rendered on the forge, outside mkdocs): every linked page exists."""
    import re

    text = (REPO / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", text)
    assert links, "the README links to the docs"
    for link in links:
        assert (REPO / link).exists(), link
