"""Personal data sealed at rest, for rows written before it was (DOMAIN.md
section 7): each service's migration seals its existing rows in place and
moves the scans into the file store, on SQLite and on PostgreSQL, and its
downgrade gives them back in clear; `kezek rekey` moves every row and file
to a new key while the old rows stay readable and findable, and afterwards
the old key can go."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from kezek import rekey, wiring
from kezek.db import make_engine
from kezek.files import FolderStore, SealedFiles
from kezek.migrations import downgrade, upgrade
from kezek.sealing import Keyring, new_key_line
from kezek.settings import SEALING_SERVICES, Settings

pytestmark = pytest.mark.integration

CHILD_PIN, PARENT_PIN, DOCUMENT, CERT_NUMBER = "21506202400777", "11203199000777", "ID7770777", "CERT-77-0777"
PHONE, EMAIL, SURNAME = "+996555777077", "sealed.parent@example.kg", "Сеитбеков"
SCAN = b"%PDF-1.4\n" + bytes(range(256)) * 4
CLEAR = (CHILD_PIN, PARENT_PIN, DOCUMENT, CERT_NUMBER, PHONE, EMAIL, SURNAME)
BEFORE = {"registration": "registration_0006", "queue": "queue_0011_retention", "verification": "verification_0007",
          "notifications": "notifications_0006"}
NOW = datetime(2027, 3, 1, 4, tzinfo=UTC)


def _dummy(col: sa.Column):
    t = col.type
    if isinstance(t, sa.JSON):
        return {}
    if isinstance(t, (sa.DateTime,)):
        return NOW
    if isinstance(t, sa.Date):
        return date(2024, 6, 15)
    if isinstance(t, sa.Boolean):
        return False
    if isinstance(t, (sa.Integer, sa.Float, sa.Numeric)):
        return 0
    if isinstance(t, sa.LargeBinary):
        return b""
    return "x"


def insert(conn, table_name: str, **values) -> None:
    """A row of the table as it stands, every NOT NULL column filled."""
    table = sa.Table(table_name, sa.MetaData(), autoload_with=conn)
    row = {c.name: _dummy(c) for c in table.columns
           if not c.nullable and c.server_default is None and not (c.primary_key and c.autoincrement is True
                                                                   and isinstance(c.type, sa.Integer))}
    row.update(values)
    conn.execute(table.insert().values(**row))


def old_rows(service: str, conn) -> None:
    """Rows as the service wrote them before sealing: every value in clear."""
    parent = {"role": "mother", "pin": PARENT_PIN, "document_type": "id_card", "document_number": DOCUMENT}
    if service == "registration":
        insert(conn, "accounts", id="acc-1", email=EMAIL, pin=PARENT_PIN, surname=SURNAME, name="Айгүл",
               phone=PHONE, locale="ru", created_at=NOW)
        insert(conn, "applications", id="app-1", account_id="acc-1", country="KG", child_pin=CHILD_PIN,
               child_surname=SURNAME, child_name="Айбек", child_birth_date=date(2024, 6, 15), parent=parent,
               address={"street": "Киевская", "house": "12"}, phone=PHONE, email=EMAIL, category="general",
               language="ru", preferences=["k1"], status="submitted", submitted_at=NOW)
        insert(conn, "drafts", token_hash="d" * 64, country="KG", locale="ru", child={"pin": CHILD_PIN},
               parent=parent, address={}, email_verified=EMAIL, created_at=NOW, updated_at=NOW)
    elif service == "queue":
        insert(conn, "applications", id="app-1", pin=CHILD_PIN, surname=SURNAME, name="Айбек", country="KG",
               birth_date=date(2024, 6, 15), cohort=2024, category="general", claimed_category="general",
               queue_date=NOW, language="ru", preferences=["k1"], locale="ru", status="queued")
    elif service == "verification":
        insert(conn, "applicants", application_id="app-1", child_pin=CHILD_PIN, child_surname=SURNAME,
               child_name="Айбек", parent_phone=PHONE, parent_email=EMAIL, status="queued")
        insert(conn, "abuse_cases", id="case-1", child_pin=CHILD_PIN, application_id="app-1", rule="r", cycles=2,
               referral_ids=[], applications=1, status="open", opened_at=NOW)
        insert(conn, "scans", sha256="s" * 64, content_type="application/pdf", size=len(SCAN), data=SCAN,
               stored_at=NOW)
        insert(conn, "certificates", id="cert-1", referral_id="ref-1", organisation="В/ч 777", number=CERT_NUMBER,
               issued_on=date(2027, 2, 20), scan_sha256="s" * 64, scan_name=f"{SURNAME}.pdf", recorded_by="staff-1",
               recorded_at=NOW)
    elif service == "notifications":
        insert(conn, "contacts", parent_id="acc-1", email=EMAIL, phone=PHONE, locale="ru", updated_at=NOW)
        insert(conn, "messages", id="m-1", source_event_id="e-1", source_event_type="x", kind="x", channel="sms",
               parent_id="acc-1", address=PHONE, locale="ru", body=f"{SURNAME}: место", status="queued",
               created_at=NOW)
        insert(conn, "parked_events", event_id="e-2", application_id="app-1", parked_at=NOW, payload=json.dumps({
            "type": "application.submitted.v1", "data": {"child_pin": CHILD_PIN}}))


def dump(engine) -> str:
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            out += [repr(tuple(r)) for r in conn.execute(sa.text(f'SELECT * FROM "{table}"'))]
    return "\n".join(out)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    def url(service: str) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / f'{service}.db'}"
        return request.getfixturevalue("pg_url")(service)
    return url


@pytest.mark.parametrize("service", SEALING_SERVICES)
def test_migration_seals_the_rows_already_there_and_its_downgrade_gives_them_back(database, service, tmp_path):
    url = database(service)
    settings = Settings(_env_file=None, state_dir=tmp_path / "state")
    upgrade(service, url, BEFORE[service], settings=settings)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            old_rows(service, conn)
        upgrade(service, url, settings=settings)
        raw = dump(engine)
        assert not [v for v in CLEAR if v in raw], "a clear value left after the migration"
        files = wiring.files(service, settings)
        if files is not None:
            [name] = list(files.store.names())
            assert SCAN[-64:] not in files.store.get(name) and files.get(name) == SCAN
        opened = _read_back(service, engine)
        assert CHILD_PIN in opened or PHONE in opened
        downgrade(service, url, BEFORE[service], settings=settings)
        raw = dump(engine)
        assert "v1.dev." not in raw
        assert all(v in raw for v in _expected_back(service))
    finally:
        engine.dispose()


def _read_back(service: str, engine) -> str:
    """The rows through the service's own tables: opened, and found by their lookup hashes."""
    meta = wiring.metadata(service)
    ring = Keyring.development()
    with engine.connect() as conn:
        if service == "queue":
            t = meta.tables["applications"]
            row = conn.execute(sa.select(t).where(t.c.pin_hash == ring.lookup("pin", CHILD_PIN))).one()
            assert (row.pin, row.surname, row.masked_name) == (CHILD_PIN, SURNAME, "С******** А.")
        elif service == "registration":
            a = meta.tables["accounts"]
            acc = conn.execute(sa.select(a).where(a.c.email_hash == ring.lookup("email", EMAIL.upper()))).one()
            assert (acc.pin, acc.phone) == (PARENT_PIN, PHONE)
            app = conn.execute(sa.select(meta.tables["applications"])).one()
            assert app.parent["document_number"] == DOCUMENT and app.child_pin == CHILD_PIN
            assert conn.execute(sa.select(meta.tables["drafts"].c.child)).scalar_one() == {"pin": CHILD_PIN}
        elif service == "verification":
            ap = meta.tables["applicants"]
            assert conn.execute(sa.select(ap.c.child_pin).where(
                ap.c.child_pin_hash == ring.lookup("pin", CHILD_PIN))).scalar_one() == CHILD_PIN
            assert conn.execute(sa.select(meta.tables["certificates"].c.number)).scalar_one() == CERT_NUMBER
        else:
            m = meta.tables["messages"]
            assert conn.execute(sa.select(m.c.address, m.c.body).where(
                m.c.address_hash == ring.lookup("address", PHONE))).one() == (PHONE, f"{SURNAME}: место")
            assert CHILD_PIN in conn.execute(sa.select(meta.tables["parked_events"].c.payload)).scalar_one()
        return CHILD_PIN if service != "notifications" else PHONE


