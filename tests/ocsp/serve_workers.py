"""Run by test_workers.py: a live-mode responder with ``serve(..., workers=N)`` in a
fresh process (argv: DIR PORT WORKERS). Writes ca.pem and leaf.pem into DIR first."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ocsppki import issue, make_ca  # noqa: E402
from unica.ocsp import InMemoryStatusSource, Responder, ResponseSigner, ServedCA  # noqa: E402
from unica.ocsp.http import OCSPApp  # noqa: E402
from unica.ocsp.server import serve  # noqa: E402

d, port, workers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ca = make_ca(d, "Workers CA")
signer = issue(d, ca, "Workers signer", ocsp_signer=True)
leaf = issue(d, ca, "leaf")
source = InMemoryStatusSource()
source.issue("w", leaf.cert.serial_number)
app = OCSPApp(Responder([ServedCA("w", ca.cert, "live", ResponseSigner(ca.cert, signer.cert, signer.key))], source))
(d / "ready").write_text("1")
serve(app, "127.0.0.1", port, workers)
