"""Where verification keeps its files (certificate scans): sealed, in the
store its settings name (kezek/files.py). `kezek rekey` finds it here by
convention (kezek/wiring.py)."""
from __future__ import annotations

from kezek.files import SealedFiles, open_store
from kezek.settings import Settings


def build_files(settings: Settings) -> SealedFiles:
    from services.verification.settings import as_settings

    settings = as_settings(settings)
    store = open_store(settings.verification_file_store, settings.file_store_default())
    return SealedFiles(store, settings.keyring_for("verification"))
