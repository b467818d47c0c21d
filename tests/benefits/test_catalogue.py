"""The catalogue: published as versioned data by an admin, refused with every bad field."""

from __future__ import annotations

import grpc
import pytest
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.benefits.v1 import catalogue_pb2 as cat

from tests.benefits.conftest import APP, HOTEL, Benefits, catalogue_for_tests, rid
from tests.points.conftest import ADMIN
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_catalogue_in_force_is_what_was_published(benefits: Benefits) -> None:
    found = (await benefits.as_(APP).GetCatalogue(pb.GetCatalogueRequest())).catalogue
    assert found.version >= 1 and found.HasField("create_time")
    assert [t.tier for t in found.tiers] == ["basic", "silver", "gold", "platinum", "diamond"]
    checkout = next(b for b in found.benefits if b.code == "hotel-late-checkout")
    assert (checkout.unit, list(checkout.tiers), checkout.quota) == (
        "hotel",
        ["gold", "platinum", "diamond"],
        2,
    )
    assert checkout.quota_period == cat.QUOTA_PERIOD_TIER_YEAR
    discount = next(b for b in found.benefits if b.code == "mall-gold-discount")
    assert (discount.kind, discount.percentage) == (cat.BENEFIT_KIND_PERCENTAGE_DISCOUNT, "10")
    welcome = next(t for t in found.coupon_templates if t.code == "welcome-gold")
    assert (welcome.amount.amount, welcome.minimum_spend.amount) == ("50.00", "200.00")


async def test_a_new_version_gets_the_next_number_and_a_retry_does_not_add_one(
    benefits: Benefits,
) -> None:
    before = (await benefits.as_(APP).GetCatalogue(pb.GetCatalogueRequest())).catalogue.version
    request = pb.UpdateCatalogueRequest(catalogue=catalogue_for_tests(), request_id=rid())
    first = await benefits.as_(ADMIN).UpdateCatalogue(request)
    again = await benefits.as_(ADMIN).UpdateCatalogue(request)
    assert first.catalogue.version == again.catalogue.version == before + 1


async def test_only_an_admin_publishes_a_catalogue(benefits: Benefits) -> None:
    failure = await fails(
        benefits.as_(HOTEL).UpdateCatalogue(
            pb.UpdateCatalogueRequest(catalogue=catalogue_for_tests(), request_id=rid())
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")


async def test_a_catalogue_with_mistakes_is_refused_naming_every_bad_field(
    benefits: Benefits,
) -> None:
    bad = catalogue_for_tests()
    bad.benefits[0].percentage = "150"  # mall-gold-discount
    bad.benefits[2].tiers.append("bronze")  # hotel-late-checkout
    bad.benefits[3].quota_period = cat.QUOTA_PERIOD_UNSPECIFIED  # room upgrades: 4 per what?
    bad.coupon_templates[0].amount.amount = "twenty"
    bad.rewards[0].coupon_template = "no-such-template"
    bad.rewards[1].points = 0
    bad.tiers[1].welcome_coupon_template = "missing"
    bad.time_zone = "Mars/Olympus"
    failure = await fails(
        benefits.as_(ADMIN).UpdateCatalogue(
            pb.UpdateCatalogueRequest(catalogue=bad, request_id=rid())
        )
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    # Values that cannot be read are reported first, before the rules are checked.
    assert failure.fields == ["catalogue.coupon_templates[0].amount.amount"]
    bad.coupon_templates[0].amount.amount = "20"
    failure = await fails(
        benefits.as_(ADMIN).UpdateCatalogue(
            pb.UpdateCatalogueRequest(catalogue=bad, request_id=rid())
        )
    )
    assert sorted(failure.fields) == sorted(
        [
            "catalogue.time_zone",
            "catalogue.tiers[1].welcome_coupon_template",
            "catalogue.benefits[0].percentage",
            "catalogue.benefits[2].tiers[3]",
            "catalogue.benefits[3].quota_period",
            "catalogue.rewards[0].coupon_template",
            "catalogue.rewards[1].points",
        ]
    )
