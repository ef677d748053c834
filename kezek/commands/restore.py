"""`kezek restore DIR [--force]`: see kezek/commands/backup.py."""
from __future__ import annotations

from kezek.commands.backup import main as _main


def main(argv: list[str]) -> int:
    return _main(argv, restoring=True)
