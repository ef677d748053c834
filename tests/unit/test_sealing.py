"""Personal data at rest (kezek/sealing.py): sealed fields, lookup hashes,
sealed files, key rotation, the key ring from settings."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from kezek import sealing
from kezek.db import make_engine
from kezek.sealing import Keyring, KeyringError, Sealed, SealedJSON, Unopenable, new_key_line
from kezek.settings import Settings

PIN = "12001201800001"


def ring(*kids: str) -> tuple[Keyring, list[str]]:
    lines = [new_key_line(k) for k in kids]
    return Keyring.parse(" ".join(lines)), lines


def test_a_sealed_value_shows_nothing_of_the_clear_one_and_opens_with_its_key():
    r, _ = ring("k1")
    token = r.seal(PIN, "child_pin")
    assert PIN not in token and token.startswith("v1.k1.")
    assert r.open(token, "child_pin") == PIN
    assert r.seal(PIN, "child_pin") != token          # a fresh nonce each time


def test_a_sealed_value_cannot_be_moved_to_another_field():
    r, _ = ring("k1")
    with pytest.raises(Unopenable):
        r.open(r.seal(PIN, "child_pin"), "parent_pin")


def test_another_deployments_key_opens_nothing():
    mine, _ = ring("k1")
    theirs, _ = ring("k1")
    with pytest.raises(Unopenable):
        theirs.open(mine.seal(PIN, "child_pin"), "child_pin")


def test_rotation_new_values_take_the_first_key_and_old_ones_still_open():
    old, [old_line] = ring("2026")
    before = old.seal(PIN, "child_pin")
    rotated = Keyring.parse(f"{new_key_line('2027')}, {old_line}")
    after = rotated.seal(PIN, "child_pin")
    assert Keyring.kid_of(after) == "2027" and Keyring.kid_of(before) == "2026"
    assert rotated.open(before, "child_pin") == rotated.open(after, "child_pin") == PIN
    with pytest.raises(Unopenable):
        old.open(after, "child_pin")


def test_lookup_hash_is_one_per_value_and_key_and_searches_try_every_key():
    old, [old_line] = ring("a")
    rotated = Keyring.parse(f"{new_key_line('b')} {old_line}")
    assert old.lookup("pin", PIN) == old.lookup("pin", PIN) != old.lookup("pin", "12001201800002")
    assert old.lookup("pin", PIN) != old.lookup("document", PIN)   # kinds never collide
    assert rotated.lookups("pin", PIN) == [rotated.lookup("pin", PIN), old.lookup("pin", PIN)]
    assert PIN not in old.lookup("pin", PIN)


def test_a_sealed_file_has_its_own_data_key_and_rotation_rewraps_only_that_key():
    old, [old_line] = ring("a")
    scan = b"%PDF-1.4 certificate " * 100
    blob = old.seal_file(scan, "scans/x", content_type="application/pdf")
    assert scan[:20] not in blob and Keyring.file_kid(blob) == "a"
    assert old.open_file(blob, "scans/x") == scan
    with pytest.raises(Unopenable):
        old.open_file(blob, "scans/y")          # the name is bound to it
    rotated = Keyring.parse(f"{new_key_line('b')} {old_line}")
    moved = rotated.rewrap_file(blob, "scans/x")
    assert Keyring.file_kid(moved) == "b" and moved.endswith(blob[-len(scan):])   # the body untouched
    assert rotated.open_file(moved, "scans/x") == scan
    with pytest.raises(Unopenable):
        old.open_file(moved, "scans/x")


def test_an_altered_file_is_refused():
    r, _ = ring("a")
    blob = bytearray(r.seal_file(b"scan bytes", "n"))
    blob[-1] ^= 1
    with pytest.raises(Unopenable):
        r.open_file(bytes(blob), "n")


def test_sealed_columns_seal_on_write_open_on_read_and_refuse_comparison(tmp_path):
    r, _ = ring("k1")
    md = sa.MetaData()
    t = sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("pin", Sealed("pin", hashed_as="pin")), sa.Column("pin_hash", sa.String(64)),
                 sa.Column("parent", SealedJSON("parent")))
    engine = make_engine(f"sqlite:///{tmp_path}/x.db", keyring=r)
    md.create_all(engine)
    with engine.begin() as c:
        c.execute(t.insert(), [{"id": 1, "pin": PIN, "pin_hash": r.lookup("pin", PIN),
                                "parent": {"document": "ID1234567", "role": "mother"}}])
        raw = c.execute(sa.text("SELECT pin, parent FROM t")).one()
        assert PIN not in raw[0] and "ID1234567" not in raw[1]
        row = c.execute(sa.select(t).where(t.c.pin_hash.in_(r.lookups("pin", PIN)))).one()
        assert row.pin == PIN and row.parent == {"document": "ID1234567", "role": "mother"}
        assert c.execute(sa.select(t.c.id).where(t.c.pin.is_(None))).first() is None
    with pytest.raises(TypeError, match="lookup hash"):
        sa.select(t).where(t.c.pin == PIN)
    with pytest.raises(TypeError):
        sa.select(t).where(t.c.pin.in_([PIN]))
    assert [c.name for c in sealing.sealed_columns(md)["t"]] == ["pin", "parent"]


def test_an_orm_write_keeps_the_lookup_hash_of_a_sealed_column_and_only_a_change_of_it_renews_it(tmp_path):
    class Base(DeclarativeBase):
        pass

    class Person(Base):
        __tablename__ = "people"
        id: Mapped[int] = mapped_column(primary_key=True)
        pin: Mapped[str] = mapped_column(Sealed("pin", hashed_as="pin"))
        pin_hash: Mapped[str | None] = mapped_column(sa.String(64))
        name: Mapped[str] = mapped_column(sa.String(20))

    sealing.keep_lookup_hashes(Base)
    r, _ = ring("k1")
    engine = make_engine(f"sqlite:///{tmp_path}/x.db", keyring=r)
    Base.metadata.create_all(engine)
    other = "22001201800002"
    with Session(engine) as s, s.begin():
        s.add(Person(id=1, pin=PIN, name="a"))
    with Session(engine) as s, s.begin():
        person = s.get(Person, 1)
        assert person.pin_hash == r.lookup("pin", PIN)
        person.pin_hash = "left as the row has it"      # a write that does not change the pin keeps it
        person.name = "b"
    with Session(engine) as s, s.begin():
        person = s.get(Person, 1)
        assert person.pin_hash == "left as the row has it"
        person.pin = other
    with Session(engine) as s:
        assert s.get(Person, 1).pin_hash == r.lookup("pin", other)


def test_key_ring_from_settings_and_file(tmp_path, monkeypatch):
    line = new_key_line("2027")
    f = tmp_path / "keys"
    f.write_text(line + "\n")
    monkeypatch.setenv("KEZEK_DATA_KEYS_FILE", str(f))
    s = Settings(_env_file=None)
    assert s.keyring_for("queue").current == "2027"
    monkeypatch.setenv("KEZEK_QUEUE_DATA_KEYS", new_key_line("q1"))
    s = Settings(_env_file=None)
    assert s.keyring_for("queue").current == "q1" and s.keyring_for("registration").current == "2027"


def test_development_key_when_none_is_set():
    assert Settings(_env_file=None).keyring_for("queue").current == sealing.DEVELOPMENT_KID


@pytest.mark.parametrize("text, problem", [
    ("k1", "kid:key"), ("k1:abc", "bytes"), ("bad kid!:" + "A" * 43, "kid"),
    ("a:" + "A" * 43 + " a:" + "B" * 43, "twice")], ids=["no-key", "short", "kid", "twice"])
def test_malformed_keys_are_refused(text, problem):
    with pytest.raises(KeyringError, match=problem):
        Keyring.parse(text)


def test_in_production_only_the_services_that_seal_need_data_keys_to_migrate(tmp_path):
    from kezek.migrations import configured

    production = Settings(_env_file=None, state_dir=tmp_path).model_copy(update={"env": "production"})
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert configured("gateway", url, production).attributes["keyring"] is None
    with pytest.raises(KeyringError):
        configured("queue", url, production)
