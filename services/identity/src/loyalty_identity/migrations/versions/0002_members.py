"""Members, their keys, identities (blind-indexed), profiles, consents, tags, identity types.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

# The identity types a new installation starts with (frozen here; later changes are data).
SEED_TYPES = [
    ("phone", "phone", "", "mobile phone number"),
    ("email", "email", "", "email address"),
    ("wechat_openid", "token", r"[A-Za-z0-9_-]{16,64}", "WeChat openid (per app)"),
    ("wechat_unionid", "token", r"[A-Za-z0-9_-]{16,64}", "WeChat unionid"),
    ("store_card", "token", r"[0-9A-Z]{6,32}", "store card number"),
    (
        "unit_member_no",
        "token",
        r"[a-z][a-z0-9_-]{1,31}:[0-9A-Za-z_-]{1,64}",
        "a unit's legacy member number, '<unit>:<number>'",
    ),
    (
        "partner_id",
        "token",
        r"[a-z][a-z0-9_-]{1,31}:[0-9A-Za-z_.-]{1,64}",
        "a partner programme's member id, '<partner>:<id>'",
    ),
]

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE members (
            member_id          uuid PRIMARY KEY,
            state              text NOT NULL,
            merged_into        uuid,
            registered_unit    text NOT NULL,
            registered_channel text NOT NULL,
            suspension_reason  text NOT NULL DEFAULT '',
            created_at         timestamptz NOT NULL,
            updated_at         timestamptz NOT NULL
        )
        """
    )
    op.execute(
        "CREATE INDEX members_merged_into ON members (merged_into) WHERE merged_into IS NOT NULL"
    )
    op.execute(
        """
        CREATE TABLE member_keys (
            member_id   uuid PRIMARY KEY,
            key_id      text NOT NULL,
            wrapped_key bytea NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE identities (
            member_id     uuid NOT NULL,
            identity_type text NOT NULL,
            blind_index   bytea NOT NULL,
            value_sealed  bytea NOT NULL,
            linked_at     timestamptz NOT NULL,
            PRIMARY KEY (member_id, identity_type, blind_index),
            CONSTRAINT identities_bound_once UNIQUE (identity_type, blind_index)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE profiles (
            member_id          uuid PRIMARY KEY,
            full_name_sealed   bytea,
            gender             text NOT NULL DEFAULT 'unspecified',
            birthday_sealed    bytea,
            region             text NOT NULL DEFAULT '',
            preferred_language text NOT NULL DEFAULT ''
        )
        """
    )
    op.execute(
        """
        CREATE TABLE consents (
            member_id  uuid NOT NULL,
            purpose    text NOT NULL,
            granted    boolean NOT NULL,
            source     text NOT NULL,
            changed_at timestamptz NOT NULL,
            PRIMARY KEY (member_id, purpose)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE consent_events (
            member_id  uuid NOT NULL,
            seq        bigserial,
            purpose    text NOT NULL,
            granted    boolean NOT NULL,
            source     text NOT NULL,
            changed_at timestamptz NOT NULL,
            PRIMARY KEY (member_id, seq)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE member_tags (
            member_id uuid NOT NULL,
            tag       text NOT NULL,
            added_at  timestamptz NOT NULL,
            PRIMARY KEY (member_id, tag)
        )
        """
    )
    op.execute("CREATE INDEX member_tags_by_tag ON member_tags (tag, member_id)")
    types = op.create_table(
        "identity_types",
        sa.Column("code", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("pattern", sa.Text, nullable=False, server_default=""),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
    )
    op.bulk_insert(
        types,
        [
            {"code": code, "kind": kind, "pattern": pattern, "description": description}
            for code, kind, pattern, description in SEED_TYPES
        ],
    )


def downgrade() -> None:
    for table in (
        "identity_types",
        "member_tags",
        "consent_events",
        "consents",
        "profiles",
        "identities",
        "member_keys",
        "members",
    ):
        op.drop_table(table)
