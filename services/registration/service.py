"""Registration use cases: load -> rules (domain.py, limits.py) -> save +
outbox rows + audit record, in one transaction each. Secrets leave this
service only once, to their owner: the draft token and the session token to
the caller, the e-mail code and the activation link through the outbox to
the notifications service, sealed (sealing.py) so that no reader of the
Kafka topics but that service sees them.

`RegistrationService` is the one object the API, the consumer, the jobs and
the importer use; its parts live in `usecases/`."""
from __future__ import annotations

from services.registration.usecases.accounts import (  # noqa: F401  (the service's vocabulary)
    ACTIVATION_ISSUED, SECRET_EVENTS, SIGN_IN_FAILED, Accounts, Identity,
)
from services.registration.usecases.context import (  # noqa: F401
    ITSELF, Caller, KindergartenCheck, NotFound, Unauthorized, aware, refuse,
)
from services.registration.usecases.drafts import CODE_ISSUED, Drafts, Submitted  # noqa: F401
from services.registration.usecases.family import Family
from services.registration.usecases.imports import ImportAccount, ImportApplication, Imports  # noqa: F401


class RegistrationService(Drafts, Accounts, Imports, Family):
    """Drafts and submission, accounts and sessions, imports, the family's
    own copy: one context."""
