"""`kezek webhooks`: the webhooks administration from the console. The
command calls the gateway's admin API with a service token of its own
(`cli`, valid a minute, kezek/trust.py) acting for an administrator named
after the operator (`admin:<user>`, or --as); only the `kezek` command and
the staff pages may vouch for an administrator, and the gateway's audit
trail records who did what. In production the console needs the `cli` key
(`KEZEK_SERVICE_KEYS_DIR/cli.pem`); in development it is derived from the
secret key.

    kezek webhooks list
    kezek webhooks create https://example.org/hook public.referral.issued.v1 [...]
    kezek webhooks get|pause|resume|delete|deliveries|replays SUBSCRIPTION
    kezek webhooks retry|skip|delivery DELIVERY
    kezek webhooks replay SUBSCRIPTION --from-offset 0 [--partition N]
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys

from kezek.client import SyncServiceClient, UpstreamError, seg
from kezek.settings import Settings
from kezek.trust import Principal, ServiceKeys

ADMIN = "/api/v1/public/admin/webhooks"


def admin(name: str) -> Principal:
    return Principal(actor=f"admin:{name}", role="admin")


def client(settings: Settings, keys: ServiceKeys | None = None, transport=None) -> SyncServiceClient:
    return SyncServiceClient(settings.url_of("gateway"), keys=keys or ServiceKeys.from_settings(settings),
                             caller="cli", audience="gateway", transport=transport)


def request(args: argparse.Namespace) -> tuple[str, str, dict | None]:
    """(method, path, body) of the admin API call a command makes."""
    sub = f"{ADMIN}/{seg(args.id)}" if getattr(args, "id", None) is not None else ADMIN
    delivery = f"{ADMIN}/deliveries/{seg(args.id)}" if getattr(args, "id", None) is not None else ""
    return {
        "list": ("GET", ADMIN, None),
        "create": ("POST", ADMIN, {"url": getattr(args, "url", ""), "event_types": getattr(args, "types", []),
                                   "description": getattr(args, "description", "")}),
        "get": ("GET", sub, None),
        "pause": ("PATCH", sub, {"active": False}),
        "resume": ("PATCH", sub, {"active": True}),
        "delete": ("DELETE", sub, None),
        "deliveries": ("GET", f"{sub}/deliveries", None),
        "replays": ("GET", f"{sub}/replays", None),
        "replay": ("POST", f"{sub}/replay", {"from_offset": getattr(args, "from_offset", 0),
                                             "partition": getattr(args, "partition", None)}),
        "delivery": ("GET", delivery, None),
        "retry": ("POST", f"{delivery}/retry", None),
        "skip": ("POST", f"{delivery}/skip", None),
    }[args.command]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kezek webhooks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--as", dest="operator", default=None, help="the administrator's name (default: the user)")
    commands = p.add_subparsers(dest="command", required=True)
    commands.add_parser("list")
    create = commands.add_parser("create")
    create.add_argument("url")
    create.add_argument("types", nargs="+", help="public event types")
    create.add_argument("--description", default="")
    for name in ("get", "pause", "resume", "delete", "deliveries", "replays"):
        commands.add_parser(name).add_argument("id", help="the subscription")
    for name in ("delivery", "retry", "skip"):
        commands.add_parser(name).add_argument("id", help="the delivery")
    replay = commands.add_parser("replay")
    replay.add_argument("id", help="the subscription")
    replay.add_argument("--from-offset", type=int, default=0)
    replay.add_argument("--partition", type=int, default=None)
    return p


def main(argv: list[str], *, settings: Settings | None = None, transport=None) -> int:
    args = parser().parse_args(argv)
    method, path, body = request(args)
    settings = settings or Settings()
    http = client(settings, transport=transport)
    try:
        found = http.call(method, path, actor=admin(args.operator or getpass.getuser()), json=body)
    except UpstreamError as exc:
        print(f"kezek webhooks: {exc.status} {exc.detail or exc.code}", file=sys.stderr)
        return 1
    finally:
        http.close()
    if found is not None:
        print(json.dumps(found, ensure_ascii=False, indent=2))
    return 0
