"""Every translation catalog is a well-formed PO file: a malformed entry
(a msgid without its msgstr, as a merge can leave) is read by Babel with
only a warning and silently drops or shifts translations."""
from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.pofile import PoFileError, read_po

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = sorted(ROOT.glob("services/*/locale/*/LC_MESSAGES/*.po"))


def test_there_are_catalogs_to_check():
    assert len(CATALOGS) >= 7


@pytest.mark.parametrize("path", CATALOGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_catalog_is_well_formed(path):
    with path.open("rb") as f:
        try:
            read_po(f, abort_invalid=True)
        except PoFileError as exc:
            pytest.fail(f"{path.relative_to(ROOT)}: {exc}")
