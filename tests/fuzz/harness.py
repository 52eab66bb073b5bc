"""The fuzz harness: budget, input counter, per-input time guard, and mutation strategies.

Every fuzz test sends its generated input through :func:`feed`, which

- counts the input (per parser; the totals are printed at the end of the run and the last
  test asserts the CI budget of >= 10,000 inputs was met),
- runs the parser under a time guard (:data:`HANG_SECONDS`, a ``SIGALRM`` timer that raises
  :class:`Hang`, a ``BaseException`` so no ``except Exception`` in a parser can swallow it;
  plus a ``faulthandler`` backstop that dumps every thread's stack and ends the process if a
  parser hangs inside native code, where signals are not delivered),
- returns the result, or the :class:`~unica.errors.UnicaError` the parser raised. Any other
  exception propagates, so Hypothesis shrinks the input and reports it.

Budget knobs (environment):

- ``UNICA_FUZZ_EXAMPLES``: multiplier of every test's CI ``max_examples`` (default 1; e.g.
  ``UNICA_FUZZ_EXAMPLES=50`` for a long local run).
- ``UNICA_FUZZ_RANDOM=1``: draw fresh random inputs (default: derandomized, so CI runs the
  same inputs every time).
"""

from __future__ import annotations

import collections
import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from unica.errors import UnicaError

HANG_SECONDS = 5.0
#: if a parser is stuck in native code, the process ends (with every thread's stack) after this
NATIVE_HANG_SECONDS = 60.0
#: what the CI run must reach across all parsers
CI_BUDGET = 10_000


def _multiplier() -> float:
    raw = os.environ.get("UNICA_FUZZ_EXAMPLES", "").strip().lower().rstrip("x")
    if not raw:
        return 1.0
    try:
        m = float(raw)
    except ValueError:
        raise SystemExit(f"UNICA_FUZZ_EXAMPLES={raw!r}: expected a number (a multiplier, e.g. 20)") from None
    if m <= 0:
        raise SystemExit(f"UNICA_FUZZ_EXAMPLES={raw!r}: must be positive")
    return m


MULTIPLIER = _multiplier()
RANDOM = os.environ.get("UNICA_FUZZ_RANDOM", "") not in ("", "0")


def budget(n: int, **kw) -> settings:
    """Hypothesis settings for a fuzz test whose CI budget is ``n`` examples."""
    return settings(
        max_examples=max(1, int(n * MULTIPLIER)),
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
        **kw,
    )


# --- counting ------------------------------------------------------------------------

#: parser name -> inputs fed
COUNTS: collections.Counter = collections.Counter()
#: parser name -> seconds spent inside the parser
SECONDS: collections.Counter = collections.Counter()
#: parser name -> outcome kind -> count ("ok", or the UnicaError class name)
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


#: fuzz test node ids deselected in this run (-k / -m): the budget check is then skipped
DESELECTED: set = set()
#: wall seconds spent in fuzz tests (setup + call + teardown), summed from pytest's reports
WALL = [0.0]


def total() -> int:
    return sum(COUNTS.values())


# --- the time guard ------------------------------------------------------------------


class Hang(BaseException):
    """A parser ran longer than :data:`HANG_SECONDS` on one input."""


def _alarm(signum, frame):
    raise Hang(f"parser still running after {HANG_SECONDS} s on one input")


#: (parser, perf_counter at start) of the call in progress, for the native-hang watchdog
_CURRENT: list = [None]
_WATCHDOG: list = []


def _watchdog() -> None:
    while True:
        time.sleep(1.0)
        cur = _CURRENT[0]
        if cur is not None and time.perf_counter() - cur[1] > NATIVE_HANG_SECONDS:
            sys.stderr.write(f"\nfuzz: parser {cur[0]} hung for {NATIVE_HANG_SECONDS:.0f} s (in native code?); "
                             "stacks of every thread follow, then the run ends\n")
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()
            os._exit(70)