def _expected_back(service: str) -> tuple[str, ...]:
    return {"registration": (CHILD_PIN, PARENT_PIN, DOCUMENT, EMAIL, PHONE, SURNAME),
            "queue": (CHILD_PIN, SURNAME), "verification": (CHILD_PIN, CERT_NUMBER, PHONE, EMAIL),
            "notifications": (PHONE, EMAIL, SURNAME, CHILD_PIN)}[service]


def test_rekey_moves_every_row_and_file_to_the_new_key_while_old_rows_stay_readable(database, tmp_path):
    """Rotation: rows sealed under 2026a; the ring becomes 2027b first with
    2026a kept: old rows open and are found by their PIN, a second entry of
    the same child is still refused, new rows take 2027b; `kezek rekey`
    moves the rest (rows and files); then 2026a alone opens nothing and
    2027b alone opens everything."""
    from services.queue.domain import JoinQueue
    from services.queue.domain.refusals import Refused
    from services.queue.usecases import Queue
    from kezek.db import make_session_factory

    old_line, new_line = new_key_line("2026a"), new_key_line("2027b")
    old, both, new = Keyring.parse(old_line), Keyring.parse(f"{new_line} {old_line}"), Keyring.parse(new_line)
    url = database("queue")
    upgrade("queue", url, settings=Settings(_env_file=None, data_keys=old_line))

    def queue(ring):
        engine = make_engine(url, keyring=ring)
        return engine, Queue(make_session_factory(engine), country="KG")

    def join(q, app_id, pin):
        return q.entries.join(JoinQueue(application_id=app_id, pin=pin, surname=SURNAME, name="Айбек",
                                        category="general", language="ru", preferences=("k1",), parent_id="p1",
                                        queue_date=NOW), actor="admin:1")

    engine, q = queue(old)
    q.kindergartens.save({"id": "k1", "name": "Sun", "district": "Leninsky", "languages": ["ru"]}, actor="admin:1")
    join(q, "a1", CHILD_PIN)
    engine.dispose()

    engine, q = queue(both)
    assert q.views.application_by_pin(CHILD_PIN)["id"] == "a1"           # found by its old hash
    with pytest.raises(Refused) as refused:
        join(q, "a2", CHILD_PIN)
    assert refused.value.code == "pin_taken"
    join(q, "a3", "11003202300502")
    meta = wiring.metadata("queue")
    before = rekey.check(engine, meta, "queue")
    assert before.rows == {"applications": 1}
    files = SealedFiles(FolderStore(tmp_path / "files"), old)
    files.put("scans/one", SCAN)
    files = SealedFiles(files.store, both)
    assert files.rekey() == (1, 0) and files.rekey() == (0, 1)
    assert rekey.rekey(engine, meta, "queue").rows == {"applications": 1}
    assert rekey.check(engine, meta, "queue").rows == {}
    engine.dispose()

    engine, q = queue(new)
    assert q.views.application_by_pin(CHILD_PIN)["id"] == "a1"
    with pytest.raises(Refused) as refused:
        join(q, "a4", CHILD_PIN)
    assert refused.value.code == "pin_taken"
    assert SealedFiles(files.store, new).get("scans/one") == SCAN
    engine.dispose()
    engine, q = queue(old)
    with pytest.raises(Exception, match="2027b"):
        q.views.application("a1")
    engine.dispose()


