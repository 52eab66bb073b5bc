"""SM2 keys on PKCS#11 modules that have them: the module-specific mechanism mapping.

PKCS#11 (up to 3.1) defines no SM2 key type and no SM2 mechanism. Modules that do SM2 (the
Chinese HSMs and USB keys) each give it vendor-defined codes (``CKK_VENDOR_DEFINED | x``,
``CKM_VENDOR_DEFINED | y``), and XiPKI, for one, maps its own names onto each module's codes in
the module's configuration. unica does the same in the home's ``config.toml``::

    [[pkcs11.sm2]]
    module = "/opt/vendor/lib/libvendor-pkcs11.so"  # as UNICA_PKCS11_MODULE names the module
    key_type = 0x80000101   # CKA_KEY_TYPE of SM2 key pairs on this module
    keygen = 0x80000201     # the SM2 key-pair generation mechanism
    sign = 0x80000202       # SM2 signature of a 32-byte digest e (the vendor's "SM2" / "SM2 raw")

The signature mechanism is the one that signs a digest the caller computed (like ``CKM_ECDSA``
for ECDSA), never one that hashes on the token: unica computes ``e = SM3(Z || M)`` itself, with
the signer ID of GM/T 0009 (:func:`unica.sm2.digest`), so the ID is the same whatever the
module does with IDs. The token answers ``r || s`` (64 bytes) or a DER ``SEQUENCE``; either is
accepted, and every signature is verified with the public key before it is used, so a mapping
that names a mechanism which is not SM2 over ``e`` fails at its first signature and never makes
a certificate, a CRL or a response.

What was run: SoftHSM2 (the tests' HSM) has no SM2. The tests map ``sm2`` onto SoftHSM2's EC
key type and ``CKM_EC_KEY_PAIR_GEN`` / ``CKM_ECDSA`` on the SM2 curve -- which makes keys on the
right curve but ECDSA signatures, not SM2 ones -- to run the plumbing (generation, reading the
key back as SM2, digest, raw-to-DER) and to show that the check refuses the result. No module
with real SM2 mechanisms was available, so none is claimed to work.
"""

from __future__ import annotations

from dataclasses import dataclass

from unica.errors import ConfigurationError

#: the fields of one ``[[pkcs11.sm2]]`` entry, each a CK_ULONG given as an integer (0x... in TOML)
FIELDS = ("key_type", "keygen", "sign")
_MAX_ULONG = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class SM2Mechanisms:
    """One module's SM2 codes."""

    module: str
    key_type: int
    keygen: int
    sign: int


def parse_mappings(value, where: str) -> tuple[SM2Mechanisms, ...]:
    """The ``pkcs11.sm2`` entries of a configuration (strict: unknown or missing keys, values
    that are not integers in CK_ULONG range, and two entries for one module are refused)."""
    if not isinstance(value, list):
        raise ConfigurationError(f"{where}: pkcs11.sm2 must be an array of tables ([[pkcs11.sm2]])")
    out: dict[str, SM2Mechanisms] = {}
    for i, entry in enumerate(value):
        at = f"{where}: pkcs11.sm2[{i}]"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{at}: must be a table")
        unknown = sorted(set(entry) - {"module", *FIELDS})
        if unknown:
            raise ConfigurationError(f"{at}: unknown key {unknown[0]!r} (known: module, {', '.join(FIELDS)})")
        module = entry.get("module")
        if not isinstance(module, str) or not module:
            raise ConfigurationError(f"{at}: module must be the PKCS#11 module's path")
        codes = {}
        for f in FIELDS:
            v = entry.get(f)
            if v is None:
                raise ConfigurationError(f"{at}: {f} is missing (the module's code, e.g. 0x80000001)")
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _MAX_ULONG:
                raise ConfigurationError(f"{at}: {f} must be an unsigned integer (e.g. 0x80000001), not {v!r}")
            codes[f] = v
        if module in out:
            raise ConfigurationError(f"{at}: a second mapping for module {module}")
        out[module] = SM2Mechanisms(module, **codes)
    return tuple(out.values())


def mechanisms_for(module: str) -> SM2Mechanisms | None:
    """The SM2 mapping of ``module`` in the home's configuration (None: the module has none)."""
    import os

    from unica.config import load_config

    real = os.path.realpath(module)
    for m in load_config().pkcs11_sm2:
        if m.module == module or os.path.realpath(m.module) == real:
            return m
    return None


def vendor_mechanism(code: int):
    """python-pkcs11's Mechanism for ``code``, also for a vendor code its enum does not list
    (it takes only members: the pseudo-member carries the number through unchanged)."""
    from pkcs11 import Mechanism

    try:
        return Mechanism(code)
    except ValueError:
        m = int.__new__(Mechanism, code)
        m._name_ = f"VENDOR_{code:#x}"
        m._value_ = code
        return m

