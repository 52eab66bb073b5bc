"""Full x509-limbo run through unica.verify.validate_certificate: pass / fail / skip per namespace.

    python bench/limbo.py [--no-bettertls] [--show-failures]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.verify import limbo_harness as lh  # noqa: E402


def main() -> int:
    cases = lh.load_cases()
    if "--no-bettertls" in sys.argv:
        cases = [c for c in cases if not c["id"].startswith("bettertls")]
    t0 = time.perf_counter()
    counts, failures = lh.run(cases)
    dt = time.perf_counter() - t0
    namespaces = sorted({ns for ns, _ in counts})
    print(f"{'namespace':32} {'pass':>6} {'fail':>5} {'skip':>5}")
    tot = {"pass": 0, "fail": 0, "skip": 0}
    for ns in namespaces:
        row = {k: counts[(ns, k)] for k in tot}
        for k in tot:
            tot[k] += row[k]
        print(f"{ns:32} {row['pass']:6} {row['fail']:5} {row['skip']:5}")
    print(f"{'TOTAL':32} {tot['pass']:6} {tot['fail']:5} {tot['skip']:5}   ({len(cases)} cases, {dt:.1f} s)")
    if "--show-failures" in sys.argv or len(failures) <= 50:
        for f in failures:
            print("FAIL", *f, sep=" | ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