def test_kezek_rekey_check_exits_1_while_rows_are_on_an_old_key_and_0_after(tmp_path):
    old_line, new_line = new_key_line("k1"), new_key_line("k2")
    env = {"KEZEK_STATE_DIR": str(tmp_path), "KEZEK_DATA_KEYS": old_line, "PATH": "/usr/bin:/bin"}
    root = Path(__file__).resolve().parents[2]

    def kezek(*args, keys):
        return subprocess.run([sys.executable, "-m", "kezek.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True, env={**env, "KEZEK_DATA_KEYS": keys, "PYTHONPATH": str(root)})

    assert kezek("migrate", "verification", keys=old_line).returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'verification.db'}", keyring=Keyring.parse(old_line))
    with engine.begin() as conn:
        meta = wiring.metadata("verification")
        conn.execute(meta.tables["applicants"].insert().values(
            application_id="a1", child_pin=CHILD_PIN, child_pin_hash="h", status="queued", updated_at=NOW))
    engine.dispose()
    SealedFiles(FolderStore(tmp_path / "files" / "verification"), Keyring.parse(old_line)).put("scans/x", SCAN)
    rotated = f"{new_line},{old_line}"
    check = kezek("rekey", "--service", "verification", "--check", keys=rotated)
    assert check.returncode == 1, check.stderr
    assert json.loads(check.stdout.splitlines()[-1])["services"][0] | {"seconds": 0} == {
        "service": "verification", "key": "k2", "rows": {"applicants": 1}, "files": 1, "seconds": 0}
    moved = kezek("rekey", "--service", "verification", keys=rotated)
    assert moved.returncode == 0, moved.stderr
    assert kezek("rekey", "--service", "verification", "--check", keys=new_line).returncode == 0
