"""Entitlements by tier and unit, consumption against quotas, and releases."""

from __future__ import annotations

import pytest
from loyalty_benefits.domain import events
from loyalty_benefits.domain.entitlements import Consumption, Entitlement
from loyalty_benefits.domain.errors import (
    ConsumptionAlreadyReleased,
    ConsumptionNotFound,
    NoCatalogue,
    QuotaExhausted,
)
from loyalty_benefits.service_layer import handlers
from loyalty_kit.errors import FailedPrecondition, PermissionDenied

from tests.benefits.unit.conftest import ANN, T0, Benefits
from tests.benefits.unit.fakes import FakeBenefitsStore, FakeUnitOfWork


async def consume(benefits: Benefits) -> tuple[Consumption, Entitlement]:
    return await benefits(
        handlers.consume, ANN, "hotel-late-checkout", "hotel", "order-1", benefits.now
    )


async def test_a_gold_member_sees_the_gold_benefits_of_the_unit(benefits: Benefits) -> None:
    await benefits.tier(ANN, "gold")

    tier, found = await benefits(handlers.entitlements, ANN, "hotel", benefits.now)

    assert tier == "gold"
    assert [(e.benefit.code, e.used) for e in found] == [("hotel-late-checkout", 0)]


async def test_a_member_never_heard_of_has_the_entry_tiers_benefits(benefits: Benefits) -> None:
    tier, found = await benefits(handlers.entitlements, ANN, "", benefits.now)

    assert (tier, found) == ("basic", [])


async def test_a_consumption_counts_against_the_tier_years_quota_and_is_announced(
    benefits: Benefits,
) -> None:
    await benefits.tier(ANN, "gold")

    consumption, entitlement = await consume(benefits)

    assert (entitlement.used, entitlement.benefit.quota) == (1, 2)
    assert consumption.period_key.startswith("tier-year:2027-03-01")
    assert benefits.events[-1] == events.BenefitConsumed(
        ANN, consumption.consumption_id, "hotel-late-checkout", "hotel", "order-1", T0
    )


async def test_the_third_late_checkout_of_a_tier_year_is_refused(benefits: Benefits) -> None:
    await benefits.tier(ANN, "gold")
    await consume(benefits)
    await consume(benefits)

    with pytest.raises(QuotaExhausted):
        await consume(benefits)

    assert benefits.kinds().count("BenefitConsumed") == 2


async def test_a_benefit_above_the_members_tier_is_refused(benefits: Benefits) -> None:
    await benefits.tier(ANN, "silver")

    with pytest.raises(FailedPrecondition):
        await consume(benefits)


async def test_a_release_gives_the_quota_back_once(benefits: Benefits) -> None:
    await benefits.tier(ANN, "gold")
    first, _ = await consume(benefits)
    await consume(benefits)

    released = await benefits(
        handlers.release, ANN, first.consumption_id, "cancelled", "hotel", benefits.now
    )
    with pytest.raises(ConsumptionAlreadyReleased):
        await benefits(handlers.release, ANN, first.consumption_id, "again", None, benefits.now)
    _, third = await consume(benefits)

    assert released.release_reason == "cancelled"
    assert third.used == 2
    assert isinstance(benefits.events[-2], events.BenefitReleased)


async def test_only_the_consuming_unit_or_an_admin_releases(benefits: Benefits) -> None:
    await benefits.tier(ANN, "gold")
    consumption, _ = await consume(benefits)

    with pytest.raises(PermissionDenied):
        await benefits(handlers.release, ANN, consumption.consumption_id, "", "mall", benefits.now)
    with pytest.raises(ConsumptionNotFound):
        await benefits(handlers.release, ANN, "nope", "", None, benefits.now)


async def test_nothing_is_consumed_before_a_catalogue_is_published() -> None:
    empty = FakeUnitOfWork(FakeBenefitsStore(T0))

    async with empty as uow:
        with pytest.raises(NoCatalogue):
            await handlers.consume(uow, ANN, "free-parking", "mall", "o", T0)
