"""Joint operation: operators on their own cards, roles per RA office, dual control.

    from unica.auth import Operation, OperatorSigner, authorize, authorized

See :mod:`unica.auth.guard` for the check every state-changing operation passes,
:mod:`unica.auth.operators` for managing operators, offices and approval rules, and
:mod:`unica.auth.approvals` for requests under dual control.
"""

from unica.auth.guard import PER_ITEM, UNSCOPED, Actor, ApprovedExecution, TLSClient, authorize, authorized
from unica.auth.operation import CA_LEVEL_PROFILES, PERMITTED, ROLES, Operation
from unica.auth.proof import OperatorSigner, Proof

__all__ = ["Actor", "ApprovedExecution", "CA_LEVEL_PROFILES", "Operation", "OperatorSigner", "PERMITTED", "Proof",
           "PER_ITEM", "ROLES", "TLSClient", "UNSCOPED", "authorize", "authorized"]
