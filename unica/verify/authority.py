"""The authoritative RFC 5280 engine: pyhanko-certvalidator.

Every path that the fast path (:mod:`unica.verify.fastpath`) does not accept is decided here:
path building (over the supplied intermediates, and caIssuers when fetching is allowed),
the section 6 algorithm (name constraints of every form, certificate policies with mappings
and the four initial inputs, path length, critical extensions), and revocation per section
6.3 (CRL scope and distribution points, separate CRL issuers, indirect and delta CRLs,
onlySomeReasons, OCSP with delegated responders). pyhanko-certvalidator passes the
independent conformance suites this decision is graded against; unica does not second-guess
an acceptance, it only adds refusals (usage, strict profile rules, TLS rules).

The result is mapped to EN 319 102-1 indications here; nothing raises out of
:func:`validate`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import ipaddress
import logging
import threading
from typing import Sequence

from asn1crypto import crl as acrl, ocsp as aocsp, x509 as ax

from .report import SubIndication, rfc5280_reason_name

ANY_POLICY = "2.5.29.32.0"
_PYHANKO_ANY = "any_policy"


@dataclasses.dataclass(frozen=True)
class PathPolicy:
    """The RFC 5280 6.1.1 inputs a relying party chooses, and whether the CA profile rules
    of section 4 are enforced as well (``strict``)."""

    initial_policies: frozenset[str] | None = None
    require_explicit_policy: bool = False
    inhibit_policy_mapping: bool = False
    inhibit_any_policy: bool = False
    strict: bool = False

    @property
    def plain(self) -> bool:
        """True when policy processing cannot make a path fail by the relying party's inputs."""
        return not (self.initial_policies or self.require_explicit_policy or self.inhibit_policy_mapping
                    or self.inhibit_any_policy)

    def override(self, policies=None, require_explicit_policy=None, inhibit_policy_mapping=None,
                 inhibit_any_policy=None, strict=None) -> "PathPolicy":
        """This policy with the keywords that are not None replaced."""
        if all(v is None for v in (policies, require_explicit_policy, inhibit_policy_mapping,
                                   inhibit_any_policy, strict)):
            return self
        from .verifier import path_policy

        return path_policy(
            self.initial_policies if policies is None else policies,
            self.require_explicit_policy if require_explicit_policy is None else require_explicit_policy,
            self.inhibit_policy_mapping if inhibit_policy_mapping is None else inhibit_policy_mapping,
            self.inhibit_any_policy if inhibit_any_policy is None else inhibit_any_policy,
            self.strict if strict is None else strict)

    def pkix_params(self):
        from pyhanko_certvalidator.policy_decl import PKIXValidationParams

        # pyhanko-certvalidator names anyPolicy as asn1crypto does
        init = frozenset(_PYHANKO_ANY if p == ANY_POLICY else p for p in (self.initial_policies or {ANY_POLICY}))
        return PKIXValidationParams(
            user_initial_policy_set=init,
            initial_policy_mapping_inhibit=self.inhibit_policy_mapping,
            initial_explicit_policy=self.require_explicit_policy,
            initial_any_policy_inhibit=self.inhibit_any_policy,
        )


DEFAULT_PATH_POLICY = PathPolicy()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the authority decided. ``sub`` is None when the path is valid."""

    sub: SubIndication | None
    message: str | None
    #: DER of the certificates of the chosen (or failed) path, leaf first, anchor last
    path_der: tuple[bytes, ...]
    #: (policy, issuer-domain policy, qualifiers as asn1crypto natives) of the valid policy set
    policies: tuple = ()
    revocation_time: _dt.datetime | None = None
    revocation_reason: str | None = None
    revoked_index: int | None = None
    #: soft-fail tolerated missing revocation data for some certificate of the path
    soft_fail_used: bool = False


# --- iPAddress name constraints -----------------------------------------------------------


def _ip_tree_contains(base: str, other: str) -> bool:
    """RFC 5280 4.2.1.10 iPAddress subtrees, which pyhanko-certvalidator 0.33 leaves to be
    supplied ("TODO support IP address constraints"): ``base`` is asn1crypto's
    ``address/prefix`` and ``other`` an address. Malformed values raise, which the engine
    turns into a refusal (unica refuses non-contiguous masks before this is reached)."""
    net = ipaddress.ip_network(base, strict=False)
    addr = ipaddress.ip_address(other)
    return addr.version == net.version and addr in net


def _register_ip_constraints() -> None:
    from pyhanko_certvalidator import name_trees

    name_trees._name_type_checkers.setdefault(name_trees.GeneralNameType.IP_ADDRESS, _ip_tree_contains)


_register_ip_constraints()
# pyhanko-certvalidator logs the failures it recovers from (with tracebacks) at WARNING; they
# are reasons inside a result, not events: keep them off the process's stderr
logging.getLogger("pyhanko_certvalidator").addHandler(logging.NullHandler())


# --- a per-thread event loop ---------------------------------------------------------------

_local = threading.local()


def run(coro):
    """Run a coroutine to completion from synchronous code, reusing one loop per thread.
    Inside a running loop (e.g. an ASGI handler) the work goes to a short-lived thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = getattr(_local, "loop", None)
        if loop is None or loop.is_closed():
            loop = _local.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coro)
    box: dict = {}

    def worker():
        try:
            box["v"] = asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            box["e"] = e

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["v"]


