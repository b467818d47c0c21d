"""The events the benefits service learns from, as a handler table: tier changes from the tiers
service; merges, unmerges, erasures, suspensions, reactivations and birthdays (of profiles
changed and of members imported) from identity."""

from __future__ import annotations

from collections.abc import Sequence

from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.tiers.v1 import events_pb2 as tier_events
from loyalty_kit.inbox import EventConsumer, Subscription, consumers_of, member_merges
from loyalty_kit.timestamps import moment, moment_of

from loyalty_benefits.bootstrap import Benefits
from loyalty_benefits.service_layer import handlers
from loyalty_benefits.service_layer.uow import BenefitsUnitOfWork


async def tier_changed(app: Benefits, uow: BenefitsUnitOfWork, e: tier_events.TierChanged) -> None:
    await handlers.on_tier_changed(
        uow,
        e.member_id,
        e.from_tier,
        e.to_tier,
        moment(e.effective_at, "effective_at"),
        moment_of(e, "tier_year_end"),
        app.clock(),
        e.reason,
        welcome_gift=app.settings.fixed_welcome_gifts,
    )


async def member_suspended(
    app: Benefits, uow: BenefitsUnitOfWork, e: identity_events.MemberSuspended
) -> None:
    await handlers.on_member_suspended(uow, e.member_id, app.clock())


async def member_reactivated(
    _app: Benefits, uow: BenefitsUnitOfWork, e: identity_events.MemberReactivated
) -> None:
    await handlers.on_member_reactivated(uow, e.member_id)


async def profile_changed(
    _app: Benefits, uow: BenefitsUnitOfWork, e: identity_events.ProfileChanged
) -> None:
    await handlers.on_profile_changed(uow, e.member_id, e.birthday_month, e.birthday_day)


async def members_imported(
    _app: Benefits, uow: BenefitsUnitOfWork, e: identity_events.MembersImported
) -> None:
    birthdays = [
        (m.member_id, m.birthday_month, m.birthday_day)
        for m in e.members
        if m.birthday_month and m.birthday_day
    ]
    await handlers.on_members_imported(uow, birthdays)


TABLE: Sequence[Subscription[Benefits]] = (
    Subscription("benefits-tiers", "tiers", {tier_events.TierChanged: tier_changed}),
    Subscription(
        "benefits-members",
        "identity",
        {
            **member_merges(
                handlers.on_member_merged, handlers.on_member_unmerged, handlers.on_member_erased
            ),
            identity_events.MemberSuspended: member_suspended,
            identity_events.MemberReactivated: member_reactivated,
            identity_events.ProfileChanged: profile_changed,
            identity_events.MembersImported: members_imported,
        },
    ),
)


def consumers(app: Benefits) -> list[EventConsumer]:
    return consumers_of(TABLE, app, app.uow, app.context.settings.event_namespace)