def _ensure_watchdog() -> None:
    if not _WATCHDOG:
        t = threading.Thread(target=_watchdog, name="fuzz-watchdog", daemon=True)
        t.start()
        _WATCHDOG.append(t)


@contextlib.contextmanager
def time_guard(seconds: float = HANG_SECONDS, name: str = "parser"):
    """Fail (raise :class:`Hang`) if the body runs longer than ``seconds``; end the process
    (with every thread's stack) if it is stuck in native code for :data:`NATIVE_HANG_SECONDS`."""
    _ensure_watchdog()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    _CURRENT[0] = (name, time.perf_counter())
    try:
        yield
    finally:
        _CURRENT[0] = None
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def feed(parser: str, fn, *args, **kw):
    """Call ``fn(*args, **kw)`` as parser ``parser`` under the guard; return ``(result, None)``
    or ``(None, error)`` for a :class:`UnicaError`. Anything else propagates."""
    COUNTS[parser] += 1
    t0 = time.perf_counter()
    try:
        with time_guard(name=parser):
            result = fn(*args, **kw)
    except UnicaError as e:
        OUTCOMES[parser][type(e).__name__] += 1
        _check_message(parser, e)
        return None, e
    finally:
        SECONDS[parser] += time.perf_counter() - t0
    OUTCOMES[parser]["ok"] += 1
    return result, None


#: parser name -> first few error messages that span lines (the CLI prints one line per error);
#: reported at the end of the run, not failed: the contract under test is the exception type
MULTILINE: dict[str, list[str]] = collections.defaultdict(list)


def _check_message(parser: str, e: UnicaError) -> None:
    msg = str(e)
    assert msg.strip(), f"{parser}: {type(e).__name__} with an empty message"
    if "\n" in msg.strip() and len(MULTILINE[parser]) < 3:
        MULTILINE[parser].append(f"{type(e).__name__}: {msg!r}")


# --- DER-aware mutation ----------------------------------------------------------------


def tlv_map(buf: bytes, limit: int = 4000) -> list[tuple[int, int, int, int]]:
    """Every TLV found in ``buf`` (recursing into constructed values and into OCTET/BIT
    STRINGs that hold DER): ``(tag_offset, length_offset, length_octets, value_end)``."""
    out: list[tuple[int, int, int, int]] = []

    def walk(start: int, end: int, depth: int) -> bool:
        pos = start
        while pos < end and len(out) < limit:
            if pos + 2 > end:
                return False
            tag = buf[pos]
            if tag & 0x1F == 0x1F:
                return False
            first = buf[pos + 1]
            if first < 0x80:
                nlen, length = 1, first
            else:
                nb = first & 0x7F
                if nb == 0 or nb > 4 or pos + 2 + nb > end:
                    return False
                nlen, length = 1 + nb, int.from_bytes(buf[pos + 2:pos + 2 + nb], "big")
            vs = pos + 1 + nlen
            ve = vs + length
            if ve > end:
                return False
            out.append((pos, pos + 1, nlen, ve))
            if depth < 24:
                if tag & 0x20:
                    walk(vs, ve, depth + 1)
                elif tag in (0x03, 0x04) and ve - vs >= 2:
                    s = vs + 1 if tag == 0x03 else vs
                    keep = len(out)
                    if not walk(s, ve, depth + 1):
                        del out[keep:]
            pos = ve
        return pos == end

    walk(0, len(buf), 0)
    return out


_LENGTHS = [b"\x00", b"\x01", b"\x7f", b"\x80", b"\x81\x00", b"\x81\x7f", b"\x81\xff", b"\x82\xff\xff",
            b"\x83\x01\x00\x00", b"\x84\x7f\xff\xff\xff", b"\x84\xff\xff\xff\xff", b"\x85\x01\x00\x00\x00\x00",
            b"\x88\xff\xff\xff\xff\xff\xff\xff\xff", b"\xff"]
