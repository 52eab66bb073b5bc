"""Run the unica CLI as ``python probe_run.py ARGS...`` with every log record at DEBUG on
stderr (the library's, SQLAlchemy's SQL with its parameters, ...), umask 000 (so file modes
come from unica, not the umask), and the argv of every subprocess unica starts appended to
``$UNICA_PROBE_ARGV`` (one JSON list a line). A probe for tests/reliability/test_secrets.py."""

import json
import logging
import os
import subprocess
import sys

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)  # SQL, parameters and rows
os.umask(0)
_popen_init = subprocess.Popen.__init__


def _recording_init(self, args, *a, **kw):
    with open(os.environ["UNICA_PROBE_ARGV"], "a") as f:
        f.write(json.dumps([str(x) for x in (args if isinstance(args, (list, tuple)) else [args])]) + "\n")
    return _popen_init(self, args, *a, **kw)


subprocess.Popen.__init__ = _recording_init

from unica.cli.main import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
