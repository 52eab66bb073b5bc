"""The import rules of docs/design.md, checked on every module's source (imports inside functions
included): ``cli`` -> services (``service`` -> ``ra`` -> ``ca``, ``ocsp``, ``sign``) -> ``auth`` ->
``policies``, ``store``, ``hsm``; ``verify`` needs neither the store nor the CA; ``ocsp`` does not
import ``ca``; the library never imports ``cli``."""

from __future__ import annotations

import ast
from pathlib import Path

import unica

PACKAGE = Path(unica.__file__).parent

#: package -> the unica packages it must never import
FORBIDDEN = {
    "verify": {"store", "ca", "ra", "service", "auth", "ocsp", "cli", "sign", "hsm", "policies"},
    "ocsp": {"ca", "ra", "service", "cli"},
    "ca": {"ra", "service", "cli"},
    "ra": {"service", "cli"},
    "auth": {"ca", "ra", "service", "ocsp", "cli"},
    "service": {"cli"},
    "sign": {"ca", "ra", "service", "store", "cli"},
    "store": {"ca", "ra", "service", "ocsp", "auth", "cli", "verify"},
    "hsm": {"ca", "ra", "service", "ocsp", "auth", "cli", "store"},
    "policies": {"ca", "ra", "service", "ocsp", "auth", "cli", "store"},
    # the local signing agent runs on the enterprise's PC, next to the card, far from the CA's database
    "agent": {"store", "ca", "ra", "service", "sso", "auth", "ocsp", "tsa", "sign", "cli"},
    # the OpenID Connect provider's library: the service and the CLI call it, never the reverse
    "sso": {"ca", "ra", "service", "cli", "agent"},
}


def imported(path: Path) -> set[str]:
    """The unica subpackages ``path`` imports (``unica.x...`` -> ``x``; relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(PACKAGE.parent).with_suffix("").parts  # ("unica", "ca", "crl")
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = rel[: len(rel) - node.level]
                names = [".".join(base + ((node.module,) if node.module else ()))]
            elif node.module:
                names = [node.module]
                if node.module == "unica":
                    names = [f"unica.{a.name}" for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "unica" and len(parts) > 1:
                out.add(parts[1])
    return out


def test_imports_flow_one_way():
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        pkg = path.relative_to(PACKAGE).parts[0]
        for bad in sorted(imported(path) & FORBIDDEN.get(pkg, set())):
            broken.append(f"{path.relative_to(PACKAGE.parent)} imports unica.{bad}")
    assert not broken, "\n".join(broken)


def test_the_check_sees_imports():
    assert {"store", "ca"} <= imported(PACKAGE / "ra" / "enrollment.py")
