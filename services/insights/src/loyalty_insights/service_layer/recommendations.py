"""Personalised offers for one member (`GetRecommendations`): its family's history and the
similarity rows of the offers it used, ranked by the domain; the popular offers of its RFM
segment and then of the group (or the unit) fill what co-occurrence leaves. Withheld, with
the reason, from a member who withdrew the personalised-offers consent or was erased."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_insights.domain.recommendations import (
    Offer,
    Recommendation,
    Withheld,
    recommend,
)
from loyalty_insights.service_layer.figures import known_unit
from loyalty_insights.service_layer.uow import InsightsUnitOfWork


@dataclass(frozen=True)
class Recommendations:
    member_id: str  # the survivor whose history was read
    recommendations: list[Recommendation]
    withheld: Withheld | None = None


async def recommendations(
    uow: InsightsUnitOfWork, member_id: str, unit: str, size: int
) -> Recommendations:
    await known_unit(uow, unit)
    member = await uow.offers.member(member_id)
    if member.erased:
        return Recommendations(member.member_id, [], Withheld.MEMBER_ERASED)
    if not member.consent:
        return Recommendations(member.member_id, [], Withheld.CONSENT_WITHDRAWN)
    similar = await uow.offers.neighbours(sorted(member.used), unit)
    # Enough popular offers to fill the list after leaving out the member's own.
    enough = size + len(member.used | member.held)
    segment: list[tuple[Offer, float]] = []
    if member.segment:
        segment = await uow.offers.popular(unit, member.segment, enough)
    found = recommend(
        member.used,
        member.held,
        similar,
        segment_popular=segment,
        popular=await uow.offers.popular(unit, "", enough),
        size=size,
    )
    return Recommendations(member.member_id, found)
