"""Start-up cost of the ``unica`` command, as ratios to ``python3 -c pass`` in the same run.

Sets up a throw-away UNICA_HOME (SQLite, a root CA with a software P-256 key and a few
certificates, made through the library), then times, interleaved round by round, the wall
time of: ``python3 -c pass`` (the baseline: the interpreter's own start), ``unica --help``,
``unica ca list``, ``unica cert show SERIAL``, ``unica revoke --help`` and a real
``unica revoke SERIAL`` (a different certificate each round). The ``unica`` console script
installed beside this interpreter is run (else ``python -m unica``). Medians of ``--rounds``.

Bytecode: as installed by pip, unica's modules are compiled once. This environment may set
PYTHONDONTWRITEBYTECODE (an editable install then compiles every unica module at every start),
so by default the runs get a private bytecode cache (PYTHONPYCACHEPREFIX in the temp dir, filled
by the untimed warm-up run); ``--no-bytecode-cache`` runs them with the environment as it is.

    python bench/cli_start.py [--rounds 15] [--no-bytecode-cache]

Target: every database command (ca list, cert show, revoke) <= 10 x python3 -c pass.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def setup(home: Path, n: int) -> list[str]:
    """A database with a root CA and ``n`` + 1 certificates; their serials."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from unica.ca.authority import CASettings, KeySpec, create_root
    from unica.ca.issuance import IssuingCA
    from unica.config import write_default_config
    from unica.store import open_store

    write_default_config(home)
    store = open_store(create=True)
    create_root(store, "root", "C=CN,O=Bench,CN=Start-up Root", KeySpec(key_type="ec-p256"),
                settings=CASettings(crl_url="http://crl.example.cn/root.crl"))
    key = ec.generate_private_key(ec.SECP256R1())
    csrs = [(x509.CertificateSigningRequestBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"h{i}.example.cn")]))
             .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"h{i}.example.cn")]), False)
             .sign(key, hashes.SHA256())).public_bytes(serialization.Encoding.PEM) for i in range(n + 1)]
    issued = IssuingCA(store, "root").issue_many(csrs, "tls-server", lint=False)
    store.dispose()
    return [i.serial_hex for i in issued]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="run with the environment's bytecode settings (see above)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="unica-start-bench-"))
    os.environ["UNICA_HOME"] = str(tmp / "home")
    os.environ["UNICA_PASSPHRASE"] = "bench-passphrase"
    os.environ.pop("UNICA_DB", None)
    try:
        serials = setup(tmp / "home", args.rounds)
        if not args.no_bytecode_cache:
            os.environ["PYTHONPYCACHEPREFIX"] = str(tmp / "pyc")
            os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        bytecode = ("a private bytecode cache" if not args.no_bytecode_cache else
                    "PYTHONDONTWRITEBYTECODE=" + os.environ.get("PYTHONDONTWRITEBYTECODE", "(unset)"))
        script = Path(sys.executable).parent / "unica"
        unica = [str(script)] if script.exists() else [sys.executable, "-m", "unica"]
        to_revoke = iter(serials[1:])
        cases = {
            "python3 -c pass": lambda: [sys.executable, "-c", "pass"],
            "unica --help": lambda: unica + ["--help"],
            "unica ca list": lambda: unica + ["ca", "list"],
            "unica cert show SERIAL": lambda: unica + ["cert", "show", serials[0]],
            "unica revoke --help": lambda: unica + ["revoke", "--help"],
            "unica revoke SERIAL": lambda: unica + ["revoke", next(to_revoke), "--reason", "superseded"],
        }
        db_cases = {"unica ca list", "unica cert show SERIAL", "unica revoke SERIAL"}
        times: dict[str, list[float]] = {k: [] for k in cases}
        for k, argv in cases.items():  # once each (not timed): fills the OS caches, checks the commands work
            if k != "unica revoke SERIAL":
                subprocess.run(argv(), check=True, capture_output=True)
        for _ in range(args.rounds):  # interleaved: the machine drifts
            for k, argv in cases.items():
                cmd = argv()
                t0 = time.perf_counter()
                p = subprocess.run(cmd, capture_output=True)
                times[k].append(time.perf_counter() - t0)
                if p.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.decode()}")
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["python3 -c pass"]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"unica start-up, wall time, medians of {args.rounds} interleaved rounds, {' '.join(unica)}, "
              f"load average {load:.2f}, {bytecode}")
        worst = 0.0
        for k, t in med.items():
            ratio = t / base
            mark = ""
            if k in db_cases:
                worst = max(worst, ratio)
                mark = f"   [target <= 10 x: {'met' if ratio <= 10 else 'NOT met'}]"
            print(f"  {k:24s} {t * 1000:8.1f} ms = {ratio:5.1f} x python3 -c pass{mark}")
        print(f"  worst database command: {worst:.1f} x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
