"""Certificate policy processing, RFC 5280 6.1.2 (c)(d)(e)(f), 6.1.3 (d)-(f), 6.1.4 (a)(b)(h)-(j),
6.1.5 (a)(b)(g), with the valid_policy_tree kept level by level."""

from __future__ import annotations

from typing import Sequence

from cryptography import x509

ANY = "2.5.29.32.0"


class _Node:
    __slots__ = ("policy", "expected", "parent", "children")

    def __init__(self, policy: str, expected: set[str], parent: "_Node | None"):
        self.policy, self.expected, self.parent, self.children = policy, expected, parent, []
        if parent is not None:
            parent.children.append(self)


def _ext(cert, cls):
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


_POLICY_MAPPINGS = x509.ObjectIdentifier("2.5.29.33")


def _policy_mappings(cert) -> list[tuple[str, str]] | None:
    """(issuerDomainPolicy, subjectDomainPolicy) pairs; cryptography does not parse this one."""
    try:
        ext = cert.extensions.get_extension_for_oid(_POLICY_MAPPINGS).value
    except x509.ExtensionNotFound:
        return None
    from asn1crypto import x509 as ax

    raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else ext.public_bytes()
    return [(m["issuer_domain_policy"].dotted, m["subject_domain_policy"].dotted)
            for m in ax.PolicyMappings.load(raw)]


def _needs_processing(chain, initial_policies, require_explicit) -> bool:
    if require_explicit or initial_policies:
        return True
    for c in chain:
        for cls in (x509.PolicyConstraints, x509.InhibitAnyPolicy):
            if _ext(c, cls) is not None:
                return True
        if _policy_mappings(c) is not None:
            return True
    return False


def policy_problems(chain: Sequence[x509.Certificate], initial_policies: frozenset[str] | None = None,
                    require_explicit: bool = False) -> list[str]:
    """``chain`` is leaf first, trust anchor last. Empty list: policy processing succeeded."""
    if not _needs_processing(chain, initial_policies, require_explicit):
        return []
    path = list(reversed(chain[:-1]))  # the trust anchor is not processed
    n = len(path)
    explicit = 0 if require_explicit else n + 1
    inhibit_any = n + 1
    mapping = n + 1
    root = _Node(ANY, {ANY}, None)
    levels: list[list[_Node]] = [[root]]
    tree_null = False

    def prune(depth: int) -> None:
        nonlocal tree_null
        for d in range(depth - 1, -1, -1):
            keep = []
            for node in levels[d]:
                if node.children:
                    keep.append(node)
                elif node.parent is not None:
                    node.parent.children.remove(node)
            levels[d] = keep
        if not levels[0]:
            tree_null = True

    for i, cert in enumerate(path, start=1):
        self_issued = cert.issuer == cert.subject
        cps = _ext(cert, x509.CertificatePolicies)
        if cps is not None and not tree_null:
            pols = [p.policy_identifier.dotted_string for p in cps]
            level: list[_Node] = []
            for p in pols:
                if p == ANY:
                    continue
                matched = False
                for node in levels[i - 1]:
                    if p in node.expected:
                        level.append(_Node(p, {p}, node))
                        matched = True
                if not matched:
                    for node in levels[i - 1]:
                        if node.policy == ANY:
                            level.append(_Node(p, {p}, node))
            if ANY in pols and (inhibit_any > 0 or (i < n and self_issued)):
                for node in levels[i - 1]:
                    have = {ch.policy for ch in node.children}
                    for ep in sorted(node.expected):
                        if ep not in have:
                            level.append(_Node(ep, {ep}, node))
            levels.append(level)
            prune(i)
            if not level:
                tree_null = True
        else:
            tree_null = True
            levels.append([])
        if explicit <= 0 and tree_null:
            return [f"certificate policy processing failed at {cert.subject.rfc4514_string() or 'certificate'} "
                    f"(depth {i}): an explicit policy is required and no valid policy remains"]
        if i == n:
            break
        # preparation for the next certificate (6.1.4)
        pm = _policy_mappings(cert)
        if pm is not None:
            maps: dict[str, set[str]] = {}
            for idp, sdp in pm:
                if ANY in (idp, sdp):
                    return [f"{cert.subject.rfc4514_string()}: policy mapping to or from anyPolicy (RFC 5280 6.1.4 (a))"]
                maps.setdefault(idp, set()).add(sdp)
            if not tree_null:
                for idp, sdps in maps.items():
                    nodes = [nd for nd in levels[i] if nd.policy == idp]
                    if mapping > 0:
                        if nodes:
                            for nd in nodes:
                                nd.expected = set(sdps)
                        else:
                            for nd in levels[i]:
                                if nd.policy == ANY and nd.parent is not None:
                                    levels[i].append(_Node(idp, set(sdps), nd.parent))
                                    break
                    else:
                        for nd in nodes:
                            levels[i].remove(nd)
                            nd.parent.children.remove(nd)
                        prune(i)
                        if not levels[i]:
                            tree_null = True
        if not self_issued:
            explicit = max(explicit - 1, 0) if explicit else 0
            mapping = max(mapping - 1, 0) if mapping else 0
            inhibit_any = max(inhibit_any - 1, 0) if inhibit_any else 0
        pc = _ext(cert, x509.PolicyConstraints)
        if pc is not None:
            if pc.require_explicit_policy is not None:
                explicit = min(explicit, pc.require_explicit_policy)
            if pc.inhibit_policy_mapping is not None:
                mapping = min(mapping, pc.inhibit_policy_mapping)
        ia = _ext(cert, x509.InhibitAnyPolicy)
        if ia is not None:
            inhibit_any = min(inhibit_any, ia.skip_certs)
    # wrap-up (6.1.5)
    if explicit:
        explicit -= 1
    pc = _ext(path[-1], x509.PolicyConstraints) if path else None
    if pc is not None and pc.require_explicit_policy == 0:
        explicit = 0
    if tree_null:
        valid = set()
    else:
        leaf_level = levels[n] if len(levels) > n else []
        valid = {nd.policy for nd in leaf_level}
        if initial_policies and ANY not in initial_policies:
            valid = set(initial_policies) if ANY in valid else valid & set(initial_policies)
    if explicit <= 0 and not valid:
        return ["certificate policy processing failed: an explicit policy is required and the "
                "path has no acceptable certificate policy"]
    return []
