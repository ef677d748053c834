"""The old portal's export, as `kezek import` reads it.

Either one JSON file with the six lists below, or a folder of CSV files
with the same names (`kindergartens.csv`, `places.csv`, `children.csv`,
`parents.csv`, `applications.csv`, `referrals.csv`; lists inside a cell are
separated by `;`). Every value is kept as text here; plan.py decides what
each row means and refuses what it cannot take.

- kindergartens: id, name, district, address, languages
- places: kindergarten, cohort, language, category (empty: open to all), free
- children: id, pin, surname, name, patronymic, birth_date
- parents: id, child_id, role, surname, name, pin, phone, email
- applications: id, child_id, parent_id, category, queue_date (ISO 8601 with
  offset), language, preferences, status (queued | referred | enrolled | removed)
- referrals: id, application_id, kindergarten, cohort, language, category,
  state (awaiting_confirmation | awaiting_enrolment | enrolled | cancelled |
  expired | privilege_rejected), issued_at, deadline, needs_confirmation,
  extended (optional: the one extension of the confirmation window is used;
  left empty, it is read from the deadline), confirmed_at (optional: when the
  privilege was confirmed)
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

SECTIONS = ("kindergartens", "places", "children", "parents", "applications", "referrals")
LIST_FIELDS = {("kindergartens", "languages"), ("applications", "preferences")}
COLUMNS = {
    "kindergartens": ["id", "name", "district", "address", "languages"],
    "places": ["kindergarten", "cohort", "language", "category", "free"],
    "children": ["id", "pin", "surname", "name", "patronymic", "birth_date"],
    "parents": ["id", "child_id", "role", "surname", "name", "pin", "phone", "email"],
    "applications": ["id", "child_id", "parent_id", "category", "queue_date", "language", "preferences", "status"],
    "referrals": ["id", "application_id", "kindergarten", "cohort", "language", "category", "state", "issued_at",
                  "deadline", "needs_confirmation", "extended", "confirmed_at"],
}


@dataclass
class Export:
    source: str = "balalyk"
    country: str = "KG"
    rows: dict[str, list[dict]] = field(default_factory=lambda: {s: [] for s in SECTIONS})

    def __getitem__(self, section: str) -> list[dict]:
        return self.rows[section]

    def size(self) -> int:
        return sum(len(v) for v in self.rows.values())


class ExportError(ValueError):
    pass


def read(path: Path) -> Export:
    path = Path(path)
    if path.is_dir():
        return _read_csv_dir(path)
    if path.suffix.lower() == ".json":
        return _read_json(path)
    raise ExportError(f"{path}: give a .json export or a folder of CSV files")


def _read_json(path: Path) -> Export:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: not a readable JSON export ({exc})") from exc
    if not isinstance(raw, dict):
        raise ExportError(f"{path}: the export must be a JSON object with {', '.join(SECTIONS)}")
    out = Export(source=str(raw.get("source", "balalyk")), country=str(raw.get("country", "KG")))
    for section in SECTIONS:
        rows = raw.get(section, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ExportError(f"{path}: {section} must be a list of objects")
        out.rows[section] = rows
    return out


def _read_csv_dir(path: Path) -> Export:
    meta = path / "export.json"
    info = json.loads(meta.read_text()) if meta.is_file() else {}
    out = Export(source=str(info.get("source", "balalyk")), country=str(info.get("country", "KG")))
    found = False
    for section in SECTIONS:
        f = path / f"{section}.csv"
        if not f.is_file():
            continue
        found = True
        with f.open(newline="", encoding="utf-8-sig") as fh:
            rows = []
            for row in csv.DictReader(fh):
                for (sec, col) in LIST_FIELDS:
                    if sec == section and col in row:
                        row[col] = [x for x in (row[col] or "").split(";") if x]
                rows.append(row)
            out.rows[section] = rows
    if not found:
        raise ExportError(f"{path}: no CSV file of the export ({', '.join(s + '.csv' for s in SECTIONS)})")
    return out


def write_json(export: Export, path: Path) -> None:
    """One row per line, so a diff of two exports reads row by row."""
    parts = [f'{{"source": {json.dumps(export.source)}, "country": {json.dumps(export.country)}']
    for section in SECTIONS:
        rows = ",\n".join(json.dumps(r, ensure_ascii=False) for r in export.rows[section])
        parts.append(f'"{section}": [\n{rows}\n]')
    path.write_text(",\n".join(parts) + "}\n", encoding="utf-8")


def write_csv_dir(export: Export, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "export.json").write_text(json.dumps({"source": export.source, "country": export.country}) + "\n")
    for section in SECTIONS:
        with (path / f"{section}.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS[section], extrasaction="ignore")
            w.writeheader()
            for row in export.rows[section]:
                w.writerow({k: ";".join(v) if isinstance(v, list) else ("" if v is None else v) for k, v in row.items()})
