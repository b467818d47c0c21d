"""Personalised offers over gRPC (`GetRecommendations`) on a generated history where the answer
is known: offers planted in pairs (the members who used one used the other) rank first; a
widely used offer that co-occurs by chance does not; a member who withdrew the
personalised-offers consent (or was erased) gets none, with the reason; a merge's survivor is
answered from its absorbed member's history; a member with no history gets its segment's
popular offers; a unit's offers only when a unit is asked for; coupons held are not offered
again; coupons claimed of offers (benefits' CouponClaimed) count as uses, group-wide. The
stored similarity rows equal the domain's reference. Offer codes carry the test's own prefix,
and its members are new UUIDs, so other tests' facts never pair with them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from loyalty.benefits.v1 import events_pb2 as benefits_events
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_insights.adapters.facts import ActivityFact
from loyalty_insights.adapters.member_figures import OFFERS_PURPOSE
from loyalty_insights.domain.recommendations import Offer, OfferKind, similarities
from loyalty_insights.service_layer.uow import InsightsUnitOfWork
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp
from sqlalchemy import text

from tests.gateway.conftest import Gateway
from tests.insights.conftest import Suite, caught_up
from tests.support.events import publish
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

KIND = {OfferKind.REWARD: pb.OFFER_KIND_REWARD, OfferKind.COUPON: pb.OFFER_KIND_COUPON_TEMPLATE}


def uow_of(service: RunningService) -> InsightsUnitOfWork:
    context = service.context
    return InsightsUnitOfWork(context.database, context.settings.event_namespace)


def new_member() -> str:
    return str(uuid.uuid4())


class History:
    """Facts written as the consumers write them, for members registered at the mall."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.uses: dict[str, list[tuple[Offer, str]]] = {}
        self.issued: list[tuple[str, str]] = []
        self.withdrawn: list[str] = []
        self.merges: list[tuple[str, str]] = []
        self.erased: list[str] = []
        self.registered: list[str] = []

    def member(self, *offers: Offer, unit: str = "mall", member_id: str = "") -> str:
        member_id = member_id or new_member()
        self.registered.append(member_id)
        self.uses[member_id] = [(o, unit) for o in offers]
        return member_id

    async def write(self, service: RunningService) -> None:
        at = self.now - timedelta(days=3)
        async with uow_of(service) as uow:
            await uow.facts.record_registrations(
                [(m, "mall", at - timedelta(days=1)) for m in self.registered], imported=False
            )
            for member_id, used in self.uses.items():
                for (kind, code), unit in used:
                    fact_id = uuid.uuid4().hex
                    if kind is OfferKind.REWARD:
                        await uow.facts.record_benefit_fact(
                            member_id, "reward_redeemed", fact_id, code, unit, at
                        )
                    else:
                        fact_id = f"{fact_id}:order"
                        await uow.facts.record_benefit_fact(
                            member_id, "coupon_redeemed", fact_id, code, unit, at
                        )
                        await uow.facts.record_activity(
                            [ActivityFact(member_id, "coupon", fact_id, unit, at, Decimal(0), "")]
                        )
            for member_id, template in self.issued:
                await uow.facts.record_benefit_fact(
                    member_id, "coupon_issued", uuid.uuid4().hex, template, "", at
                )
            for member_id in self.withdrawn:
                await uow.facts.record_consent(member_id, OFFERS_PURPOSE, False, at)
            for survivor, absorbed in self.merges:
                await uow.facts.record_merge(survivor, absorbed, at)
            for member_id in self.erased:
                await uow.facts.record_erasure(member_id, at)
            await uow.commit()


async def refreshed(suite: Suite, full: bool = True) -> None:
    await suite.insights().RefreshFigures(
        pb.RefreshFiguresRequest(request_id=uuid.uuid4().hex, full=full)
    )


