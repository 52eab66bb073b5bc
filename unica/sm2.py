"""SM2 keys and SM2-with-SM3 signatures through the system OpenSSL 3 libcrypto.

Why a binding of our own: pyca/cryptography has no SM2, and tongsuopy cannot set the SM2
signer ID (``EVP_PKEY_CTX_set1_id``), which is part of what is signed (the Z value of
GM/T 0009 / GB/T 32918.2: ``Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)``, then the
signature is over ``SM3(Z || M)``). Two signers that disagree on the ID produce signatures the
other side rejects, so the ID is an explicit argument everywhere here, defaulting to the
GM/T 0009 default ``1234567812345678``.

This is a narrow cffi binding in ABI mode (``ffi.dlopen``, nothing compiled) to the EVP API of
the libcrypto.so.3 that Python's ``ssl`` module also uses. Only what the classes below need is
declared. Every OpenSSL failure becomes a typed :mod:`unica.errors` exception with one line of
text, and the thread's OpenSSL error queue is cleared after each call, so a failure never
leaks into a later, unrelated OpenSSL error message (cryptography reads the same queue).

Threads: a key object is immutable after construction and every operation makes its own
``EVP_MD_CTX`` / ``EVP_PKEY_CTX``, so one key may sign and verify from several threads at
once; cffi releases the GIL during each OpenSSL call, so they can run in parallel.

Memory: the ``EVP_PKEY`` of a key is freed by ``ffi.gc`` when the Python object goes; the
per-call contexts are freed before the call returns. Buffers that held plain private-key DER
are zeroed before they are released (the ``bytes`` returned by
:meth:`SM2PrivateKey.private_bytes_pkcs8` cannot be, which is why it is meant only to be
handed to :func:`unica.hsm.software.encrypt_private_key`).
"""

from __future__ import annotations

import ctypes.util
import threading

from unica.errors import InputError, MalformedInput, SM2Error, SM2SignatureInvalid, UnsupportedKeyType

__all__ = [
    "DEFAULT_ID", "SM2_CURVE_OID", "SM2_WITH_SM3_OID", "MAX_SIGNER_ID", "SM2PrivateKey",
    "SM2PublicKey", "digest", "sm3",
]

#: GM/T 0009-2012 default signer ID (the ASCII digits), used when the two sides agree on no other
DEFAULT_ID = b"1234567812345678"
#: the SM2 curve (GM/T 0006), carried as the parameters of id-ecPublicKey
SM2_CURVE_OID = "1.2.156.10197.1.301"
#: SM2 signature with SM3, the X.509 signatureAlgorithm (GM/T 0006)
SM2_WITH_SM3_OID = "1.2.156.10197.1.501"
#: DER of the curve's OBJECT IDENTIFIER: found in an SPKI's AlgorithmIdentifier, it marks an SM2 key
SM2_CURVE_OID_DER = bytes.fromhex("06082a811ccf5501822d")

#: longest signer ID accepted. The Z formula carries the ID's length in bits in 16 bits (ENTL),
#: so 8191 bytes would fit, but OpenSSL 3.0 refuses ``id_len >= 65535 / 8`` (crypto/sm2/sm2_sign.c),
#: i.e. 8191 too; unica stops at what its backend can sign, and says so before calling it.
MAX_SIGNER_ID = 8190

#: DER of an SM2 SubjectPublicKeyInfo is 91 bytes, a plain PKCS#8 key about 150; the limits
#: leave room for explicit parameters and attributes, which are then refused on their merits
MAX_PRIVATE_DER = 4096
MAX_PUBLIC_DER = 4096

#: a DER ``SEQUENCE { INTEGER r, INTEGER s }`` for a 256-bit order is at most 2 + 2 * 35 bytes
MAX_SIGNATURE = 72

#: SubjectPublicKeyInfo prefix: id-ecPublicKey, namedCurve 1.2.156.10197.1.301, BIT STRING of
#: 66 bytes (no unused bits, 0x04 then X and Y)
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d03420004")
_SPKI_LEN = len(_SPKI_PREFIX) + 64

