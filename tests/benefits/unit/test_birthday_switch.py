"""Benefits' own birthday gifts are off by default (engagement's birthday journey grants them):
no hourly job, and RunBirthdayGifts refuses; `LOYALTY_BENEFITS_FIXED_BIRTHDAY_GIFTS` keeps them
for one release."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty_benefits.bootstrap import BenefitsSettings
from loyalty_benefits.entrypoints.jobs import jobs
from loyalty_benefits.entrypoints.servicer import BenefitsServicer
from loyalty_kit.errors import FailedPrecondition


def _app(fixed: bool) -> Any:
    return SimpleNamespace(
        settings=BenefitsSettings(fixed_birthday_gifts=fixed),
        context=SimpleNamespace(stopping=None),
        uow=None,
        clock=lambda: datetime.now(UTC),
        redemptions=None,
        issuer=None,
    )


def test_off_by_default_there_is_no_birthday_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOYALTY_BENEFITS_FIXED_BIRTHDAY_GIFTS", raising=False)
    assert BenefitsSettings().fixed_birthday_gifts is False
    assert [job.__name__ for job in jobs(_app(False))] == ["rewards", "issuances"]
    assert [job.__name__ for job in jobs(_app(True))] == ["rewards", "daily", "issuances"]


async def test_off_run_birthday_gifts_grants_nothing_and_says_why() -> None:
    servicer = BenefitsServicer(_app(False))
    with pytest.raises(FailedPrecondition) as refused:
        await servicer.RunBirthdayGifts(pb.RunBirthdayGiftsRequest(), None)  # type: ignore[arg-type]
    assert refused.value.reason == "FIXED_BIRTHDAY_GIFTS_OFF"
    assert "LOYALTY_BENEFITS_FIXED_BIRTHDAY_GIFTS" in str(refused.value)