_OPS = st.sampled_from(("flip", "byte", "truncate", "length", "length", "tag", "insert", "delete", "dup", "splice",
                        "zero-len", "int", "int", "strtag"))
_INT_VALUES = st.sampled_from([0, 1, 2, 3, 4, 5, 0x7F, 0x80, 0xFF, -1])
_STR_RETAGS = st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x09, 0x0A, 0x0C, 0x12, 0x13, 0x14, 0x15,
                               0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1E])
_PEM_HOW = st.sampled_from(("as-is", "as-is", "text", "cut", "double", "prefix"))
_PEM_CHARS = st.sampled_from(b"=-A/+\n\r \x00\xff\t")
_STRING_TAGS = frozenset({0x0C, 0x12, 0x13, 0x14, 0x16, 0x1A, 0x1C, 0x1E})
_TAGS = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0A, 0x0C, 0x13, 0x16, 0x17, 0x18, 0x1E, 0x1F,
         0x30, 0x31, 0x80, 0x81, 0xA0, 0xA1, 0xA2, 0xA3, 0xBF, 0xFF]
_TAG_S = st.sampled_from(_TAGS)


def pick(draw, items):
    """One element of a list that changes per example (cheaper than a fresh sampled_from)."""
    return items[draw(st.integers(0, len(items) - 1))]


_CACHE: dict = {}


def cached(key, build):
    """A strategy built once per key: building strategies per example is slow in Hypothesis."""
    s = _CACHE.get(key)
    if s is None:
        s = _CACHE[key] = build()
    return s


@st.composite
def mutated(draw, seeds: list[bytes], max_ops: int = 4, extra_splices: list[bytes] | None = None) -> bytes:
    """One of ``seeds`` after 1..``max_ops`` structure-aware mutations: bit flips, byte
    overwrites, truncation, length-field tampering, tag swaps, inserted garbage, deleted
    or duplicated slices, and TLVs spliced from another seed (nested garbage)."""
    idx = draw(st.integers(0, len(seeds) - 1))
    buf = bytearray(seeds[idx])
    donors = seeds + (extra_splices or [])
    for _ in range(draw(st.integers(1, max_ops))):
        if not buf:
            buf += draw(st.binary(min_size=1, max_size=16))
            continue
        op = draw(_OPS)
        n = len(buf)
        tlvs = tlv_map(bytes(buf)) if op in ("length", "tag", "dup", "splice", "zero-len", "int", "strtag") else []
        if op == "strtag":  # a string in a name (or elsewhere) re-tagged as another universal type
            tlvs = [t for t in tlvs if buf[t[0]] in _STRING_TAGS]
        if op == "int":  # a small INTEGER (version, pathLen, ...) set to another value
            tlvs = [t for t in tlvs if buf[t[0]] == 0x02 and t[3] - t[1] - t[2] <= 2]
        if op == "flip":
            i = draw(st.integers(0, n - 1))
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            i = draw(st.integers(0, n - 1))
            buf[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            buf = buf[:draw(st.integers(0, n - 1))]
        elif op == "insert":
            i = draw(st.integers(0, n))
            buf[i:i] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            i = draw(st.integers(0, n - 1))
            del buf[i:i + draw(st.integers(1, 64))]
        elif not tlvs:
            buf[draw(st.integers(0, n - 1))] ^= 0xFF
        elif op == "length" or op == "zero-len":
            t, lo, nl, ve = pick(draw, tlvs)
            new = b"\x00" if op == "zero-len" else pick(draw, _LENGTHS + [bytes([draw(st.integers(0, 0x7F))])])
            if op == "length" and draw(st.booleans()):
                # off by a little: the classic length bug
                cur = int.from_bytes(buf[lo + 1:lo + nl], "big") if nl > 1 else buf[lo]
                v = max(0, cur + draw(st.integers(-3, 3)))
                new = bytes([v]) if v < 0x80 else bytes([0x82]) + v.to_bytes(2, "big")
            buf[lo:lo + nl] = new
        elif op == "int":
            t, lo, nl, ve = pick(draw, tlvs)
            v = draw(_INT_VALUES)
            buf[t:ve] = b"\x02" + (b"\x01" + (v & 0xFF).to_bytes(1, "big") if v < 0x80 else b"\x02\x00" + bytes([v]))
        elif op == "strtag":
            t, _, _, _ = pick(draw, tlvs)
            buf[t] = draw(_STR_RETAGS)
        elif op == "tag":
            t, _, _, _ = pick(draw, tlvs)
            buf[t] = draw(_TAG_S)
        elif op == "dup":
            t, _, _, ve = pick(draw, tlvs)
            piece = bytes(buf[t:ve])
            buf[ve:ve] = piece * draw(st.integers(1, 3))
        elif op == "splice":
            donor = pick(draw, donors)
            dt = tlv_map(donor, 400)
            t, _, _, ve = pick(draw, tlvs)
            if dt:
                dt_, _, _, dve = pick(draw, dt)
                buf[t:ve] = donor[dt_:dve]
            else:
                buf[t:ve] = donor[:32]
    return bytes(buf)


def der_inputs(seeds: list[bytes], raw_max: int = 512, **kw):
    """Mutated seeds (mostly) and raw bytes (built once per argument set)."""
    key = ("der_inputs", tuple(seeds), raw_max, tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                                             for k, v in kw.items())))

    def build():
        m = mutated(seeds, **kw)
        return st.one_of(m, m, m, st.binary(max_size=raw_max))

    return cached(key, build)