_CDEF = """
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_md_st EVP_MD;
typedef struct engine_st ENGINE;
typedef struct ossl_lib_ctx_st OSSL_LIB_CTX;
typedef struct pkcs8_priv_key_info_st PKCS8_PRIV_KEY_INFO;

unsigned long OpenSSL_version_num(void);

unsigned long ERR_get_error(void);
unsigned long ERR_peek_error(void);
void ERR_clear_error(void);
const char *ERR_reason_error_string(unsigned long e);
const char *ERR_lib_error_string(unsigned long e);

const EVP_MD *EVP_sm3(void);
int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
               const EVP_MD *type, ENGINE *impl);

void EVP_PKEY_free(EVP_PKEY *pkey);
int EVP_PKEY_is_a(const EVP_PKEY *pkey, const char *name);
int EVP_PKEY_get_size(const EVP_PKEY *pkey);
int EVP_PKEY_set_utf8_string_param(EVP_PKEY *pkey, const char *key_name, const char *str);

EVP_PKEY_CTX *EVP_PKEY_CTX_new(EVP_PKEY *pkey, ENGINE *e);
EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_name(OSSL_LIB_CTX *libctx, const char *name,
                                         const char *propquery);
EVP_PKEY_CTX *EVP_PKEY_CTX_new_from_pkey(OSSL_LIB_CTX *libctx, EVP_PKEY *pkey,
                                         const char *propquery);
void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx);
int EVP_PKEY_keygen_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_generate(EVP_PKEY_CTX *ctx, EVP_PKEY **ppkey);
int EVP_PKEY_private_check(EVP_PKEY_CTX *ctx);
int EVP_PKEY_pairwise_check(EVP_PKEY_CTX *ctx);
int EVP_PKEY_public_check_quick(EVP_PKEY_CTX *ctx);
int EVP_PKEY_CTX_set1_id(EVP_PKEY_CTX *ctx, const void *id, int len);

EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
void EVP_MD_CTX_set_pkey_ctx(EVP_MD_CTX *ctx, EVP_PKEY_CTX *pctx);
int EVP_DigestSignInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type, ENGINE *e,
                       EVP_PKEY *pkey);
int EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sigret, size_t *siglen,
                   const unsigned char *tbs, size_t tbslen);
int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type, ENGINE *e,
                         EVP_PKEY *pkey);
int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sigret, size_t siglen,
                     const unsigned char *tbs, size_t tbslen);

typedef struct ossl_param_st {
    const char *key;
    unsigned int data_type;
    void *data;
    size_t data_size;
    size_t return_size;
} OSSL_PARAM;
int EVP_PKEY_fromdata_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_fromdata(EVP_PKEY_CTX *ctx, EVP_PKEY **ppkey, int selection, OSSL_PARAM params[]);

EVP_PKEY *d2i_PUBKEY(EVP_PKEY **a, const unsigned char **pp, long length);
int i2d_PUBKEY(const EVP_PKEY *a, unsigned char **pp);
PKCS8_PRIV_KEY_INFO *d2i_PKCS8_PRIV_KEY_INFO(PKCS8_PRIV_KEY_INFO **a, const unsigned char **pp,
                                             long length);
int i2d_PKCS8_PRIV_KEY_INFO(const PKCS8_PRIV_KEY_INFO *a, unsigned char **pp);
void PKCS8_PRIV_KEY_INFO_free(PKCS8_PRIV_KEY_INFO *a);
EVP_PKEY *EVP_PKCS82PKEY(const PKCS8_PRIV_KEY_INFO *p8);
PKCS8_PRIV_KEY_INFO *EVP_PKEY2PKCS8(const EVP_PKEY *pkey);
"""

_DEBIAN_LIBCRYPTO = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"

_load_lock = threading.Lock()
_ffi = None
_lib = None
_sm3_md = None


def _backend():
    """(ffi, lib), loading libcrypto on first use (not at import: a machine without it can
    still import unica and use everything else)."""
    global _ffi, _lib, _sm3_md
    if _lib is not None:
        return _ffi, _lib
    with _load_lock:
        if _lib is None:
            _ffi_, _lib_ = _open()
            md = _lib_.EVP_sm3()
            if md == _ffi_.NULL:
                _lib_.ERR_clear_error()
                raise SM2Error("the system libcrypto has no SM3 (OpenSSL built with no-sm3)")
            _ffi, _sm3_md, _lib = _ffi_, md, _lib_
    return _ffi, _lib


