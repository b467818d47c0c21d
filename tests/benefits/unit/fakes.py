"""The benefits service's stores in memory (the ports of `service_layer/ports.py`) and a unit of
work over them that rolls back what was not committed and keeps the events of every commit."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime

from loyalty_benefits.domain.catalogue import Catalogue
from loyalty_benefits.domain.coupons import Coupon, CouponState
from loyalty_benefits.domain.entitlements import Consumption, MemberTier
from loyalty_benefits.domain.events import Event
from loyalty_benefits.domain.members import InactiveMember, MemberState
from loyalty_benefits.domain.offers import CouponOffer, OfferState
from loyalty_benefits.service_layer.ports import BenefitsWork

from tests.support.fake_work import SnapshotWork

ANONYMOUS = "anonymous"
Quota = tuple[str, str, str]  # member, benefit, period


@dataclass
class StoredCoupon:
    seq: int
    coupon: Coupon
    grant_key: str | None
    origin: str | None = None


@dataclass
class Tables:
    catalogues: list[Catalogue] = field(default_factory=list)
    tiers: dict[str, MemberTier] = field(default_factory=dict)
    states: dict[str, InactiveMember] = field(default_factory=dict)
    birthdays: dict[str, tuple[int, int]] = field(default_factory=dict)
    quota: dict[Quota, int] = field(default_factory=dict)
    consumptions: dict[str, Consumption] = field(default_factory=dict)
    consumption_origins: dict[str, str] = field(default_factory=dict)
    coupons: list[StoredCoupon] = field(default_factory=list)
    stock: dict[str, int] = field(default_factory=dict)
    offers: dict[str, CouponOffer] = field(default_factory=dict)


class _Part:
    def __init__(self, store: FakeBenefitsStore) -> None:
        self.store = store

    @property
    def t(self) -> Tables:
        return self.store.tables


class FakeCatalogue(_Part):
    async def latest(self) -> Catalogue | None:
        return self.t.catalogues[-1] if self.t.catalogues else None

    async def add(self, catalogue: Catalogue) -> tuple[int, datetime]:
        version = len(self.t.catalogues) + 1
        self.t.catalogues.append(
            dataclasses.replace(catalogue, version=version, created_at=self.store.now)
        )
        return version, self.store.now


class FakeMemberTiers(_Part):
    async def get(self, member_id: str, *, lock: bool = False) -> MemberTier | None:
        return self.t.tiers.get(member_id)

    async def standing(self, member_id: str) -> tuple[MemberTier | None, InactiveMember | None]:
        return self.t.tiers.get(member_id), self.t.states.get(member_id)

    async def save(self, member: MemberTier) -> None:
        self.t.tiers[member.member_id] = member

    async def forget(self, member_id: str) -> None:
        self.t.tiers.pop(member_id, None)


class FakeMemberStates(_Part):
    async def get(self, member_id: str, *, lock: bool = False) -> InactiveMember | None:
        return self.t.states.get(member_id)

    async def among(self, member_ids: list[str]) -> dict[str, InactiveMember]:
        return {m: self.t.states[m] for m in member_ids if m in self.t.states}

    async def save(self, member: InactiveMember) -> None:
        self.t.states[member.member_id] = member

    async def forget(self, member_id: str) -> None:
        self.t.states.pop(member_id, None)

    async def forward_merged(self, old_survivor: str, new_survivor: str, now: datetime) -> None:
        for member_id, known in list(self.t.states.items()):
            if known.state is MemberState.MERGED and known.merged_into == old_survivor:
                self.t.states[member_id] = dataclasses.replace(
                    known, merged_into=new_survivor, updated_at=now
                )


class FakeBirthdays(_Part):
    async def save(self, member_id: str, month: int, day: int) -> None:
        self.t.birthdays[member_id] = (month, day)

    async def save_many(self, birthdays: list[tuple[str, int, int]]) -> None:
        for member_id, month, day in birthdays:
            self.t.birthdays[member_id] = (month, day)

    async def forget(self, member_id: str) -> None:
        self.t.birthdays.pop(member_id, None)

    async def celebrating(
        self, days: list[tuple[int, int]], after: str | None, limit: int
    ) -> list[tuple[str, str | None]]:
        found = sorted(
            m for m, day in self.t.birthdays.items() if day in days and (after is None or m > after)
        )
        return [(m, self.t.tiers[m].tier if m in self.t.tiers else None) for m in found[:limit]]

    async def count_celebrating(self, days: list[tuple[int, int]], after: str | None) -> int:
        return len(await self.celebrating(days, after, len(self.t.birthdays) + 1))


class FakeConsumptions(_Part):
    async def take_quota(self, member_id: str, benefit: str, period: str, quota: int) -> bool:
        used = self.t.quota.get((member_id, benefit, period), 0)
        if used >= quota:
            return False
        self.t.quota[(member_id, benefit, period)] = used + 1
        return True

    async def give_back_quota(self, member_id: str, benefit: str, period: str) -> None:
        key = (member_id, benefit, period)
        self.t.quota[key] = max(self.t.quota.get(key, 0) - 1, 0)

    async def usage(
        self, member_id: str, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], int]:
        return {
            (b, p): self.t.quota[(member_id, b, p)]
            for b, p in keys
            if (member_id, b, p) in self.t.quota
        }

    async def add(self, c: Consumption) -> None:
        self.t.consumptions[c.consumption_id] = copy.copy(c)

    async def get(self, member_id: str, consumption_id: str) -> Consumption | None:
        found = self.t.consumptions.get(consumption_id)
        return copy.copy(found) if found is not None and found.member_id == member_id else None

    async def release(self, c: Consumption) -> None:
        self.t.consumptions[c.consumption_id] = copy.copy(c)

    async def move_member(self, absorbed: str, survivor: str) -> None:
        for c in self.t.consumptions.values():
            if c.member_id == absorbed:
                c.member_id = survivor
                self.t.consumption_origins.setdefault(c.consumption_id, absorbed)
        for (member, benefit, period), used in list(self.t.quota.items()):
            if member == absorbed:
                del self.t.quota[(member, benefit, period)]
                key = (survivor, benefit, period)
                self.t.quota[key] = self.t.quota.get(key, 0) + used

    async def give_back_member(self, survivor: str, restored: str) -> None:
        for c in self.t.consumptions.values():
            if (
                c.member_id == survivor
                and self.t.consumption_origins.get(c.consumption_id) == restored
            ):
                c.member_id = restored
                del self.t.consumption_origins[c.consumption_id]
                if c.counted and c.released_at is None:
                    moved = (c.benefit_code, c.period_key)
                    self.t.quota[(survivor, *moved)] = max(self.t.quota[(survivor, *moved)] - 1, 0)
                    self.t.quota[(restored, *moved)] = self.t.quota.get((restored, *moved), 0) + 1

    async def erase_member(self, member_id: str) -> None:
        self.t.quota = {k: v for k, v in self.t.quota.items() if k[0] != member_id}
        for c in self.t.consumptions.values():
            if c.member_id == member_id:
                c.member_id = ANONYMOUS


class FakeCoupons(_Part):
    def _rows(self, member_id: str) -> list[StoredCoupon]:
        return [r for r in self.t.coupons if r.coupon.member_id == member_id]

    async def add(self, coupon: Coupon, grant_key: str | None = None) -> bool:
        taken = grant_key is not None and any(
            r.grant_key == grant_key for r in self._rows(coupon.member_id)
        )
        if not taken:
            self.t.coupons.append(
                StoredCoupon(len(self.t.coupons) + 1, copy.copy(coupon), grant_key)
            )
        return not taken

    async def add_many(self, coupons: list[Coupon]) -> None:
        for coupon in coupons:
            await self.add(coupon)

    async def get(self, member_id: str, code: str, *, lock: bool = False) -> Coupon | None:
        found = [r.coupon for r in self._rows(member_id) if r.coupon.code == code]
        return copy.copy(found[0]) if found else None

    async def by_grant(self, member_id: str, grant_key: str) -> Coupon | None:
        found = [r.coupon for r in self._rows(member_id) if r.grant_key == grant_key]
        return copy.copy(found[0]) if found else None

    async def granted_under(self, member_id: str, prefixes: list[str]) -> dict[str, int]:
        keys = [r.grant_key or "" for r in self._rows(member_id)]
        return {p: sum(k.startswith(p) for k in keys) for p in prefixes}

    async def save_redemption(self, coupon: Coupon) -> None:
        for row in self._rows(coupon.member_id):
            if row.coupon.code == coupon.code:
                row.coupon = copy.copy(coupon)

    async def of_member(
        self,
        member_id: str,
        state: CouponState | None,
        now: datetime,
        before: int | None,
        limit: int,
    ) -> list[tuple[int, Coupon]]:
        rows = [
            (r.seq, copy.copy(r.coupon))
            for r in reversed(self._rows(member_id))
            if (before is None or r.seq < before)
            and (state is None or r.coupon.state_at(now) is state)
        ]
        return rows[:limit]

    async def move_member(self, absorbed: str, survivor: str) -> None:
        kept = {r.grant_key for r in self._rows(survivor) if r.grant_key}
        for row in self._rows(absorbed):
            if row.grant_key in kept:
                row.grant_key = f"{row.grant_key}#merged:{absorbed}"
            row.origin = row.origin or absorbed
            row.coupon.member_id = survivor

    async def give_back_member(self, survivor: str, restored: str) -> None:
        for row in self._rows(survivor):
            if row.origin == restored:
                row.origin, row.coupon.member_id = None, restored
                if row.grant_key:
                    row.grant_key = row.grant_key.removesuffix(f"#merged:{restored}")

    async def erase_member(self, member_id: str) -> None:
        self.t.coupons = [
            r
            for r in self.t.coupons
            if r.coupon.member_id != member_id or r.coupon.state is CouponState.REDEEMED
        ]
        for row in self._rows(member_id):
            row.coupon.member_id, row.grant_key = ANONYMOUS, None


class FakeRewards(_Part):
    async def stock(self, codes: list[str]) -> dict[str, int]:
        return {c: self.t.stock[c] for c in codes if c in self.t.stock}

    async def restock(self, code: str, quantity: int) -> int:
        self.t.stock[code] = self.t.stock.get(code, 0) + quantity
        return self.t.stock[code]

    async def move_member(self, absorbed: str, survivor: str) -> None:
        pass  # no reward redemptions in memory: those run over the points service

    async def give_back_member(self, survivor: str, restored: str) -> None:
        pass

    async def erase_member(self, member_id: str) -> None:
        pass


class FakeOffers(_Part):
    async def add(self, offer: CouponOffer) -> None:
        self.t.offers[offer.offer_id] = copy.copy(offer)

    async def get(self, offer_id: str, *, lock: bool = False) -> CouponOffer | None:
        found = self.t.offers.get(offer_id)
        return copy.copy(found) if found else None

    async def save_claimed(self, offer: CouponOffer) -> None:
        self.t.offers[offer.offer_id].claimed = offer.claimed

    async def page(
        self, state: OfferState, now: datetime, before: tuple[datetime, str] | None, limit: int
    ) -> list[CouponOffer]:
        found = sorted(
            (o for o in self.t.offers.values() if o.state_at(now) is state),
            key=lambda o: (o.created_at, o.offer_id),
            reverse=True,
        )
        return [
            copy.copy(o) for o in found if before is None or (o.created_at, o.offer_id) < before
        ][:limit]


class FakeBenefitsStore:
    def __init__(self, now: datetime) -> None:
        self.tables = Tables()
        self.now = now
        self.catalogue = FakeCatalogue(self)
        self.members = FakeMemberTiers(self)
        self.member_states = FakeMemberStates(self)
        self.birthdays = FakeBirthdays(self)
        self.consumptions = FakeConsumptions(self)
        self.coupons = FakeCoupons(self)
        self.rewards = FakeRewards(self)
        self.offers = FakeOffers(self)


class FakeUnitOfWork(SnapshotWork):
    """One transaction on the fake stores: `published` holds the events of every commit."""

    def __init__(self, store: FakeBenefitsStore) -> None:
        self.store: FakeBenefitsStore = store
        super().__init__(store)
        self.published: list[Event] = []
        self._recorded: list[Event] = []

    @property
    def catalogue(self) -> FakeCatalogue:
        return self.store.catalogue

    @property
    def members(self) -> FakeMemberTiers:
        return self.store.members

    @property
    def member_states(self) -> FakeMemberStates:
        return self.store.member_states

    @property
    def birthdays(self) -> FakeBirthdays:
        return self.store.birthdays

    @property
    def consumptions(self) -> FakeConsumptions:
        return self.store.consumptions

    @property
    def coupons(self) -> FakeCoupons:
        return self.store.coupons

    @property
    def rewards(self) -> FakeRewards:
        return self.store.rewards

    @property
    def offers(self) -> FakeOffers:
        return self.store.offers

    def begin(self) -> None:
        self._recorded = []

    def record(self, event: Event) -> None:
        self._recorded.append(event)

    def publish(self) -> None:
        self.published.extend(self._recorded)
        self._recorded = []


def as_port(uow: FakeUnitOfWork) -> BenefitsWork:
    """The fake is the use cases' port (checked by the type checker)."""
    return uow
