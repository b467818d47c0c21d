"""Huayue's benefits (docs/worked-example.md), loaded through the benefits service's public RPCs:
gold gets 10% off at the mall and 2 late checkouts a tier year at the hotel; platinum 15% off,
4 room upgrades a tier year and free parking; every tier from silver up a birthday gift (a
coupon granted on the member's birthday, once a year); each tier above basic a welcome coupon;
and a small rewards catalogue (积分商城) priced in points.

`load_benefits` is a loader like those of `demo.py` (idempotent: request ids derived from the
demo data, and a catalogue already in force is left alone).
"""

from __future__ import annotations

import grpc
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.benefits.v1 import catalogue_pb2 as cat
from loyalty.common.v1 import money_pb2
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings

from loyalty_devstack.demo_caller import Part, demo_metadata, not_there

PLATINUM_UP = ("platinum", "diamond")

# Rewards and their opening stock.
REWARD_STOCK = {"cinema-ticket": 200, "mall-voucher-100": 500, "hotel-breakfast": 100}


def _cny(amount: str) -> money_pb2.Money:
    return money_pb2.Money(currency_code="CNY", amount=amount)


def _amount_coupon(
    code: str, zh: str, en: str, amount: str, minimum: str | None, unit: str, days: int
) -> cat.CouponTemplate:
    template = cat.CouponTemplate(
        code=code,
        name_zh=zh,
        name_en=en,
        kind=cat.COUPON_KIND_AMOUNT_OFF,
        amount=_cny(amount),
        unit=unit,
        valid_days=days,
    )
    if minimum is not None:
        template.minimum_spend.CopyFrom(_cny(minimum))
    return template


def huayue_catalogue() -> cat.Catalogue:
    return cat.Catalogue(
        time_zone="Asia/Shanghai",
        tiers=[
            cat.TierBenefits(tier="basic"),
            cat.TierBenefits(
                tier="silver",
                welcome_coupon_template="welcome-silver",
                birthday_coupon_template="birthday-gift",
            ),
            cat.TierBenefits(
                tier="gold",
                welcome_coupon_template="welcome-gold",
                birthday_coupon_template="birthday-gift",
            ),
            cat.TierBenefits(
                tier="platinum",
                welcome_coupon_template="welcome-platinum",
                birthday_coupon_template="birthday-gift",
            ),
            cat.TierBenefits(
                tier="diamond",
                welcome_coupon_template="welcome-diamond",
                birthday_coupon_template="birthday-gift",
            ),
        ],
        benefits=[
            cat.Benefit(
                code="mall-gold-discount",
                name_zh="金卡商场九折",
                name_en="10% off at the mall",
                kind=cat.BENEFIT_KIND_PERCENTAGE_DISCOUNT,
                percentage="10",
                unit="mall",
                tiers=["gold"],
            ),
            cat.Benefit(
                code="mall-platinum-discount",
                name_zh="白金卡商场八五折",
                name_en="15% off at the mall",
                kind=cat.BENEFIT_KIND_PERCENTAGE_DISCOUNT,
                percentage="15",
                unit="mall",
                tiers=list(PLATINUM_UP),
            ),
            cat.Benefit(
                code="hotel-late-checkout",
                name_zh="延迟退房",
                name_en="Late checkout",
                kind=cat.BENEFIT_KIND_FREE_SERVICE,
                unit="hotel",
                tiers=["gold", *PLATINUM_UP],
                quota=2,
                quota_period=cat.QUOTA_PERIOD_TIER_YEAR,
            ),
            cat.Benefit(
                code="hotel-room-upgrade",
                name_zh="客房升级",
                name_en="Room upgrade",
                kind=cat.BENEFIT_KIND_FREE_SERVICE,
                unit="hotel",
                tiers=list(PLATINUM_UP),
                quota=4,
                quota_period=cat.QUOTA_PERIOD_TIER_YEAR,
            ),
            cat.Benefit(
                code="free-parking",
                name_zh="免费停车",
                name_en="Free parking",
                kind=cat.BENEFIT_KIND_FREE_SERVICE,
                tiers=list(PLATINUM_UP),
            ),
        ],
        coupon_templates=[
            _amount_coupon("welcome-silver", "银卡迎新券", "Silver welcome", "20", "100", "", 90),
            _amount_coupon("welcome-gold", "金卡迎新券", "Gold welcome", "50", "200", "", 90),
            _amount_coupon(
                "welcome-platinum", "白金卡迎新券", "Platinum welcome", "200", "500", "", 90
            ),
            _amount_coupon(
                "welcome-diamond", "钻石卡迎新券", "Diamond welcome", "500", "1000", "", 90
            ),
            _amount_coupon("birthday-gift", "生日礼券", "Birthday gift", "88", None, "", 30),
            _amount_coupon("cinema-ticket", "电影票", "Cinema ticket", "60", None, "cinema", 60),
            _amount_coupon(
                "mall-voucher-100", "商场百元券", "Mall voucher CNY 100", "100", None, "mall", 90
            ),
            _amount_coupon(
                "hotel-breakfast", "酒店双人早餐", "Breakfast for two", "198", None, "hotel", 90
            ),
        ],
        rewards=[
            cat.Reward(
                code="cinema-ticket",
                name_zh="电影票一张",
                name_en="One cinema ticket",
                unit="cinema",
                points=5_000,
                coupon_template="cinema-ticket",
            ),
            cat.Reward(
                code="mall-voucher-100",
                name_zh="商场百元券",
                name_en="Mall voucher CNY 100",
                unit="mall",
                points=10_000,
                coupon_template="mall-voucher-100",
            ),
            cat.Reward(
                code="hotel-breakfast",
                name_zh="酒店双人早餐",
                name_en="Hotel breakfast for two",
                unit="hotel",
                points=15_000,
                coupon_template="hotel-breakfast",
            ),
        ],
    )


async def load_benefits(settings: Settings) -> Part:
    metadata = demo_metadata(settings)
    async with channel(settings.target_of("benefits")) as ch:
        stub = benefits_service_pb2_grpc.BenefitsServiceStub(ch)
        try:
            current = await stub.GetCatalogue(benefits_pb.GetCatalogueRequest(), metadata=metadata)
            return Part(f"catalogue v{current.catalogue.version}", False)
        except grpc.aio.AioRpcError as error:
            if not not_there(error):
                raise
        stored = await stub.UpdateCatalogue(
            benefits_pb.UpdateCatalogueRequest(
                catalogue=huayue_catalogue(), request_id="demo-benefits-catalogue-v1"
            ),
            metadata=metadata,
        )
        for reward, quantity in REWARD_STOCK.items():
            await stub.RestockReward(
                benefits_pb.RestockRewardRequest(
                    reward=reward, quantity=quantity, request_id=f"demo-restock-{reward}"
                ),
                metadata=metadata,
            )
    return Part(
        f"catalogue v{stored.catalogue.version} with {len(REWARD_STOCK)} rewards stocked", True
    )