def _open():
    try:
        import cffi
    except ImportError:  # pragma: no cover - cffi comes with cryptography
        raise SM2Error("SM2 needs the Python package cffi, which is not installed") from None
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    candidates = []
    found = ctypes.util.find_library("crypto")
    if found:
        candidates.append(found)
    candidates.append(_DEBIAN_LIBCRYPTO)
    reasons = []
    for name in candidates:
        try:
            lib = ffi.dlopen(name)
        except OSError as e:
            reasons.append(f"{name}: {e}")
            continue
        try:
            version = lib.OpenSSL_version_num()
            # OpenSSL 3: 0xMNN00PP0L; the EVP_PKEY_CTX_set1_id / EVP_PKEY_is_a API is 3.0's
            if version >> 28 < 3:
                reasons.append(f"{name}: OpenSSL {version:#x} is older than 3.0")
                continue
            # resolve every declared function now, so a libcrypto lacking one fails here, once
            for fn in ("EVP_PKEY_CTX_set1_id", "EVP_PKEY_CTX_new_from_name", "EVP_PKEY_is_a",
                       "EVP_PKEY_generate", "EVP_DigestSign", "EVP_DigestVerify", "EVP_PKCS82PKEY"):
                getattr(lib, fn)
        except AttributeError as e:
            reasons.append(f"{name}: {e}")
            continue
        return ffi, lib
    raise SM2Error("cannot load an OpenSSL 3 libcrypto for SM2: " + "; ".join(reasons))


def _openssl_reason(lib, ffi) -> str:
    """OpenSSL's reason for the last failure in this thread, then an empty error queue."""
    code = lib.ERR_get_error()
    reason = ""
    if code:
        r = lib.ERR_reason_error_string(code)
        ln = lib.ERR_lib_error_string(code)
        parts = [ffi.string(p).decode("ascii", "replace") for p in (ln, r) if p != ffi.NULL]
        if r == ffi.NULL:  # some libraries' reasons (SM2's in 3.0) have no text: give the code
            parts.append(f"reason {code & 0x7FFFFF}")
        reason = ": ".join(parts)
    lib.ERR_clear_error()
    return reason or "no reason given"


def _fail(what: str, exc=SM2Error):
    ffi, lib = _backend()
    return exc(f"{what} ({_openssl_reason(lib, ffi)})")


def _as_bytes(value, what: str):
    """A read-only cffi view of a bytes-like argument (no copy)."""
    if isinstance(value, str) or not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    return value


def _check_signer_id(signer_id) -> None:
    _as_bytes(signer_id, "signer_id")
    if len(signer_id) > MAX_SIGNER_ID:
        raise InputError(f"SM2 signer ID of {len(signer_id)} bytes is too long "
                         f"(at most {MAX_SIGNER_ID} bytes)")


def _bounded_der(der, limit: int, what: str):
    _as_bytes(der, what)
    if not der:
        raise MalformedInput(f"{what} is empty")
    if len(der) > limit:
        raise MalformedInput(f"{what} of {len(der)} bytes is too large (at most {limit} bytes)")
    return bytes(der)


def _spki_of(ffi, lib, pkey) -> bytes:
    """DER SubjectPublicKeyInfo of ``pkey`` as OpenSSL writes it."""
    n = lib.i2d_PUBKEY(pkey, ffi.NULL)
    if n <= 0 or n > MAX_PUBLIC_DER:
        raise _fail("cannot encode the SM2 public key")
    buf = ffi.new("unsigned char[]", n)
    p = ffi.new("unsigned char **", buf)
    if lib.i2d_PUBKEY(pkey, p) != n:
        raise _fail("cannot encode the SM2 public key")
    return bytes(ffi.buffer(buf, n))


#: OSSL_PARAM data types and EVP_PKEY_fromdata's selection for a public key (openssl/core.h,
#: openssl/evp.h: OSSL_KEYMGMT_SELECT_ALL_PARAMETERS | OSSL_KEYMGMT_SELECT_PUBLIC_KEY)
_OSSL_PARAM_UTF8_STRING, _OSSL_PARAM_OCTET_STRING = 4, 5
_EVP_PKEY_PUBLIC_KEY = 0x86