async def ask(
    suite: Suite, member_id: str, unit: str = "", caller: Caller | None = None
) -> pb.GetRecommendationsResponse:
    stub = suite.insights(caller) if caller else suite.insights()
    found: pb.GetRecommendationsResponse = await stub.GetRecommendations(
        pb.GetRecommendationsRequest(member=f"members/{member_id}", unit=unit, page_size=5)
    )
    return found


def first(found: pb.GetRecommendationsResponse) -> tuple[int, str, int]:
    r = found.recommendations[0]
    return r.kind, r.code, r.reason


async def test_planted_pairs_rank_first_and_the_consent_and_merges_are_followed(
    suite: Suite, insights_service: RunningService
) -> None:
    tag = uuid.uuid4().hex[:8]
    a, b = (OfferKind.COUPON, f"{tag}-a"), (OfferKind.REWARD, f"{tag}-b")
    c, d = (OfferKind.REWARD, f"{tag}-c"), (OfferKind.COUPON, f"{tag}-d")
    e, f = (OfferKind.COUPON, f"{tag}-e"), (OfferKind.REWARD, f"{tag}-f")
    popular = (OfferKind.REWARD, f"{tag}-popular")
    history = History(suite.clock())
    for _ in range(6):
        history.member(a, b)
        history.member(c, d)
    for _ in range(6):
        history.member(e, f, unit="hotel")
    for _ in range(20):
        history.member(popular)
    for _ in range(2):  # the popular offer co-occurs with A by chance
        history.member(a, popular)
    used_a = history.member(a)
    withdrawn = history.member(a)
    history.withdrawn.append(withdrawn)
    erased = history.member(a)
    history.erased.append(erased)
    survivor, absorbed = history.member(), history.member(c)
    history.merges.append((survivor, absorbed))
    holder = history.member(c)  # and holds a coupon of D's template, not redeemed yet
    history.issued.append((holder, d[1]))
    at_mall_and_hotel = history.member(e, unit="mall")
    newcomer = history.member()
    await history.write(insights_service)
    await refreshed(suite)

    found = await ask(suite, used_a)
    assert first(found) == (KIND[b[0]], b[1], pb.RECOMMENDATION_REASON_CO_OCCURRENCE)
    assert a[1] not in [r.code for r in found.recommendations]
    assert found.withheld == pb.RECOMMENDATIONS_WITHHELD_UNSPECIFIED
    codes = [r.code for r in found.recommendations]
    assert codes.index(b[1]) < codes.index(popular[1])  # cosine: not the most used

    found = await ask(suite, withdrawn)
    assert list(found.recommendations) == []
    assert found.withheld == pb.RECOMMENDATIONS_WITHHELD_CONSENT_WITHDRAWN

    found = await ask(suite, erased)
    assert list(found.recommendations) == []
    assert found.withheld == pb.RECOMMENDATIONS_WITHHELD_MEMBER_ERASED

    found = await ask(suite, survivor)
    assert first(found) == (KIND[d[0]], d[1], pb.RECOMMENDATION_REASON_CO_OCCURRENCE)
    found = await ask(suite, absorbed)  # the survivor answers for its absorbed member
    assert found.member == f"members/{survivor}"
    assert first(found)[1] == d[1]

    found = await ask(suite, holder)
    assert found.recommendations
    assert d[1] not in [r.code for r in found.recommendations]

    # F was used with E at the hotel only: offered group-wide and at the hotel, not the mall.
    assert first(await ask(suite, at_mall_and_hotel))[1] == f[1]
    assert first(await ask(suite, at_mall_and_hotel, "hotel"))[1] == f[1]
    assert f[1] not in [
        r.code for r in (await ask(suite, at_mall_and_hotel, "mall")).recommendations
    ]

    found = await ask(suite, newcomer)
    async with uow_of(insights_service) as uow:
        segment = (
            await uow.session.execute(
                text("SELECT rfm_segment FROM member_figures WHERE member_id = :m"),
                {"m": newcomer},
            )
        ).scalar_one()
        top = (
            (
                await uow.session.execute(
                    text(
                        "SELECT code FROM offer_popularity WHERE unit = '' AND segment = :s "
                        'ORDER BY share DESC, kind COLLATE "C", code COLLATE "C" LIMIT 5'
                    ),
                    {"s": segment},
                )
            )
            .scalars()
            .all()
        )
    assert segment
    assert [r.reason for r in found.recommendations] == [
        pb.RECOMMENDATION_REASON_SEGMENT_POPULARITY
    ] * len(top)
    assert [r.code for r in found.recommendations] == list(top)


