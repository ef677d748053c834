"""The `kezek` command. Each subcommand lives in its own module with a
`main(argv) -> int`, imported only when it is used."""
from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("kezek.supervisor", "start the whole system locally (make run)"),
    "stop": ("kezek.commands.stop", "stop a running `kezek run`"),
    "keys": ("kezek.commands.keys", "keys: `keys generate DIR` (service identity, jwks.json), `keys data-key KID` (personal data at rest)"),
    "migrate": ("kezek.commands.migrate", "run every service's database migrations"),
    "rekey": ("kezek.commands.rekey", "move sealed personal data and files to the current data key (--check counts)"),
    "backup": ("kezek.commands.backup", "back up every service's database, their sealed files and Temporal's (DIR)"),
    "restore": ("kezek.commands.restore", "restore a `kezek backup` folder into a fresh deployment (same data keys)"),
    "serve": ("kezek.commands.serve", "serve one service's HTTP API"),
    "topics": ("kezek.commands.topics", "create the Kafka topics: partitions, replication factor, min ISR from settings"),
    "relay": ("kezek.commands.relay", "publish every service's outbox to Kafka (run several on PostgreSQL)"),
    "consume": ("kezek.commands.consume", "run the services' Kafka consumers and background jobs (--service NAME)"),
    "worker": ("workflows.worker", "run the Temporal worker (referral workflows and activities)"),
    "health": ("kezek.commands.health", "is a relay, consumer or worker well? (reads its heartbeat; exit 0 or 1)"),
    "status": ("kezek.commands.status", "the health of every part and the lags: outbox backlogs, consumer groups"),
    "scenario": ("scenario.cli", "run a scenario file on a simulated clock; prints JSON Lines"),
    "staff-add": ("services.verification.cli",
                  "create a staff account (caseworker, supervisor, commission, admin, operator)"),
    "webhooks": ("services.gateway.public.cli", "the public stream's webhooks: list, create, pause, retry ... (as an admin)"),
    "retention": ("kezek.commands.retention",
                  "anonymise closed applications whose retention period ended, per service (--dry-run: report)"),
    "queue-replay": ("services.queue.cli", "recompute every allocation from its recorded inputs and compare"),
    "schemas-lock": ("kezek.events.compat", "freeze the event schemas after additive changes (refuses breaking ones)"),
    "import": ("importer.run", "import the old portal's export (JSON or CSV folder); --dry-run"),
    "reconcile": ("importer.reconcile", "prove an import lost nothing: queue dates, positions, referral deadlines"),
    "mailbox": ("services.notifications.mailbox",
                "development only: an SMTP server and SMS gateway whose messages a page shows (kezek run starts it)"),
    "settings-example": ("kezek.commands.settings_example", "print .env.example: every setting, its default and meaning"),
}


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("kezek")
    except PackageNotFoundError:
        return "unknown (not installed)"


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: kezek COMMAND [ARGS] | kezek --version", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"kezek {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"kezek: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