def _pkey_from_point(point: bytes):
    """An SM2 EVP_PKEY from an uncompressed point (0x04 || X || Y), checked on the curve."""
    ffi, lib = _backend()
    lib.ERR_clear_error()
    group, pub = ffi.new("char[]", b"SM2"), ffi.new("unsigned char[]", point)
    k_group, k_pub = ffi.new("char[]", b"group"), ffi.new("char[]", b"pub")  # alive until the call ends
    params = ffi.new("OSSL_PARAM[3]")
    params[0].key, params[0].data_type, params[0].data, params[0].data_size = (
        k_group, _OSSL_PARAM_UTF8_STRING, group, 3)
    params[1].key, params[1].data_type, params[1].data, params[1].data_size = (
        k_pub, _OSSL_PARAM_OCTET_STRING, pub, len(point))
    ctx = lib.EVP_PKEY_CTX_new_from_name(ffi.NULL, b"SM2", ffi.NULL)
    if ctx == ffi.NULL:
        raise _fail("the system libcrypto cannot make SM2 keys")
    out = ffi.new("EVP_PKEY **")
    try:
        if lib.EVP_PKEY_fromdata_init(ctx) != 1 or lib.EVP_PKEY_fromdata(ctx, out, _EVP_PKEY_PUBLIC_KEY, params) != 1:
            raise _fail("SM2 public key: the point is not on the SM2 curve", MalformedInput)
    finally:
        lib.EVP_PKEY_CTX_free(ctx)
    pkey = ffi.gc(out[0], lib.EVP_PKEY_free)
    check = lib.EVP_PKEY_CTX_new_from_pkey(ffi.NULL, pkey, ffi.NULL)
    if check == ffi.NULL:
        raise _fail("cannot check the SM2 public key")
    try:
        ok = lib.EVP_PKEY_public_check_quick(check)  # on the curve, not infinity (cofactor 1: complete)
    finally:
        lib.EVP_PKEY_CTX_free(check)
    if ok != 1:
        raise _fail("SM2 public key is not a valid point on the SM2 curve", MalformedInput)
    return pkey


def _check_pkey(ffi, lib, pkey, what: str, *, private: bool) -> bytes:
    """Refuse a decoded key that is not a valid SM2 key; return its canonical SPKI."""
    if not lib.EVP_PKEY_is_a(pkey, b"SM2"):
        lib.ERR_clear_error()
        raise UnsupportedKeyType(f"{what} is not an SM2 key (curve {SM2_CURVE_OID})")
    ctx = lib.EVP_PKEY_CTX_new_from_pkey(ffi.NULL, pkey, ffi.NULL)
    if ctx == ffi.NULL:
        raise _fail(f"cannot check {what}")
    try:
        # The public point: on the curve and not infinity. The order check of the full public
        # check (n*Q = O, a whole scalar multiplication) proves nothing more on SM2's curve,
        # whose cofactor is 1, so the quick check is the complete one here. A private key also:
        # the scalar in SM2's range [1, n-2] (1 + d must be invertible) and the point = d*G.
        ok = lib.EVP_PKEY_public_check_quick(ctx)
        if private and ok == 1:
            ok = lib.EVP_PKEY_private_check(ctx)
            if ok == 1:
                ok = lib.EVP_PKEY_pairwise_check(ctx)
    finally:
        lib.EVP_PKEY_CTX_free(ctx)
    if ok != 1:
        raise _fail(f"{what} is not a valid SM2 key", MalformedInput)
    if private:
        # a PKCS#8 key may carry its public point compressed; the SPKI unica writes and
        # compares is always the uncompressed, named-curve form
        if lib.EVP_PKEY_set_utf8_string_param(pkey, b"point-format", b"uncompressed") != 1:
            raise _fail(f"cannot use {what}")
    spki = _spki_of(ffi, lib, pkey)
    if len(spki) != _SPKI_LEN or not spki.startswith(_SPKI_PREFIX):
        raise UnsupportedKeyType(f"{what} is an SM2 key in a form unica does not use (it needs the "
                                 f"named curve {SM2_CURVE_OID} and an uncompressed point, not explicit "
                                 "curve parameters or a compressed point)")
    return spki


