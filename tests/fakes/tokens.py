"""Service tokens for tests that call an internal API as another service
would (kezek.trust): signed with the keys the settings derive."""
from __future__ import annotations

from kezek.trust import Principal, ServiceKeys, parent_principal, service_principal, staff_principal


class Callers:
    """Authorization headers for `audience`, as each kind of caller sends them."""

    def __init__(self, settings, audience: str):
        self.keys = ServiceKeys.from_settings(settings)
        self.audience = audience

    def header(self, caller: str, who: Principal | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys.sign(caller, self.audience, who)}"}

    def service(self, name: str) -> dict[str, str]:
        return self.header(name, service_principal(name))

    def parent(self, family: str) -> dict[str, str]:
        """A parent, as the gateway vouches for one."""
        return self.header("gateway", parent_principal(family))

    def staff(self, staff_id, role: str, **scope) -> dict[str, str]:
        """A member of staff, as the staff pages vouch for one."""
        return self.header("verification", staff_principal(staff_id, role, **scope))

    def admin(self, staff_id="1") -> dict[str, str]:
        """An administrator at the console."""
        return self.header("cli", staff_principal(staff_id, "admin"))
