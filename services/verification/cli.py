"""`kezek staff-add`: creates a staff account of the staff pages
(caseworker, district supervisor, commission member, kindergarten staff,
district education officer, administrator, operator). The kindergarten of
kindergarten staff and the district of a district officer must exist in the
queue's register (asked over its API, as the console). The password comes
from KEZEK_STAFF_PASSWORD, standard input (--password-stdin) or a prompt;
never from the command line, where `ps` would show it."""
from __future__ import annotations

import argparse
import getpass
import os
import sys

from kezek import refusals
from kezek.migrations import upgrade
from services.verification import domain as d


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek staff-add", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("login")
    p.add_argument("--name", required=True, help="full name, as printed on decision records")
    p.add_argument("--role", required=True, choices=[r.value for r in d.Role])
    p.add_argument("--district", default="",
                   help="territory code of the district (caseworkers, supervisors, the commission, district officers)")
    p.add_argument("--kindergarten", default="", help="the kindergarten's id (kindergarten staff)")
    p.add_argument("--locale", default="ru", choices=list(d.STAFF_LANGUAGES))
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    args = p.parse_args(argv)

    from kezek.trust import ServiceKeys
    from services.verification import bootstrap
    from services.verification.queue import QueueDirectory
    from services.verification.settings import as_settings

    settings = as_settings(None)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = os.environ.get("KEZEK_STAFF_PASSWORD") or getpass.getpass("password: ")
    url = settings.database_url_for("verification")
    upgrade("verification", url, settings=settings)
    service = bootstrap.build(settings)
    directory = QueueDirectory(settings.url_of("queue"), ServiceKeys.from_settings(settings))
    try:
        staff_id = service.staff.add(args.login, args.name, args.role, args.district, password, args.locale,
                                     kindergarten=args.kindergarten, directory=directory)
    except d.Refused as exc:
        for e in exc.errors:
            print(f"kezek staff-add: {e.field}: {refusals.english(e.code, dict(e.params)) or e.code}", file=sys.stderr)
        return 2
    finally:
        directory.close()
        service.close()
    print(f"staff {args.login} ({args.role}) created: {staff_id}")
    return 0

