"""The kit's own tables, present in every service database: the outbox, the inbox of processed
events, and the idempotency keys of mutating RPCs.

`metadata` here describes them for runtime queries; their DDL is created by migrations through
`loyalty_kit.migrations.create_kit_tables_v1`, frozen so history never changes.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

outbox = Table(
    "kit_outbox",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("subject", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
)

inbox = Table(
    "kit_inbox",
    metadata,
    Column("consumer", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

idempotency_keys = Table(
    "kit_idempotency_keys",
    metadata,
    Column("scope", Text, primary_key=True),
    Column("request_id", Text, primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("response", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

OUTBOX_CHANNEL = "kit_outbox"

KIT_DDL_V1 = (
    """
    CREATE TABLE kit_outbox (
        seq          bigserial PRIMARY KEY,
        event_id     uuid NOT NULL UNIQUE,
        subject      text NOT NULL,
        event_type   text NOT NULL,
        payload      bytea NOT NULL,
        headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at   timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz
    )
    """,
    "CREATE INDEX kit_outbox_unpublished ON kit_outbox (seq) WHERE published_at IS NULL",
    # NOTIFY is transactional: the relay wakes when the writing transaction commits, never for
    # one that rolls back.
    f"""
    CREATE FUNCTION kit_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{OUTBOX_CHANNEL}', '');
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER kit_outbox_notify AFTER INSERT ON kit_outbox
        FOR EACH STATEMENT EXECUTE FUNCTION kit_outbox_notify()
    """,
    """
    CREATE TABLE kit_inbox (
        consumer     text NOT NULL,
        event_id     text NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, event_id)
    )
    """,
    """
    CREATE TABLE kit_idempotency_keys (
        scope        text NOT NULL,
        request_id   text NOT NULL,
        fingerprint  text NOT NULL,
        response     bytea,
        created_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (scope, request_id)
    )
    """,
)
