"""The registry of the CA as a service: enterprises, applications, enrollment, revocation requests.

    from unica import ra
    ra.add_enterprise(store, uscc=..., name=..., office=..., auth=...)
    app = ra.create_application(store, uscc=..., profile="enterprise-sign", holder="张三", auth=...)
    issued = ra.enroll(store, app["id"], code, csr_der, issuer=IssuingCA(store, app["ca_name"]), client=...)

See :mod:`unica.ra.registry` (enterprises, applications, dual control, codes),
:mod:`unica.ra.enrollment` (enroll, reenroll) and :mod:`unica.ra.revocations`.
"""

from unica.ra.enrollment import enroll, reenroll
from unica.ra.errors import (ApplicationNotFound, EnrollmentRefused, EnterpriseNotFound, RegistryConflict,
                             RegistryRefused, RevocationRequestNotFound)
from unica.ra.registry import (DEFAULT_CODE_LIFETIME, MAX_CODE_FAILURES, add_enterprise, application_status,
                               create_application, decide_application, enterprise_applications,
                               enterprise_certificates, enterprise_of_certificate, get_application, get_enterprise,
                               list_applications, list_enterprises, registry_subject, set_enterprise_status,
                               submit_application)
from unica.ra.revocations import (decide_revocation, get_revocation_request, list_revocation_requests,
                                  request_revocation)

__all__ = ["ApplicationNotFound", "DEFAULT_CODE_LIFETIME", "EnrollmentRefused", "EnterpriseNotFound",
           "MAX_CODE_FAILURES", "RegistryConflict", "RegistryRefused", "RevocationRequestNotFound", "add_enterprise",
           "application_status", "create_application", "decide_application", "decide_revocation", "enroll",
           "enterprise_applications", "enterprise_certificates", "enterprise_of_certificate", "get_application",
           "get_enterprise", "get_revocation_request", "list_applications", "list_enterprises",
           "list_revocation_requests", "reenroll", "registry_subject", "request_revocation", "set_enterprise_status",
           "submit_application"]