class SM2PublicKey:
    """An SM2 public key (a point on the SM2 curve); equal to another when the SPKIs are equal."""

    __slots__ = ("_pkey", "_spki", "__weakref__")

    def __init__(self, _pkey, _spki: bytes):
        # not public: use from_spki_der() or SM2PrivateKey.public_key()
        self._pkey = _pkey
        self._spki = _spki

    @classmethod
    def from_spki_der(cls, der: bytes) -> "SM2PublicKey":
        """Read a DER SubjectPublicKeyInfo (id-ecPublicKey, namedCurve SM2, uncompressed point).

        Anything but that exact canonical encoding is refused -- trailing bytes, a compressed
        point, explicit curve parameters -- so that two equal keys always have equal SPKIs.
        """
        der = _bounded_der(der, MAX_PUBLIC_DER, "SM2 public key DER")
        if len(der) == _SPKI_LEN and der.startswith(_SPKI_PREFIX):
            # the canonical encoding, byte for byte: build the key from its point directly
            # (OpenSSL 3's DER decoder costs ~5x more: it tries its decoders one by one)
            return cls(_pkey_from_point(der[len(_SPKI_PREFIX) - 1:]), der)
        ffi, lib = _backend()
        lib.ERR_clear_error()
        buf = ffi.from_buffer("unsigned char[]", der)
        p = ffi.new("const unsigned char **", buf)
        pkey = lib.d2i_PUBKEY(ffi.NULL, p, len(der))
        if pkey == ffi.NULL:
            raise _fail("SM2 public key DER is not a SubjectPublicKeyInfo", MalformedInput)
        pkey = ffi.gc(pkey, lib.EVP_PKEY_free)
        if p[0] - buf != len(der):
            lib.ERR_clear_error()
            raise MalformedInput("SM2 public key DER has trailing bytes after the SubjectPublicKeyInfo")
        spki = _check_pkey(ffi, lib, pkey, "the public key", private=False)
        if spki != der:
            raise MalformedInput("SM2 public key DER is not in the canonical form (named curve "
                                 "SM2, uncompressed point, DER)")
        return cls(pkey, spki)

    def spki_der(self) -> bytes:
        """DER SubjectPublicKeyInfo: id-ecPublicKey with the SM2 curve OID, uncompressed point
        (what ``openssl pkey -pubout -outform DER`` writes)."""
        return self._spki

    def verify(self, signature: bytes, data: bytes, *, signer_id: bytes = DEFAULT_ID) -> None:
        """Check an SM2-with-SM3 signature (DER ``SEQUENCE { r, s }``) over ``data`` by the holder
        of this key with the signer ID ``signer_id``; raise
        :class:`~unica.errors.SM2SignatureInvalid` if it does not verify."""
        _as_bytes(signature, "signature")
        _as_bytes(data, "data")
        _check_signer_id(signer_id)
        if not signature or len(signature) > MAX_SIGNATURE:
            raise SM2SignatureInvalid(f"SM2 signature of {len(signature)} bytes cannot be valid "
                                      f"(a DER SEQUENCE {{r, s}} of 8 to {MAX_SIGNATURE} bytes)")
        ffi, lib = _backend()
        lib.ERR_clear_error()  # a stale error of this thread must not become our reason
        mctx = lib.EVP_MD_CTX_new()
        pctx = lib.EVP_PKEY_CTX_new(self._pkey, ffi.NULL)
        try:
            if mctx == ffi.NULL or pctx == ffi.NULL:
                raise _fail("SM2 verification failed: out of memory")
            if lib.EVP_PKEY_CTX_set1_id(pctx, ffi.from_buffer(signer_id), len(signer_id)) != 1:
                raise _fail("SM2 verification failed: the signer ID was refused")
            lib.EVP_MD_CTX_set_pkey_ctx(mctx, pctx)
            if lib.EVP_DigestVerifyInit(mctx, ffi.NULL, _sm3_md, ffi.NULL, self._pkey) != 1:
                raise _fail("SM2 verification failed to start")
            rc = lib.EVP_DigestVerify(mctx, ffi.from_buffer("unsigned char[]", signature), len(signature),
                                      ffi.from_buffer("unsigned char[]", data), len(data))
        finally:
            lib.EVP_MD_CTX_free(mctx)  # does not free a pctx set with set_pkey_ctx
            lib.EVP_PKEY_CTX_free(pctx)
        if rc != 1:
            # 0: the equation does not hold; < 0: not a strict-DER SEQUENCE {r, s}, or r, s
            # out of range. Either way the signature is not valid for this key, ID and data.
            lib.ERR_clear_error()
            raise SM2SignatureInvalid(
                "SM2 signature does not verify (wrong key, signer ID or data)" if rc == 0 else
                "SM2 signature does not verify (not a valid DER SEQUENCE {r, s} for SM2)")

    def __eq__(self, other) -> bool:
        if not isinstance(other, SM2PublicKey):
            return NotImplemented
        return self._spki == other._spki

    def __hash__(self) -> int:
        return hash(self._spki)

    def __repr__(self) -> str:
        return f"<SM2PublicKey {self._spki[-64:-56].hex()}...>"


