"""The identity service's tables (SQLAlchemy Core). Every member-scoped table has member_id
first in its primary key, so the database can be distributed by member later. The exception is
the look-up index on identities (type, blind index), which a distributed deployment keeps as its
own table distributed by blind index."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

members = Table(
    "members",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("state", Text, nullable=False),
    Column("merged_into", UUID(as_uuid=False)),
    Column("registered_unit", Text, nullable=False),
    Column("registered_channel", Text, nullable=False),
    Column("suspension_reason", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

member_keys = Table(
    "member_keys",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("key_id", Text, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
)

identities = Table(
    "identities",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("identity_type", Text, primary_key=True),
    Column("blind_index", LargeBinary, primary_key=True),
    Column("value_sealed", LargeBinary, nullable=False),
    Column("linked_at", DateTime(timezone=True), nullable=False),
    # One identity of a type binds one member: the blind index is unique per type.
    UniqueConstraint("identity_type", "blind_index", name="identities_bound_once"),
)

profiles = Table(
    "profiles",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("full_name_sealed", LargeBinary),
    Column("gender", Text, nullable=False, server_default="unspecified"),
    Column("birthday_sealed", LargeBinary),
    Column("region", Text, nullable=False, server_default=""),
    Column("preferred_language", Text, nullable=False, server_default=""),
    Column("time_zone", Text, nullable=False, server_default=""),
)

consents = Table(
    "consents",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("purpose", Text, primary_key=True),
    Column("granted", Boolean, nullable=False),
    Column("source", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

consent_events = Table(
    "consent_events",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("purpose", Text, nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("source", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

member_tags = Table(
    "member_tags",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("tag", Text, primary_key=True),
    Column("added_at", DateTime(timezone=True), nullable=False),
)

identity_types = Table(
    "identity_types",
    metadata,
    Column("code", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("pattern", Text, nullable=False, server_default=""),
    Column("description", Text, nullable=False, server_default=""),
)

member_audit = Table(
    "member_audit",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("action", Text, nullable=False),
    Column("related_member_id", UUID(as_uuid=False)),
    Column("unit", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("detail", JSONB, nullable=False, server_default="{}"),
    Column("at", DateTime(timezone=True), nullable=False),
)

# The business units of the programme, learned from the points service's ProgrammePublished.
programme_units = Table(
    "programme_units",
    metadata,
    Column("unit", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("learned_at", DateTime(timezone=True), nullable=False),
)


# --- member imports (migration 0005): a unit's legacy members brought in by file ---------------
def _import_operation(name: str, counters: tuple[str, ...]) -> Table:
    """An import's operation row (member or order imports): its spec, state, the kind's own
    counters, checkpoint, error, file, data key, request and lease."""
    return Table(
        name,
        metadata,
        Column("import_id", UUID(as_uuid=False), primary_key=True),
        Column("unit", Text, nullable=False),
        Column("spec", JSONB, nullable=False),
        Column("state", Text, nullable=False),
        *(
            Column(counter, BigInteger, nullable=False, server_default="0")
            for counter in (*counters, "checkpoint", "bytes_read")
        ),
        Column("error_reason", Text, nullable=False, server_default=""),
        Column("error_message", Text, nullable=False, server_default=""),
        Column("error_metadata", JSONB, nullable=False, server_default="{}"),
        Column("file_bytes", BigInteger, nullable=False, server_default="0"),
        Column("file_sha256", Text, nullable=False, server_default=""),
        Column("file_kept", Boolean, nullable=False, server_default="true"),
        Column("key_id", Text, nullable=False),
        Column("wrapped_key", LargeBinary, nullable=False),
        Column("created_by", Text, nullable=False),
        Column("request_id", Text, nullable=False),
        Column("request_fingerprint", Text, nullable=False, server_default=""),
        Column("lease_owner", Text, nullable=False, server_default=""),
        Column("leased_until", DateTime(timezone=True)),
        Column("cancel_requested", Boolean, nullable=False, server_default="false"),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("started_at", DateTime(timezone=True)),
        Column("ended_at", DateTime(timezone=True)),
        UniqueConstraint("created_by", "request_id", name=f"{name}_request_once"),
    )


member_imports = _import_operation(
    "member_imports",
    (
        "rows_read",
        "created",
        "linked",
        "unchanged",
        "candidates",
        "merged",
        "rejected",
        "legacy_points",
    ),
)

import_file_parts = Table(
    "import_file_parts",
    metadata,
    Column("import_id", UUID(as_uuid=False), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("sealed", LargeBinary, nullable=False),
)

import_rows = Table(
    "import_rows",
    metadata,
    Column("import_id", UUID(as_uuid=False), primary_key=True),
    Column("row_number", BigInteger, primary_key=True, autoincrement=False),
    Column("outcome", Text, nullable=False),
    Column("member_id", UUID(as_uuid=False)),
    Column("reason", Text, nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default=""),
    Column("legacy_key", LargeBinary),
    Column("merge_candidate_id", UUID(as_uuid=False)),
)

merge_candidates = Table(
    "merge_candidates",
    metadata,
    Column("candidate_id", UUID(as_uuid=False), primary_key=True),
    Column("import_id", UUID(as_uuid=False), nullable=False),
    Column("row_number", BigInteger, nullable=False),
    Column("unit", Text, nullable=False),
    Column("legacy_key", LargeBinary, nullable=False),
    Column("evidence", JSONB, nullable=False),
    Column("row_sealed", LargeBinary),
    Column("legacy_points", BigInteger, nullable=False, server_default="0"),
    Column("points_expire_at", DateTime(timezone=True)),
    Column("tier_code", Text, nullable=False, server_default=""),
    Column("tier_ends_at", DateTime(timezone=True)),
    Column("birthday_month", Integer, nullable=False, server_default="0"),
    Column("birthday_day", Integer, nullable=False, server_default="0"),
    Column("state", Text, nullable=False),
    Column("survivor", UUID(as_uuid=False)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
)

import_audit = Table(
    "import_audit",
    metadata,
    Column("import_id", UUID(as_uuid=False), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("action", Text, nullable=False),
    Column("candidate_id", UUID(as_uuid=False)),
    Column("unit", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("detail", JSONB, nullable=False, server_default="{}"),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Order imports (migration 0006): the orders' own operation, file, report (only rows not
# carried over) and the orders carried over, once per unit and order ID.
order_imports = _import_operation(
    "order_imports", ("rows_read", "imported", "unknown_member", "duplicates", "rejected")
)

order_import_parts = Table(
    "order_import_parts",
    metadata,
    Column("import_id", UUID(as_uuid=False), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("sealed", LargeBinary, nullable=False),
)

order_import_rows = Table(
    "order_import_rows",
    metadata,
    Column("import_id", UUID(as_uuid=False), primary_key=True),
    Column("row_number", BigInteger, primary_key=True, autoincrement=False),
    Column("outcome", Text, nullable=False),
    Column("member_id", UUID(as_uuid=False)),
    Column("reason", Text, nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default=""),
)

imported_orders = Table(
    "imported_orders",
    metadata,
    Column("unit", Text, primary_key=True),
    Column("order_id", Text, primary_key=True),
    Column("member_id", UUID(as_uuid=False), nullable=False),
    Column("import_id", UUID(as_uuid=False), nullable=False),
    Column("row_number", BigInteger, nullable=False),
)

# A member's code secret (sealed with the member's data key, so erasure shreds it even before
# the row goes) and the handle that names the member in the member code (unique, replaced with
# the secret on rotation).
member_codes = Table(
    "member_codes",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("handle", Text, nullable=False),
    Column("secret_sealed", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("handle", name="member_codes_handle_once"),
)

# Member codes resolved: (handle, step) once; the insert that conflicts is a second scan. Rows
# older than the steps a code is accepted in are pruned.
member_code_uses = Table(
    "member_code_uses",
    metadata,
    Column("handle", Text, primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("used_at", DateTime(timezone=True), nullable=False),
)

# Wrong member-code guesses (domain/member_code.py GuessLimits): one row a guess for the handle
# guessed and one for the calling client, neither stored, only its keyed hash; guess_id tells
# apart guesses made at the same instant. The primary key serves the count a scan reads (a
# kind's hash, guessed within a window). Rows older than the longest window (and the clocks'
# slack) count for nothing and are deleted every minute, so the table holds a few minutes of
# guesses (a locked scan records none): its sweep reads it whole, without an index of its own.
member_code_wrong_guesses = Table(
    "member_code_wrong_guesses",
    metadata,
    Column("kind", Text, primary_key=True),  # handle | client
    Column("value_hash", LargeBinary, primary_key=True),
    Column("guessed_at", DateTime(timezone=True), primary_key=True),
    Column("guess_id", UUID(as_uuid=False), primary_key=True),
    CheckConstraint("kind IN ('handle', 'client')", name="member_code_wrong_guesses_kind"),
)

# Members signing in themselves (domain/sign_in.py). A challenge is a code sent to a phone: the
# phone by its blind index (the limits count by it) and sealed under the active master key
# (bound to the challenge), the client's address by a keyed hash, the code by its keyed hash
# only. Sessions and their refresh tokens
# (by hash) are the member's; a token used up stays, so a second use is recognised.
sign_in_challenges = Table(
    "sign_in_challenges",
    metadata,
    Column("challenge_id", UUID(as_uuid=False), primary_key=True),
    Column("phone_index", LargeBinary, nullable=False),
    Column("address_index", LargeBinary, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("phone_sealed", LargeBinary, nullable=False),
    Column("code_hash", LargeBinary, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("sign_in_challenges_phone", "phone_index", "created_at"),
    Index("sign_in_challenges_address", "address_index", "created_at"),
    Index("sign_in_challenges_created", "created_at"),
)

member_sessions = Table(
    "member_sessions",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("session_id", UUID(as_uuid=False), primary_key=True),
    Column("method", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_reason", Text, nullable=False, server_default=""),
    UniqueConstraint("session_id", name="member_sessions_session"),
)

member_refresh_tokens = Table(
    "member_refresh_tokens",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("session_id", UUID(as_uuid=False), nullable=False),
    Column("member_id", UUID(as_uuid=False), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Index("member_refresh_tokens_session", "session_id"),
)

# Members' own erasure requests (domain/erasure.py): the code by its keyed hash only; at most one
# open (requested or confirmed) a member; the sweep finds the confirmed ones by erase_after.
erasure_requests = Table(
    "erasure_requests",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("erasure_id", UUID(as_uuid=False), primary_key=True),
    Column("state", Text, nullable=False),
    Column("code_hash", LargeBinary, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_attempt", Text, nullable=False, server_default=""),  # its request id
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("erase_after", DateTime(timezone=True), nullable=False),
    Column("code_expires_at", DateTime(timezone=True), nullable=False),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("cancel_reason", Text, nullable=False, server_default=""),
    Column("done_at", DateTime(timezone=True)),
    UniqueConstraint("erasure_id", name="erasure_requests_erasure"),
    Index(
        "erasure_requests_one_open",
        "member_id",
        unique=True,
        postgresql_where=text("state IN ('requested', 'confirmed')"),
    ),
    Index("erasure_requests_due", "erase_after", postgresql_where=text("state = 'confirmed'")),
)
