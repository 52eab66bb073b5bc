"""unica: a public-key infrastructure toolkit.

Parts: ``unica.hsm`` (keys on software and PKCS#11 tokens), ``unica.policies``
(certificate profiles), ``unica.store`` (database), ``unica.ca`` (issuance, CRLs),
``unica.ocsp`` (responder), ``unica.verify`` (verification library), ``unica.cli``.
"""

__version__ = "0.1.0"
