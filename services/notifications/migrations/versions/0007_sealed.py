"""Parents' contacts and messages sealed at rest (DOMAIN.md section 7,
kezek/sealing.py): phones and e-mails, each message's address (with its
lookup hash, on which the SMS pacing per phone now works), subject, text and
parameters (the child's name),
and the payloads of parked events that carry personal data.

Revision ID: notifications_0007_sealed
Revises: notifications_0006
"""
import sqlalchemy as sa
from alembic import op

from kezek.migrations import open_rows, retype, seal_rows
from kezek.outbox import PURPOSE
from kezek.sealing import Keyring, ring_of

revision = "notifications_0007_sealed"
down_revision = "notifications_0006"
branch_labels = None
depends_on = None

CONTACTS = {"email": ("parent_email", 254), "phone": ("parent_phone", 16)}
MESSAGES = {"address": "message_address", "subject": "message_subject", "body": "message_body",
            "params": "message_params"}


def upgrade() -> None:
    for col in CONTACTS:
        retype(op, "contacts", col, sa.Text)
    seal_rows(op, "contacts", "parent_id", {c: purpose for c, (purpose, _) in CONTACTS.items()})

    op.drop_index("ix_messages_address", "messages")
    retype(op, "messages", "address", sa.Text)
    op.add_column("messages", sa.Column("address_hash", sa.String(64), nullable=True))
    seal_rows(op, "messages", "id", MESSAGES, {"address_hash": ("address", "address")})
    retype(op, "messages", "address_hash", sa.String(64), nullable=False)
    op.create_index("ix_messages_address", "messages", ["channel", "address_hash", "created_at"])

    bind, ring = op.get_bind(), ring_of(op.get_bind())
    for event_id, payload in bind.execute(sa.text("SELECT event_id, payload FROM parked_events")).all():
        if not Keyring.is_sealed(payload):
            bind.execute(sa.text("UPDATE parked_events SET payload = :p WHERE event_id = :e"),
                         {"p": ring.seal(payload, PURPOSE), "e": event_id})


def downgrade() -> None:
    bind, ring = op.get_bind(), ring_of(op.get_bind())
    for event_id, payload in bind.execute(sa.text("SELECT event_id, payload FROM parked_events")).all():
        if Keyring.is_sealed(payload):
            bind.execute(sa.text("UPDATE parked_events SET payload = :p WHERE event_id = :e"),
                         {"p": ring.open(payload, PURPOSE), "e": event_id})
    op.drop_index("ix_messages_address", "messages")
    open_rows(op, "messages", "id", MESSAGES)
    op.drop_column("messages", "address_hash")
    retype(op, "messages", "address", sa.String(254))
    op.create_index("ix_messages_address", "messages", ["channel", "address", "created_at"])
    open_rows(op, "contacts", "parent_id", {c: purpose for c, (purpose, _) in CONTACTS.items()})
    for col, (_, length) in CONTACTS.items():
        retype(op, "contacts", col, sa.String(length))
