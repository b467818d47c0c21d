"""google.protobuf.Timestamp <-> aware datetime, the same in every service."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def moment(stamp: Timestamp) -> datetime:
    """An aware UTC datetime (protobuf's own ToDatetime is naive by default)."""
    return stamp.ToDatetime(tzinfo=UTC)