class SM2PrivateKey:
    """An SM2 private key held by the system libcrypto (never as a Python integer)."""

    __slots__ = ("_pkey", "_public", "_sig_size", "__weakref__")

    def __init__(self, _pkey, _spki: bytes):
        # not public: use generate() or from_pkcs8_der()
        ffi, lib = _backend()
        self._pkey = _pkey
        # the public half gets its own EVP_PKEY (decoded from the SPKI), so a public-key
        # object handed around never holds the private scalar
        self._public = SM2PublicKey.from_spki_der(_spki)
        self._sig_size = lib.EVP_PKEY_get_size(_pkey)
        if not 0 < self._sig_size <= MAX_SIGNATURE:
            raise SM2Error(f"unexpected SM2 signature size {self._sig_size} from libcrypto")

    @classmethod
    def generate(cls) -> "SM2PrivateKey":
        """A new key from OpenSSL's DRBG."""
        ffi, lib = _backend()
        lib.ERR_clear_error()
        ctx = lib.EVP_PKEY_CTX_new_from_name(ffi.NULL, b"SM2", ffi.NULL)
        if ctx == ffi.NULL:
            raise _fail("the system libcrypto cannot make SM2 keys")
        out = ffi.new("EVP_PKEY **")
        try:
            if lib.EVP_PKEY_keygen_init(ctx) != 1 or lib.EVP_PKEY_generate(ctx, out) != 1:
                raise _fail("SM2 key generation failed")
        finally:
            lib.EVP_PKEY_CTX_free(ctx)
        pkey = ffi.gc(out[0], lib.EVP_PKEY_free)
        return cls(pkey, _check_pkey(ffi, lib, pkey, "the generated key", private=True))

    @classmethod
    def from_pkcs8_der(cls, der: bytes) -> "SM2PrivateKey":
        """Read a plain (unencrypted) PKCS#8 DER PrivateKeyInfo holding an SM2 key.

        Only PKCS#8: a bare SEC1 ``ECPrivateKey`` (what ``openssl pkey -outform DER`` writes for
        an EC key) is refused, as are trailing bytes, non-SM2 keys and keys that fail OpenSSL's
        key checks (the scalar in SM2's range [1, n-2], the public point, if present, = d*G).
        """
        der = _bounded_der(der, MAX_PRIVATE_DER, "SM2 private key DER")
        ffi, lib = _backend()
        lib.ERR_clear_error()
        buf = ffi.from_buffer("unsigned char[]", der)
        p = ffi.new("const unsigned char **", buf)
        p8 = lib.d2i_PKCS8_PRIV_KEY_INFO(ffi.NULL, p, len(der))
        if p8 == ffi.NULL:
            raise _fail("SM2 private key DER is not a PKCS#8 PrivateKeyInfo", MalformedInput)
        try:
            if p[0] - buf != len(der):
                lib.ERR_clear_error()
                raise MalformedInput("SM2 private key DER has trailing bytes after the PKCS#8 structure")
            pkey = lib.EVP_PKCS82PKEY(p8)
        finally:
            lib.PKCS8_PRIV_KEY_INFO_free(p8)  # cleanses the key octets
        if pkey == ffi.NULL:
            reason = _openssl_reason(lib, ffi)
            # an algorithm OpenSSL does not know at all is still "not SM2"
            if "unsupported" in reason.lower():
                raise UnsupportedKeyType(f"the PKCS#8 key is not an SM2 key ({reason})")
            raise MalformedInput(f"SM2 private key DER does not hold a readable key ({reason})")
        pkey = ffi.gc(pkey, lib.EVP_PKEY_free)
        return cls(pkey, _check_pkey(ffi, lib, pkey, "the PKCS#8 key", private=True))

    def private_bytes_pkcs8(self) -> bytes:
        """PLAIN (unencrypted) PKCS#8 DER of this key.

        For one purpose only: to be encrypted at once by
        :func:`unica.hsm.software.encrypt_private_key` (scrypt + AES-256-CBC PBES2). Never write
        or log it as it is. The returned ``bytes`` cannot be wiped; OpenSSL's own copies are.
        """
        ffi, lib = _backend()
        lib.ERR_clear_error()
        p8 = lib.EVP_PKEY2PKCS8(self._pkey)
        if p8 == ffi.NULL:
            raise _fail("cannot encode the SM2 private key as PKCS#8")
        try:
            n = lib.i2d_PKCS8_PRIV_KEY_INFO(p8, ffi.NULL)
            if n <= 0 or n > MAX_PRIVATE_DER:
                raise _fail("cannot encode the SM2 private key as PKCS#8")
            buf = ffi.new("unsigned char[]", n)
            try:
                p = ffi.new("unsigned char **", buf)
                if lib.i2d_PKCS8_PRIV_KEY_INFO(p8, p) != n:
                    raise _fail("cannot encode the SM2 private key as PKCS#8")
                return bytes(ffi.buffer(buf, n))
            finally:
                ffi.memmove(buf, b"\0" * n, n)
        finally:
            lib.PKCS8_PRIV_KEY_INFO_free(p8)

    def public_key(self) -> SM2PublicKey:
        return self._public

    def sign(self, data: bytes, *, signer_id: bytes = DEFAULT_ID) -> bytes:
        """SM2 signature with SM3 over ``data`` (the Z value of GM/T 0009 with ``signer_id``
        included), DER ``SEQUENCE { r, s }``. Randomised: two signatures of the same data differ."""
        _as_bytes(data, "data")
        _check_signer_id(signer_id)
        ffi, lib = _backend()
        lib.ERR_clear_error()  # a stale error of this thread must not become our reason
        sig = ffi.new("unsigned char[]", self._sig_size)
        siglen = ffi.new("size_t *", self._sig_size)
        mctx = lib.EVP_MD_CTX_new()
        pctx = lib.EVP_PKEY_CTX_new(self._pkey, ffi.NULL)
        try:
            if mctx == ffi.NULL or pctx == ffi.NULL:
                raise _fail("SM2 signing failed: out of memory")
            if lib.EVP_PKEY_CTX_set1_id(pctx, ffi.from_buffer(signer_id), len(signer_id)) != 1:
                raise _fail("SM2 signing failed: the signer ID was refused")
            lib.EVP_MD_CTX_set_pkey_ctx(mctx, pctx)
            tbs = ffi.from_buffer("unsigned char[]", data)
            if (lib.EVP_DigestSignInit(mctx, ffi.NULL, _sm3_md, ffi.NULL, self._pkey) != 1
                    or lib.EVP_DigestSign(mctx, sig, siglen, tbs, len(data)) != 1):
                raise _fail("SM2 signing failed")
        finally:
            lib.EVP_MD_CTX_free(mctx)  # does not free a pctx set with set_pkey_ctx
            lib.EVP_PKEY_CTX_free(pctx)
        return bytes(ffi.buffer(sig, siglen[0]))

    def __repr__(self) -> str:
        return f"<SM2PrivateKey for {self._public!r}>"