# --- algorithms ----------------------------------------------------------------------------


def _algorithm_policy():
    """SHA-1, MD5 and MD2 and DSA are refused; RSA below 2048 bits too."""
    from pyhanko_certvalidator.policy_decl import DisallowWeakAlgorithmsPolicy

    return DisallowWeakAlgorithmsPolicy(
        weak_hash_algos=frozenset({"md2", "md5", "sha1"}),
        weak_signature_algos=frozenset({"dsa", "sha1_dsa", "sha224_dsa", "sha256_dsa", "md5_rsa",
                                        "sha1_rsa", "md2_rsa", "sha1_ecdsa"}),
        rsa_key_size_threshold=2048,
        dsa_key_size_threshold=1 << 30,
    )


_ALGS = None


def algorithm_policy():
    global _ALGS
    if _ALGS is None:
        _ALGS = _algorithm_policy()
    return _ALGS


def _rules(ee: str, ca: str, check_ca: bool):
    """pyhanko's rule pair: "require" (a CRL or OCSP answer), "soft" (checked where the
    certificate names a source; failing to obtain data tolerated) or "off"."""
    from pyhanko_certvalidator.policy_decl import RevocationCheckingPolicy, RevocationCheckingRule as R

    rule = {"require": R.CRL_OR_OCSP_REQUIRED, "soft": R.CHECK_IF_DECLARED_SOFT, "off": R.NO_CHECK}
    return RevocationCheckingPolicy(rule[ee], rule[ca] if check_ca else R.NO_CHECK)


#: soft-fail, in stages: what can be checked is checked. First everything is required; when
#: data is missing, the end-entity certificate is still required while the CAs are tolerated,
#: then the reverse, and only then is everything tolerated. A revocation the data at hand
#: shows is never hidden by data missing for another certificate of the path.
_SOFT_STAGES = (("require", "require"), ("require", "soft"), ("soft", "require"), ("soft", "soft"))
_MODES = {"off": (("off", "off"),), "hard-fail": (("require", "require"),), "soft-fail": _SOFT_STAGES}


def reason_name(native) -> str | None:
    """The RFC 5280 name of a revocation reason from pyhanko/asn1crypto (``keyCompromise``); an
    unrecognised value is given back as text rather than raising (the report must still be made)."""
    try:
        return rfc5280_reason_name(native)
    except (TypeError, ValueError):
        return str(native)


# --- the validation ------------------------------------------------------------------------


def validate(leaf: ax.Certificate, *, anchors: Sequence[ax.Certificate], intermediates: Sequence[ax.Certificate],
             at: _dt.datetime, crls: Sequence[acrl.CertificateList], ocsps: Sequence[aocsp.OCSPResponse],
             mode: str, check_ca: bool, policy: PathPolicy, fetchers=None, trust_manager=None) -> Outcome:
    """Validate ``leaf`` at ``at``; never raises."""
    try:
        def stage(ee, ca):
            return run(_validate(leaf, anchors, intermediates, at, crls, ocsps, _rules(ee, ca, check_ca), policy,
                                 fetchers, trust_manager))

        stages = _MODES[mode]
        for n, (ee, ca) in enumerate(stages):
            out = stage(ee, ca)
            if out.sub is not SubIndication.TRY_LATER:
                return dataclasses.replace(out, soft_fail_used=n > 0)
        if mode == "hard-fail" and check_ca:
            # CA data missing: still say REVOKED when the end-entity's own data shows it
            # (pyhanko checks from the anchor down and stops at the first gap)
            ee_only = stage("require", "off")
            if ee_only.sub in (SubIndication.REVOKED, SubIndication.REVOKED_NO_POE):
                return ee_only
        return out
    except Exception as e:  # an engine failure on odd input is a refusal, never a pass
        return Outcome(SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE,
                       f"path validation could not be completed: {type(e).__name__}: {_one_line(e)}",
                       (leaf.dump(),))


def _one_line(e) -> str:
    return " ".join(str(e).split())


