"""What an authenticated operator costs: the same command with and without operators, as ratios.

Two homes on one SoftHSM2 token (a private token store): ``legacy`` has no operator (unica as
before joint operation: the OS user acts); ``joint`` has operators, and each command runs with
``--as`` an RA officer whose card key is on that same token (so loading the module and logging
in cost the same; the card signature over the request, and checking it, are the extra work).
Each round runs, interleaved: ``cert issue`` (pkilint on, as by default), ``cert revoke`` (a
different certificate each round) and ``crl generate``, in both homes. Medians of ``--rounds``;
the ratio joint / legacy per command.

    python bench/auth_cost.py [--rounds 9]

Target (issue #12): an authenticated command costs <= 1.2 x the same command before operators.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _softhsm  # noqa: E402  (before anything loads the PKCS#11 module)

TOKEN = _softhsm.TOKEN


def unica(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "unica", *args], env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SystemExit(f"unica {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


def csr(path: Path, cn: str) -> Path:
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(path.with_suffix(".key")), "-out", str(path), "-utf8", "-subj",
                    f"/C=CN/O=示例科技有限公司/organizationIdentifier=91350100M000100Y43/CN={cn}"],
                   check=True, capture_output=True)
    return path


def build(tmp: Path, name: str, operators: bool, n: int) -> tuple[dict, list[str], list[str]]:
    """A home with CA ``root`` (key on the token), ``n`` issued certificates; with ``operators``,
    admin alice and officer bob of office ``customs`` (their card keys on the same token).
    Returns (env, the --as arguments to add, serials)."""
    env = dict(os.environ, UNICA_HOME=str(tmp / name))
    env.pop("UNICA_OPERATOR", None)
    unica(env, "init")
    unica(env, "ca", "create-root", "root", "--subject", f"C=CN,O=Bench {name},CN=Root", "--key", _ca_key(name))
    as_bob: list[str] = []
    if operators:
        for who in ("alice", "bob"):
            unica(env, "token", "enroll", "--token", TOKEN, "--label", f"{name}-{who}", "--key-type", "ec-p256",
                  "--subject", f"C=CN,O=Bench,CN={who}", "--ca", "root", "--profile", "operator")
            s = [c["serial"] for c in json.loads(unica(env, "cert", "list", "--profile", "operator",
                                                       "--json").stdout)][-1]
            unica(env, "cert", "export", s, "--ca", "root", "--out", str(tmp / f"{name}-{who}.pem"))
        as_alice = ["--as", f"pkcs11:token={TOKEN};object={name}-alice"]
        unica(env, "operator", "add", "alice", "--role", "admin", "--cert", str(tmp / f"{name}-alice.pem"))
        unica(env, "office", "add", "customs", "--ca", "root", "--profile", "enterprise-sign", *as_alice)
        unica(env, "operator", "add", "bob", "--role", "ra-officer", "--office", "customs",
              "--cert", str(tmp / f"{name}-bob.pem"), *as_alice)
        as_bob = ["--as", f"pkcs11:token={TOKEN};object={name}-bob"]
    d = tmp / f"{name}-csrs"
    d.mkdir()
    files = [str(csr(d / f"c{i}.csr", f"c{i}")) for i in range(n)]
    out = tmp / f"{name}-issued"
    out.mkdir()
    unica(env, "cert", "issue-batch", "--ca", "root", "--profile", "enterprise-sign", "--out-dir", str(out),
          *files, *as_bob)
    serials = [c["serial"] for c in json.loads(unica(env, "cert", "list", "--profile", "enterprise-sign",
                                                     "--json").stdout)]
    return env, as_bob, serials


def _ca_key(name: str) -> str:
    uri = f"pkcs11:token={TOKEN};object=ca-{name}"
    subprocess.run([sys.executable, "-m", "unica", "key", "generate", uri, "--key-type", "ec-p256"], check=True,
                   capture_output=True)
    return uri


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    _softhsm.setup()
    tmp = Path(tempfile.mkdtemp(prefix="unica-auth-bench-"))
    legacy, _, legacy_serials = build(tmp, "legacy", False, args.rounds + 1)
    joint, as_bob, joint_serials = build(tmp, "joint", True, args.rounds + 1)
    one = csr(tmp / "one.csr", "one")
    homes = {"legacy": (legacy, [], iter(legacy_serials)), "joint": (joint, as_bob, iter(joint_serials))}
    cases = {
        "cert issue": lambda env, a, it: ["cert", "issue", "--ca", "root", "--profile", "enterprise-sign",
                                          "--csr", str(one), "--out", str(tmp / "out.pem"), *a],
        "cert revoke": lambda env, a, it: ["cert", "revoke", next(it), "--ca", "root", "--reason", "superseded", *a],
        "crl generate": lambda env, a, it: ["crl", "generate", "--ca", "root", "--out", str(tmp / "root.crl"), *a],
    }
    times = {(c, h): [] for c in cases for h in homes}
    for c, argv in cases.items():  # once each, untimed: warm caches, check both work
        if c != "cert revoke":
            for h, (env, a, it) in homes.items():
                (tmp / "out.pem").unlink(missing_ok=True)
                unica(env, *argv(env, a, it))
    for _ in range(args.rounds):
        for c, argv in cases.items():
            for h, (env, a, it) in homes.items():
                (tmp / "out.pem").unlink(missing_ok=True)
                cmd = argv(env, a, it)
                t0 = time.perf_counter()
                unica(env, *cmd)
                times[(c, h)].append(time.perf_counter() - t0)
    load = os.getloadavg()[0]
    print(f"authenticated vs legacy, wall time, medians of {args.rounds} interleaved rounds, one SoftHSM2 token, "
          f"load average {load:.2f}")
    worst = 0.0
    for c in cases:
        lg, jt = statistics.median(times[(c, "legacy")]), statistics.median(times[(c, "joint")])
        worst = max(worst, jt / lg)
        print(f"  {c:14s} legacy {lg * 1000:7.1f} ms   --as officer {jt * 1000:7.1f} ms   = {jt / lg:4.2f} x"
              f"   [target <= 1.2 x: {'met' if jt / lg <= 1.2 else 'NOT met'}]")
    print(f"  worst: {worst:.2f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