def sm3(data: bytes) -> bytes:
    """SM3 digest (GB/T 32905) of ``data``, 32 bytes."""
    _as_bytes(data, "data")
    ffi, lib = _backend()
    lib.ERR_clear_error()
    out = ffi.new("unsigned char[32]")
    size = ffi.new("unsigned int *")
    ok = lib.EVP_Digest(ffi.from_buffer("unsigned char[]", data), len(data), out, size, _sm3_md, ffi.NULL)
    if ok != 1 or size[0] != 32:
        raise _fail("SM3 failed")
    return bytes(ffi.buffer(out, 32))


# the curve's a, b and base point (GB/T 32918.5 / GM/T 0003.5), as the Z value takes them
_CURVE_ABG = bytes.fromhex(
    "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC"
    "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93"
    "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7"
    "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")


def digest(public_key: SM2PublicKey, data: bytes, *, signer_id: bytes = DEFAULT_ID) -> bytes:
    """``e = SM3(Z || data)``, what an SM2 signature of ``data`` signs (GB/T 32918.2 6.1), with
    ``Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)``: for a signer that is given the
    digest (a PKCS#11 module's SM2 mechanism; see :mod:`unica.hsm.sm2map`)."""
    _as_bytes(data, "data")
    _check_signer_id(signer_id)
    point = public_key.spki_der()[-64:]  # xA || yA: the SPKI ends with the uncompressed point's coordinates
    z = sm3((len(signer_id) * 8).to_bytes(2, "big") + signer_id + _CURVE_ABG + point)
    return sm3(z + data)