async def _validate(leaf, anchors, intermediates, at, crls, ocsps, rules, policy, fetchers,
                    trust_manager) -> Outcome:
    from pyhanko_certvalidator import CertificateValidator, ValidationContext
    from pyhanko_certvalidator.errors import (
        DisallowedAlgorithmError, ExpiredError, InsufficientRevinfoError, InvalidCertificateError,
        NotYetValidError, PathBuildingError, PathValidationError, RevokedError, ValidationError,
    )
    from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy

    from unica.verify.sm2sig import SIGNATURE_VALIDATOR

    kw = {}
    if trust_manager is not None:
        kw["trust_manager"] = trust_manager
    else:
        kw["trust_roots"] = list(anchors)
    ctx = ValidationContext(
        other_certs=list(intermediates), moment=at, allow_fetching=fetchers is not None,
        fetchers=fetchers, crls=list(crls), ocsps=list(ocsps),
        revinfo_policy=CertRevTrustPolicy(rules, retroactive_revinfo=True),
        algorithm_usage_policy=algorithm_policy(), time_tolerance=_dt.timedelta(seconds=1),
        signature_validator=SIGNATURE_VALIDATOR, **kw,
    )
    v = CertificateValidator(leaf, validation_context=ctx, pkix_params=policy.pkix_params())
    try:
        path = await v.async_validate_path()
    except RevokedError as e:
        idx = _index_in(e, leaf)
        sub = SubIndication.REVOKED if (e.is_ee_cert and not e.is_side_validation) else SubIndication.REVOKED_CA_NO_POE
        rt = e.revocation_dt
        if rt is not None and rt.tzinfo is None:
            rt = rt.replace(tzinfo=_dt.timezone.utc)
        return Outcome(sub, _one_line(e), _path_der(e, leaf), revocation_time=rt,
                       revocation_reason=reason_name(getattr(e.reason, "native", e.reason)), revoked_index=idx)
    except DisallowedAlgorithmError as e:
        return Outcome(SubIndication.CRYPTO_CONSTRAINTS_FAILURE, _one_line(e), _path_der(e, leaf))
    except (ExpiredError, NotYetValidError) as e:
        expired = isinstance(e, ExpiredError)
        if e.is_ee_cert and not e.is_side_validation:
            sub = SubIndication.EXPIRED if expired else SubIndication.NOT_YET_VALID
        else:
            sub = SubIndication.OUT_OF_BOUNDS_NO_POE
        return Outcome(sub, _one_line(e), _path_der(e, leaf), revoked_index=_index_in(e, leaf))
    except InsufficientRevinfoError as e:
        return Outcome(SubIndication.TRY_LATER, _one_line(e), _path_der(e, leaf))
    except PathBuildingError as e:
        return Outcome(SubIndication.NO_CERTIFICATE_CHAIN_FOUND, _one_line(e), (leaf.dump(),))
    except PathValidationError as e:
        msg = _one_line(e)
        low = msg.lower()
        if "polic" in low:
            sub = SubIndication.POLICY_PROCESSING_ERROR
        elif "algorithm" in low and ("not allowed" in low or "weak" in low or "disallowed" in low):
            sub = SubIndication.CRYPTO_CONSTRAINTS_FAILURE
        else:
            sub = SubIndication.CHAIN_CONSTRAINTS_FAILURE
        return Outcome(sub, msg, _path_der(e, leaf))
    except InvalidCertificateError as e:
        msg = _one_line(e)
        if "self-signed" in msg:
            return Outcome(SubIndication.NO_CERTIFICATE_CHAIN_FOUND, msg, (leaf.dump(),))
        return Outcome(SubIndication.CHAIN_CONSTRAINTS_FAILURE, msg, (leaf.dump(),))
    except ValidationError as e:
        return Outcome(SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE, _one_line(e), (leaf.dump(),))
    ders = tuple(c.dump() for c in reversed(list(path.iter_certs(include_root=True))))
    return Outcome(None, None, ders, policies=_policies(path))


def _path_der(e, leaf) -> tuple[bytes, ...]:
    """The path that failed, leaf first; for a failure met validating a CRL issuer or OCSP
    responder (side validation), the main path."""
    try:
        p = e.original_path
        return tuple(c.dump() for c in reversed(list(p.iter_certs(include_root=True))))
    except Exception:  # the exception carries no usable path
        return (leaf.dump(),)


def _index_in(e, leaf) -> int | None:
    """Position (0 = leaf) in the main path of the certificate the failure is about."""
    try:
        if e.is_side_validation:
            return None
        cur = e.current_path
        certs = list(reversed(list(cur.iter_certs(include_root=True))))
        return 0 if e.is_ee_cert else None if not certs else None
    except Exception:  # no path on the exception
        return None


def _oid(policy: str) -> str:
    return ANY_POLICY if policy == _PYHANKO_ANY else policy


def _policies(path) -> tuple:
    try:
        qp = path.qualified_policies()
    except Exception:  # policy data pyhanko could not summarise: report none
        return ()
    if not qp:
        return ()
    out = []
    for q in qp:
        quals = []
        for qual in q.qualifiers or ():
            try:
                quals.append((qual["policy_qualifier_id"].native, qual["qualifier"].native))
            except Exception:  # an unparsable qualifier is left out of the report
                continue
        out.append((_oid(q.user_domain_policy_id), _oid(q.issuer_domain_policy_id), tuple(quals)))
    return tuple(sorted(out, key=lambda t: t[0]))