async def test_the_stored_similarities_are_the_domains(
    suite: Suite, insights_service: RunningService
) -> None:
    tag = uuid.uuid4().hex[:8]
    offers = [(OfferKind.REWARD if i % 2 else OfferKind.COUPON, f"{tag}-{i}") for i in range(6)]
    history = History(suite.clock())
    for i in range(30):
        history.member(*[o for j, o in enumerate(offers) if (i * 7 + j * 3) % 5 < 3])
    await history.write(insights_service)
    await refreshed(suite)
    expected = similarities({m: [o for o, _ in used] for m, used in history.uses.items()})
    async with uow_of(insights_service) as uow:
        stored = await uow.offers.neighbours(offers, "")
    assert stored == {o: expected[o] for o in offers if o in expected}
    assert stored


async def test_bad_requests_and_other_units_are_refused(suite: Suite) -> None:
    stub = suite.insights()
    member = f"members/{new_member()}"
    for request, field in (
        (pb.GetRecommendationsRequest(member="someone"), "member"),
        (pb.GetRecommendationsRequest(member=member, page_size=-1), "page_size"),
        (pb.GetRecommendationsRequest(member=member, unit="moon"), "unit"),
    ):
        failure = await fails(stub.GetRecommendations(request))
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
        assert failure.fields == [field]
    till = Caller(unit="mall", client_id="mall-app", scopes=frozenset({"earn"}))
    failure = await fails(
        suite.insights(till).GetRecommendations(
            pb.GetRecommendationsRequest(member=member, unit="hotel")
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    found = await suite.insights(till).GetRecommendations(
        pb.GetRecommendationsRequest(member=member, unit="mall")
    )
    assert found.withheld == pb.RECOMMENDATIONS_WITHHELD_UNSPECIFIED


async def test_a_members_offers_over_http_through_the_gateway(
    suite: Suite, insights_service: RunningService, gateway_service: RunningService
) -> None:
    tag = uuid.uuid4().hex[:8]
    a, b = (OfferKind.REWARD, f"{tag}-a"), (OfferKind.COUPON, f"{tag}-b")
    history = History(suite.clock())
    for _ in range(4):
        history.member(a, b)
    member_id = history.member(a)
    withdrawn = history.member(a)
    history.withdrawn.append(withdrawn)
    await history.write(insights_service)
    await refreshed(suite)
    gateway = Gateway(
        gateway_service, f"http://127.0.0.1:{gateway_service.context.settings.gateway_http_port}"
    )
    async with await gateway.session("mall", "earn") as http:
        found = await http.get(
            f"/v1/members/{member_id}/recommendations", params={"unit": "mall", "pageSize": 3}
        )
        assert found.status_code == 200, found.text
        first = found.json()["recommendations"][0]
        assert (first["kind"], first["code"], first["reason"]) == (
            "OFFER_KIND_COUPON_TEMPLATE",
            b[1],
            "RECOMMENDATION_REASON_CO_OCCURRENCE",
        )
        assert len(found.json()["recommendations"]) <= 3
        none = await http.get(f"/v1/members/{withdrawn}/recommendations")
        assert none.status_code == 200, none.text
        assert none.json().get("recommendations", []) == []
        assert none.json()["withheld"] == "RECOMMENDATIONS_WITHHELD_CONSENT_WITHDRAWN"
        other = await http.get(f"/v1/members/{member_id}/recommendations", params={"unit": "hotel"})
        assert other.status_code == 403, other.text


async def test_a_members_overview_shows_the_offers_and_none_without_the_consent(
    suite: Suite, insights_service: RunningService, gateway_service: RunningService
) -> None:
    tag = uuid.uuid4().hex[:8]
    a, b = (OfferKind.REWARD, f"{tag}-a"), (OfferKind.REWARD, f"{tag}-b")
    history = History(suite.clock())
    for _ in range(4):
        history.member(a, b, unit="hotel")
    real = await suite.member("hotel")
    history.member(a, unit="hotel", member_id=real.id)
    await history.write(insights_service)
    await refreshed(suite)
    gateway = Gateway(
        gateway_service, f"http://127.0.0.1:{gateway_service.context.settings.gateway_http_port}"
    )
    async with await gateway.session("hotel", "earn") as http:
        page = await http.get(f"/v1/{real.name}/overview")
        assert page.status_code == 200, page.text
        assert "recommendations" not in page.json()["unavailable"]
        offers = page.json()["recommendations"]
        assert len(offers) <= 5
        assert (offers[0]["code"], offers[0]["reason"]) == (
            b[1],
            "RECOMMENDATION_REASON_CO_OCCURRENCE",
        )
    async with await gateway.session("hotel", "earn") as http:
        with_withdrawn = History(suite.clock())
        with_withdrawn.withdrawn.append(real.id)
        await with_withdrawn.write(insights_service)
        page = (await http.get(f"/v1/{real.name}/overview")).json()
        assert page.get("recommendations", []) == []
        assert "recommendations" not in page["unavailable"]


async def test_an_incremental_refresh_rebuilds_the_offers_too(
    suite: Suite, insights_service: RunningService
) -> None:
    tag = uuid.uuid4().hex[:8]
    a, b = (OfferKind.REWARD, f"{tag}-a"), (OfferKind.REWARD, f"{tag}-b")
    await refreshed(suite)
    history = History(suite.clock())
    for _ in range(3):
        history.member(a, b)
    member_id = history.member(a)
    await history.write(insights_service)
    before = await ask(suite, member_id)
    assert b[1] not in [r.code for r in before.recommendations]  # not in the tables yet
    await refreshed(suite, full=False)
    after = await ask(suite, member_id)
    assert first(after) == (KIND[b[0]], b[1], pb.RECOMMENDATION_REASON_CO_OCCURRENCE)


async def test_coupons_members_claim_of_offers_count_as_uses_of_their_templates(
    suite: Suite, insights_service: RunningService
) -> None:
    tag = uuid.uuid4().hex[:8]
    a, b = f"{tag}-claimed-a", f"{tag}-claimed-b"
    history = History(suite.clock())
    pairs = [history.member() for _ in range(4)]
    lone = history.member()
    await history.write(insights_service)
    settings = suite.points.service.context.settings
    at = timestamp(suite.clock() - timedelta(days=2))
    claims = [(m, t) for m in pairs for t in (a, b)] + [(lone, a)]
    for member_id, template in claims:
        await publish(
            settings,
            "benefits",
            benefits_events.CouponClaimed(
                member_id=member_id,
                offer_id=str(uuid.uuid4()),
                code=f"C{uuid.uuid4().hex[:10]}",
                template_code=template,
                issuer_unit="group",
                offer_claimed=1,
                occurred_at=at,
            ),
        )
    await caught_up(insights_service)
    await refreshed(suite)

    found = await ask(suite, lone)
    assert first(found) == (
        pb.OFFER_KIND_COUPON_TEMPLATE,
        b,
        pb.RECOMMENDATION_REASON_CO_OCCURRENCE,
    )
    assert a not in [r.code for r in found.recommendations]  # claimed: used already
    async with uow_of(insights_service) as uow:
        units = (
            await uow.session.execute(
                text("SELECT DISTINCT unit FROM offer_popularity WHERE code = :code"), {"code": a}
            )
        ).scalars()
        assert list(units) == [""]  # a claim is at no unit: it counts group-wide only
