"""Differential run of unica.verify against pyhanko-certvalidator and `openssl verify` (issue #10).

Runs N generated chains (tests/verify/differential.py), prints the count per outcome class and per
feature, and how the time splits between the engines (generation, unica, pyhanko-certvalidator,
openssl; summed over worker processes).

    python bench/verify_differential.py [--n 1000] [--seed S] [--start K] [--workers W]
                                        [--no-openssl] [--show HARMFUL,unica-rejects-only|all]
                                        [--write DIR]   # PEMs of every shown case

Exit status 1 when there is a HARMFUL accept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.verify import differential as d  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=d.DEFAULT_SEED)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--no-openssl", action="store_true")
    ap.add_argument("--show", default="HARMFUL", help="classes whose cases are printed (comma list, 'all', 'none')")
    ap.add_argument("--write", type=Path, help="write the PEMs of the shown cases under this directory")
    a = ap.parse_args()

    def progress(k: int) -> None:
        if k % 250 == 0:
            print(f"  {k}/{a.n}", file=sys.stderr)

    s = d.run_many(a.seed, a.n, start=a.start, workers=a.workers, openssl=not a.no_openssl, progress=progress)
    print(d.format_summary(s))
    t = s.engine_times()
    per_case = {k: 1000 * v / max(1, len(s.results)) for k, v in t.items()}
    print("  per case: " + ", ".join(f"{k} {v:.1f} ms" for k, v in per_case.items())
          + f"; wall {1000 * s.wall / max(1, len(s.results)):.1f} ms per case")
    if t["unica"] and t["pyhanko"]:
        print(f"  unica / pyhanko-certvalidator time: {t['unica'] / t['pyhanko']:.2f}; "
              f"unica / openssl: {t['unica'] / max(t['openssl'], 1e-9):.2f}")
    show = {"all": None, "none": set()}.get(a.show, set(a.show.split(",")))
    shown = [r for r in s.results if show is None or r.klass in show]
    for r in shown:
        print()
        print(r.report())
    if a.write and shown:
        print(f"\nPEMs written to {d.write_reproducers(shown, a.write)}")
    return 1 if s.harmful() else 0


if __name__ == "__main__":
    sys.exit(main())
