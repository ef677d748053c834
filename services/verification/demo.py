"""Demo staff for `make run` (kezek/demo.py calls `load`): one account of
every role for the demo districts and kindergartens, each with something to
do in the demo data (referrals waiting at bishkek-12 and osh-5, a
publication on the Leninsky district's schedule, the figures, the audit
log). Created as `kezek staff-add` creates accounts (the scope checked
against the queue's register); an account already there is left as it is.
Development only: the password is printed beside the staff pages' address."""
from __future__ import annotations

from kezek.demo import LENINSKY, OSH
from kezek.settings import Settings
from kezek.trust import ServiceKeys
from services.verification import domain as d

PASSWORD = "kezek-demo-2027"
# login, full name (in Latin letters: the module carries no text of the pages), role, district,
# kindergarten, language of the pages
STAFF = (
    ("kg-bishkek-12", "Aigul Sadykova", "kindergarten", "", "bishkek-12", "ky"),
    ("kg-osh-5", "Nilufar Yusupova", "kindergarten", "", "osh-5", "ru"),
    ("district-leninsky", "Bakyt Osmonov", "district", LENINSKY, "", "ru"),
    ("district-osh", "Dilnoza Ibraimova", "district", OSH, "", "ky"),
    ("caseworker-leninsky", "Aida Asanova", "caseworker", LENINSKY, "", "ru"),
    ("supervisor-leninsky", "Chynara Toktosunova", "supervisor", LENINSKY, "", "ru"),
    ("commission-leninsky", "Emil Zhumabekov", "commission", LENINSKY, "", "ky"),
    ("admin", "Administrator", "admin", "", "", "ru"),
    ("operator", "Operator", "operator", "", "", "ru"),
)


def load(settings: Settings) -> list[str]:
    """Creates the demo staff (once); answers the lines that tell their logins."""
    if settings.env == "production":
        return []
    from services.verification import bootstrap
    from services.verification.queue import QueueDirectory

    service = bootstrap.build(settings)
    directory = QueueDirectory(settings.url_of("queue"), ServiceKeys.from_settings(settings))
    try:
        for login, name, role, district, kindergarten, locale in STAFF:
            try:
                service.staff.add(login, name, role, district, PASSWORD, locale, kindergarten=kindergarten,
                                  directory=directory)
            except d.Refused as exc:
                if [e.code for e in exc.errors] != ["login_taken"]:
                    raise RuntimeError(f"demo staff {login}: {exc}") from exc
    finally:
        directory.close()
        service.close()
    width = max(len(s[0]) for s in STAFF)
    return [f"demo staff, password {PASSWORD}:"] + [
        f"  {login:<{width}}  {role}{' of ' + (kindergarten or district) if kindergarten or district else ''}"
        for login, _name, role, district, kindergarten, _locale in STAFF]