def pem_wrap(der: bytes, label: str) -> bytes:
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()


@st.composite
def pem_inputs(draw, seeds: list[bytes], label: str) -> bytes:
    """PEM around a mutated DER, or a valid PEM with its text damaged."""
    m = cached(("mutated", tuple(seeds)), lambda: mutated(seeds))
    der = draw(m) if draw(st.booleans()) else pick(draw, seeds)
    pem = pem_wrap(der, pick(draw, [label, label, "CERTIFICATE", "X509 CRL", "PKCS7", "X", ""]))
    how = draw(_PEM_HOW)
    if how == "text":
        b = bytearray(pem)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(_PEM_CHARS)
        pem = bytes(b)
    elif how == "cut":
        pem = pem[:draw(st.integers(0, len(pem)))]
    elif how == "double":
        pem = pem + pem_wrap(draw(m), label)
    elif how == "prefix":
        pem = draw(st.binary(max_size=40)) + pem
    return pem


def resign(signed: bytes, tbs: bytes, key) -> bytes:
    """``signed`` (a SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }) rebuilt around a
    different ``tbs``, signed again with ``key`` (EC with SHA-256 / RSA PKCS#1 v1.5 SHA-256 /
    Ed25519), so a parser gets past the signature check to the damaged content."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    from unica import der

    s, e = der.expect(signed, 0, der.SEQUENCE)
    parts = list(der.children(signed, s, e, 3))
    alg = signed[parts[1][3]:parts[1][2]]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sig = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        sig = key.sign(tbs)
    else:
        raise TypeError(type(key).__name__)
    return der.seq(tbs, alg, der.bit_string(sig))


def tbs_of(signed: bytes) -> bytes:
    from unica import der

    s, e = der.expect(signed, 0, der.SEQUENCE)
    t, ts, te, start = next(der.children(signed, s, e, 3))
    return signed[start:te]


@st.composite
def resigned(draw, signed_seeds: list[tuple[bytes, object]], max_ops: int = 3) -> bytes:
    """A seed whose to-be-signed part was mutated and then signed again with the right key."""
    signed, key = pick(draw, signed_seeds)
    tbs = draw(mutated([tbs_of(signed)], max_ops=max_ops))
    return resign(signed, tbs, key)
