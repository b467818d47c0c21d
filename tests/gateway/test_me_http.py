"""A member's own channel over HTTP (`/v1/me...`), as the member app calls it: the member signs
in by SMS through the gateway's routes (the code read back from engagement's development sink),
buys at a till, then reads their profile, account, statement, coupons, consents, export and
member code with their own token, and changes what is theirs; claims a coupon of an offer,
reads their referral code and referrals, asks to be erased, confirms with the code sent and
cancels; another member's token sees only its own member; a unit's token is refused; signing
out everywhere ends the refresh token.

All through the session's gateway and services: the session's identity sends its codes through
the session's engagement."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from loyalty_devstack.embedded import free_port
from loyalty_devstack.testing import ServiceRunner, metadata_for
from loyalty_kit.caller import Caller
from loyalty_kit.scopes import MEMBER_SCOPES
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.gateway.conftest import Gateway
from tests.gateway.test_http import fields_of, reason_of, register

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def listening(url: str) -> None:
    """Until the gateway's HTTP side (started beside its gRPC server) answers, within 10 s."""
    deadline = asyncio.get_running_loop().time() + 10
    async with httpx.AsyncClient(base_url=url) as http:
        while True:
            try:
                await http.get("/openapi.json")
                return
            except httpx.TransportError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)


@pytest_asyncio.fixture(loop_scope="session")
async def me_gateway(gateway: Gateway) -> Gateway:
    """The session's gateway, its programme, ladder and catalogue in force (the `gateway`
    fixture puts them there); its identity sends codes through the session's engagement."""
    return gateway


def new_phone() -> tuple[str, str]:
    """A fresh mobile number as a member types it, and in E.164 (15x: no demo's, no other's)."""
    number = uuid.uuid4().int
    digits = f"15{'012356789'[number % 9]}{number // 9 % 10**8:08d}"  # 154 is no mobile prefix
    return f"{digits[:3]} {digits[3:7]} {digits[7:]}", f"+86{digits}"


def new_address() -> str:
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


async def sign_in_by_sms(gateway: Gateway, typed: str, e164: str) -> dict[str, Any]:
    """A whole sign-in through the routes: the code sent, read back from the development sink
    (an admin's route), verified at the mall's app."""
    async with (
        await gateway.session("mall", "members:sign_in") as app,
        await gateway.session("group", "admin") as admin,
    ):
        started = await app.post(
            "/v1/memberSignIn:startSms", json={"phone": typed, "clientAddress": new_address()}
        )
        assert started.status_code == 200, started.text
        sent = await admin.get("/v1/transactionalMessages", params={"phone": e164})
        assert sent.status_code == 200, sent.text
        code = sent.json()["messages"][0]["body"].split("code is ")[1][:6]
        verified = await app.post(
            "/v1/memberSignIn:verifySms",
            json={"challenge": started.json()["challenge"], "code": code, "unit": "mall"},
        )
        assert verified.status_code == 200, verified.text
        found: dict[str, Any] = verified.json()
        return found


async def sign_in_by_wechat(gateway: Gateway) -> dict[str, Any]:
    async with await gateway.session("mall", "members:sign_in") as app:
        signed = await app.post(
            "/v1/memberSignIn:weChat", json={"code": f"dev-o{uuid.uuid4().hex}", "unit": "mall"}
        )
        assert signed.status_code == 200, signed.text
        found: dict[str, Any] = signed.json()
        return found


def as_member(gateway: Gateway, signed: dict[str, Any]) -> httpx.AsyncClient:
    token = signed["tokens"]["accessToken"]
    return httpx.AsyncClient(
        base_url=gateway.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )


async def buy(gateway: Gateway, typed: str, amount: str) -> None:
    """A purchase at a mall till, the member known by phone (mall: points available at once)."""
    async with await gateway.session("mall", "earn") as till:
        bought = await till.post(
            "/v1/purchases:record",
            json={
                "identity": {"type": "phone", "value": typed},
                "unit": "mall",
                "orderId": f"mall-{uuid.uuid4().hex[:8]}",
                "requestId": uuid.uuid4().hex,
                "lines": [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": amount}}],
            },
        )
        assert bought.status_code == 200, bought.text


async def test_a_member_signed_in_by_sms_reads_and_spends_their_own_account(
    me_gateway: Gateway,
) -> None:
    typed, e164 = new_phone()
    signed = await sign_in_by_sms(me_gateway, typed, e164)
    member = signed["member"]["name"]
    await buy(me_gateway, typed, "6000.00")
    async with as_member(me_gateway, signed) as me:
        profile = await me.get("/v1/me")
        assert profile.status_code == 200, profile.text
        shown = profile.json()["member"]
        assert shown["name"] == member and shown["personalDataMasked"] is False
        assert shown["state"] == "MEMBER_STATE_ACTIVE"
        assert {"type": "phone", "value": e164} in [
            {"type": i["type"], "value": i["value"]} for i in shown["identities"]
        ]

        account = await me.get("/v1/me/account", params={"expiringWithinDays": 3660})
        assert account.status_code == 200, account.text
        body = account.json()
        assert body["balance"]["available"] == "6000" and body["unavailable"] == []
        assert body["tier"]["tier"]
        expiring = sum(int(lot["remainingPoints"]) for lot in body["expiringLots"])
        assert expiring == int(body["balance"]["expiringSoon"])

        statement = await me.get("/v1/me/postings")
        assert statement.status_code == 200, statement.text
        assert [(p["kind"], p["points"]) for p in statement.json()["postings"]] == [
            ("POSTING_KIND_EARN", "6000")
        ]
        lots = await me.get("/v1/me/lots")
        assert [lot["remainingPoints"] for lot in lots.json()["lots"]] == ["6000"]

        redeem = {"requestId": uuid.uuid4().hex, "reward": "cinema-ticket"}
        first = await me.post("/v1/me/rewards:redeem", json=redeem)
        assert first.status_code == 200, first.text
        again = await me.post("/v1/me/rewards:redeem", json=redeem)
        assert again.status_code == 200, again.text
        assert (
            again.json()["redemption"]["redemptionId"]
            == (first.json()["redemption"]["redemptionId"])
        )
        after = (await me.get("/v1/me/account")).json()["balance"]
        assert after["available"] == "1000"  # paid once
        coupons = (await me.get("/v1/me/coupons")).json()["coupons"]
        assert first.json()["redemption"]["coupon"]["code"] in [c["code"] for c in coupons]
        entitlements = await me.get("/v1/me/entitlements")
        assert entitlements.status_code == 200, entitlements.text
        history = await me.get("/v1/me/tierHistory")
        assert history.status_code == 200, history.text

        code = await me.get("/v1/me/memberCode")
        assert code.status_code == 200, code.text
        assert code.json()["memberCode"]["member"] == member
        rotated = await me.post("/v1/me/memberCode:rotate", json={"requestId": uuid.uuid4().hex})
        assert rotated.status_code == 200, rotated.text
        new_code = rotated.json()["memberCode"]["code"]
        assert new_code[2:12] != code.json()["memberCode"]["code"][2:12]  # a new handle

        export = await me.get("/v1/me:export")
        assert export.status_code == 200, export.text
        exported = export.json()["export"]
        assert exported["member"] == member
        assert [p["points"] for p in exported["points"]["postings"]] == ["-5000", "6000"]


async def test_a_member_grants_and_withdraws_consents_and_changes_their_profile(
    me_gateway: Gateway,
) -> None:
    signed = await sign_in_by_sms(me_gateway, *new_phone())
    sms = "CONSENT_PURPOSE_MARKETING_SMS"
    async with as_member(me_gateway, signed) as me:
        for granted in (True, False):
            changed = await me.post(
                "/v1/me/consents:set",
                json={
                    "requestId": uuid.uuid4().hex,
                    "changes": [{"purpose": sms, "granted": granted}],
                },
            )
            assert changed.status_code == 200, changed.text
        consents = await me.get("/v1/me/consents")
        assert consents.status_code == 200, consents.text
        body = consents.json()
        now = next(c for c in body["consents"] if c["purpose"] == sms)
        assert (now["granted"], now["source"]) == (False, "member:self-service")
        events = [(e["purpose"], e["granted"], e["source"]) for e in body["consentEvents"]]
        assert events[:2] == [
            (sms, False, "member:self-service"),
            (sms, True, "member:self-service"),
        ]

        name = f"Li {uuid.uuid4().hex[:6]}"
        updated = await me.patch(
            "/v1/me/profile",
            params={"requestId": uuid.uuid4().hex, "updateMask": "fullName,region"},
            json={"fullName": name, "region": "CN-31"},
        )
        assert updated.status_code == 200, updated.text
        profile = (await me.get("/v1/me")).json()["member"]["profile"]
        assert (profile["fullName"], profile["region"]) == (name, "CN-31")  # in clear: their own


async def test_bad_input_is_refused_naming_the_field(me_gateway: Gateway) -> None:
    signed = await sign_in_by_wechat(me_gateway)
    async with as_member(me_gateway, signed) as me:
        cases = [
            (await me.get("/v1/me/postings", params={"pageSize": -1}), ["page_size"]),
            (await me.get("/v1/me/consents", params={"pageSize": -5}), ["page_size"]),
            (
                await me.get("/v1/me/account", params={"expiringWithinDays": 5000}),
                ["expiring_within_days"],
            ),
            (
                await me.patch(
                    "/v1/me/profile",
                    params={"requestId": uuid.uuid4().hex, "updateMask": "nickname"},
                    json={"fullName": "x"},
                ),
                ["update_mask.paths[0]"],
            ),
            (
                await me.post(
                    "/v1/me/consents:set",
                    json={
                        "requestId": uuid.uuid4().hex,
                        "changes": [{"purpose": "CONSENT_PURPOSE_UNSPECIFIED", "granted": True}],
                    },
                ),
                ["changes[0].purpose"],
            ),
            (
                await me.post("/v1/me/rewards:redeem", json={"reward": "cinema-ticket"}),
                ["request_id"],
            ),
        ]
        for answer, fields in cases:
            assert answer.status_code == 400, answer.text
            assert fields_of(answer) == fields, answer.text


async def test_a_members_token_sees_only_its_own_member_and_no_other_token_gets_in(
    me_gateway: Gateway,
) -> None:
    typed, e164 = new_phone()
    first = await sign_in_by_sms(me_gateway, typed, e164)
    await buy(me_gateway, typed, "800.00")
    second = await sign_in_by_wechat(me_gateway)
    async with as_member(me_gateway, second) as other:
        mine = (await other.get("/v1/me")).json()["member"]
        assert mine["name"] == second["member"]["name"] != first["member"]["name"]
        assert e164 not in str(mine)
        assert (await other.get("/v1/me/postings")).json()["postings"] == []
        balance = (await other.get("/v1/me/account")).json()["balance"]
        assert balance["available"] == "0"
        foreign = await other.get(f"/v1/{first['member']['name']}/balance")
        assert (foreign.status_code, reason_of(foreign)) == (403, "MEMBER_MISMATCH")

    async with (
        await me_gateway.session("mall", "earn", "personal_data:read") as till,
        await me_gateway.session("group", "admin") as admin,
    ):
        for caller in (till, admin):
            for path in ("/v1/me", "/v1/me/account", "/v1/me:export"):
                refused = await caller.get(path)
                assert refused.status_code == 403, refused.text
                assert reason_of(refused) == "MEMBER_TOKEN_REQUIRED"
                assert fields_of(refused) == []

    # A member token without `self:redeem` (the scopes a sign-in gives, less one).
    member_id = first["member"]["memberId"]
    reader = Caller(
        client_id=f"member:{member_id}", scopes=frozenset({"self:read"}), member=member_id
    )
    headers = dict(metadata_for(reader))
    async with httpx.AsyncClient(base_url=me_gateway.url, timeout=30, headers=headers) as app:
        assert (await app.get("/v1/me")).status_code == 200
        spend = await app.post(
            "/v1/me/rewards:redeem", json={"requestId": uuid.uuid4().hex, "reward": "x"}
        )
        assert (spend.status_code, reason_of(spend)) == (403, "SCOPE_REQUIRED")


async def test_signing_out_everywhere_ends_the_refresh_token(me_gateway: Gateway) -> None:
    signed = await sign_in_by_wechat(me_gateway)
    async with as_member(me_gateway, signed) as me:
        ended = await me.post("/v1/me:signOutEverywhere", json={})
        assert ended.status_code == 200, ended.text
        assert ended.json()["sessionsEnded"] == 1
    async with await me_gateway.session("mall", "members:sign_in") as app:
        gone = await app.post(
            "/v1/memberSignIn:refresh", json={"refreshToken": signed["tokens"]["refreshToken"]}
        )
        assert (gone.status_code, reason_of(gone)) == (401, "REFRESH_TOKEN_REVOKED")


async def test_a_service_down_is_503_and_the_account_names_the_part_it_lacks(
    settings: Settings, gateway_service: RunningService, me_gateway: Gateway
) -> None:
    """A gateway whose points and tiers do not answer (nothing listens where it looks)."""
    from loyalty_gateway.app import SPEC as GATEWAY

    signed = await sign_in_by_wechat(me_gateway)
    nowhere = f"127.0.0.1:{free_port()}"
    port = free_port()
    runner = ServiceRunner(settings)
    try:
        await runner.start(
            GATEWAY,
            gateway_service.context.settings.model_copy(
                update={
                    "points_target": nowhere,
                    "tiers_target": nowhere,
                    "gateway_http_port": port,
                }
            ),
        )
        broken = Gateway(me_gateway.service, f"http://127.0.0.1:{port}")
        await listening(broken.url)
        async with as_member(broken, signed) as me:
            profile = await me.get("/v1/me")  # identity answers
            assert profile.status_code == 200, profile.text
            for path in ("/v1/me/account", "/v1/me/postings", "/v1/me/tierHistory"):
                down = await me.get(path)
                assert down.status_code == 503, down.text
                assert down.headers["Retry-After"]
    finally:
        await runner.stop_all()


async def test_the_gateways_own_routes_read_a_member_token_as_the_services_do(
    gateway: Gateway,
) -> None:
    """A member token on the composite routes: refused where the rule names no member (the
    overview is a unit's), and its export reaches its own member only."""
    async with await gateway.session("mall", "earn") as till:
        member, other = await register(till), await register(till)
    member_id = member.removeprefix("members/")
    own = Caller(client_id=f"member:{member_id}", scopes=MEMBER_SCOPES, member=member_id)
    headers = dict(metadata_for(own))
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=headers) as app:
        overview = await app.get(f"/v1/{member}/overview")
        assert (overview.status_code, reason_of(overview)) == (403, "MEMBER_TOKEN_REFUSED")
        foreign = await app.get(f"/v1/{other}:export")
        assert (foreign.status_code, reason_of(foreign)) == (403, "MEMBER_MISMATCH")
        export = await app.get(f"/v1/{member}:export")
        assert export.status_code == 200, export.text


async def publish_offer(gateway: Gateway) -> dict[str, Any]:
    """An offer of the group's marketing, open now: 10 coupons, one per member."""
    start = datetime.now(UTC) - timedelta(minutes=1)
    async with await gateway.session("group", "coupons:issue") as marketing:
        published = await marketing.post(
            "/v1/couponOffers",
            json={
                "template": "birthday-gift",
                "available": 10,
                "claimStartTime": start.isoformat(),
                "claimEndTime": (start + timedelta(days=3)).isoformat(),
            },
            params={"requestId": uuid.uuid4().hex},
        )
        assert published.status_code == 201, published.text
        offer: dict[str, Any] = published.json()["couponOffer"]
        return offer


async def test_a_member_lists_the_open_offers_and_claims_one_coupon_of_an_offer(
    me_gateway: Gateway,
) -> None:
    offer = await publish_offer(me_gateway)
    signed = await sign_in_by_wechat(me_gateway)
    async with as_member(me_gateway, signed) as me:
        listed = await me.get("/v1/me/couponOffers", params={"pageSize": 200})
        assert listed.status_code == 200, listed.text
        shown = {o["name"]: o for o in listed.json()["couponOffers"]}
        assert shown[offer["name"]]["memberClaimed"] == 0
        assert all(o["state"] == "COUPON_OFFER_STATE_OPEN" for o in shown.values())

        claim = {"requestId": uuid.uuid4().hex}
        claimed = await me.post(f"/v1/me/{offer['name']}:claim", json=claim)
        assert claimed.status_code == 200, claimed.text
        coupon = claimed.json()["coupon"]
        assert coupon["templateCode"] == "birthday-gift"
        assert coupon["name"].startswith(f"{signed['member']['name']}/coupons/")
        assert claimed.json()["couponOffer"]["memberClaimed"] == 1
        again = await me.post(f"/v1/me/{offer['name']}:claim", json=claim)
        assert again.status_code == 200, again.text
        assert again.json()["coupon"]["code"] == coupon["code"]  # the same claim, answered

        mine = await me.get("/v1/me/coupons")
        assert [c["code"] for c in mine.json()["coupons"]] == [coupon["code"]]
        listed = await me.get("/v1/me/couponOffers", params={"pageSize": 200})
        after = {o["name"]: o for o in listed.json()["couponOffers"]}
        assert offer["name"] not in after  # one per member: nothing more to claim

        over = await me.post(f"/v1/me/{offer['name']}:claim", json={"requestId": uuid.uuid4().hex})
        assert (over.status_code, reason_of(over)) == (400, "OFFER_LIMIT_REACHED")

    # A member token that may read but not redeem claims nothing.
    member_id = signed["member"]["memberId"]
    reader = Caller(
        client_id=f"member:{member_id}", scopes=frozenset({"self:read"}), member=member_id
    )
    async with httpx.AsyncClient(
        base_url=me_gateway.url, timeout=30, headers=dict(metadata_for(reader))
    ) as app:
        refused = await app.post(
            f"/v1/me/{offer['name']}:claim", json={"requestId": uuid.uuid4().hex}
        )
        assert (refused.status_code, reason_of(refused)) == (403, "SCOPE_REQUIRED")


async def test_a_member_reads_its_referral_code_and_the_members_it_referred(
    me_gateway: Gateway,
) -> None:
    referrer = await sign_in_by_wechat(me_gateway)
    referred = await sign_in_by_wechat(me_gateway)
    async with as_member(me_gateway, referrer) as me:
        got = await me.get("/v1/me/referralCode")
        assert got.status_code == 200, got.text
        code = got.json()["referralCode"]
        assert code["member"] == referrer["member"]["name"] and len(code["code"]) == 8
        assert (await me.get("/v1/me/referralCode")).json()["referralCode"] == code
        assert (await me.get("/v1/me/referrals")).json()["referrals"] == []

        async with await me_gateway.session("mall", "earn") as app:
            recorded = await app.post(
                f"/v1/{referred['member']['name']}/referral",
                json={"requestId": uuid.uuid4().hex, "referralCode": code["code"].lower()},
            )
            assert recorded.status_code == 200, recorded.text

        referrals = await me.get("/v1/me/referrals", params={"pageSize": 10})
        assert referrals.status_code == 200, referrals.text
        (one,) = referrals.json()["referrals"]
        assert one["referredMember"].endswith(referred["member"]["memberId"][-4:])
        assert referred["member"]["memberId"][:-4] not in one["referredMember"]  # masked
        assert one["rewarded"] is False

    async with as_member(me_gateway, referred) as other:
        theirs = (await other.get("/v1/me/referralCode")).json()["referralCode"]
        assert theirs["member"] == referred["member"]["name"] and theirs["code"] != code["code"]


async def erasure_code(gateway: Gateway, e164: str) -> str:
    """The erasure code the development sink holds for a phone, the newest."""
    async with await gateway.session("group", "admin") as admin:
        sent = await admin.get("/v1/transactionalMessages", params={"phone": e164})
        assert sent.status_code == 200, sent.text
    (body, *_) = [m["body"] for m in sent.json()["messages"] if m["kind"] == "erasure_code"]
    return str(body.split(" is ")[1][:6])


async def test_a_member_asks_to_be_erased_confirms_with_the_code_and_cancels(
    me_gateway: Gateway,
) -> None:
    typed, e164 = new_phone()
    signed = await sign_in_by_sms(me_gateway, typed, e164)
    member = signed["member"]["name"]
    async with as_member(me_gateway, signed) as me:
        nothing = await me.get("/v1/me/erasureRequest")
        assert nothing.status_code == 404, nothing.text

        ask = {"requestId": uuid.uuid4().hex}
        opened = await me.post("/v1/me:requestErasure", json=ask)
        assert opened.status_code == 200, opened.text
        request = opened.json()["erasureRequest"]
        assert (request["member"], request["state"]) == (member, "ERASURE_STATE_REQUESTED")
        again = await me.post("/v1/me:requestErasure", json=ask)
        assert again.json()["erasureRequest"]["name"] == request["name"]  # sent once
        code = await erasure_code(me_gateway, e164)

        wrong = f"{(int(code) + 1) % 10**6:06d}"
        refused = await me.post(
            "/v1/me/erasureRequest:confirm", json={"requestId": uuid.uuid4().hex, "code": wrong}
        )
        assert (refused.status_code, reason_of(refused)) == (400, "ERASURE_CODE_WRONG")
        confirmed = await me.post(
            "/v1/me/erasureRequest:confirm", json={"requestId": uuid.uuid4().hex, "code": code}
        )
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["erasureRequest"]["state"] == "ERASURE_STATE_CONFIRMED"

        pending = await me.get("/v1/me/erasureRequest")
        assert pending.status_code == 200, pending.text
        seen = pending.json()["erasureRequest"]
        assert seen["state"] == "ERASURE_STATE_CONFIRMED"
        assert datetime.fromisoformat(seen["eraseAfter"]) > datetime.now(UTC)

        cancel = {"requestId": uuid.uuid4().hex}
        cancelled = await me.post("/v1/me/erasureRequest:cancel", json=cancel)
        assert cancelled.status_code == 200, cancelled.text
        gone = cancelled.json()["erasureRequest"]
        assert (gone["state"], gone["cancelReason"]) == ("ERASURE_STATE_CANCELLED", "member")
        assert (await me.post("/v1/me/erasureRequest:cancel", json=cancel)).status_code == 200
        assert (await me.get("/v1/me")).json()["member"]["state"] == "MEMBER_STATE_ACTIVE"

    async with await me_gateway.session("group", "admin", "members:manage") as admin:
        for path in ("/v1/me/erasureRequest", "/v1/me/referralCode", "/v1/me/couponOffers"):
            refused = await admin.get(path)
            assert (refused.status_code, reason_of(refused)) == (403, "MEMBER_TOKEN_REQUIRED")


async def test_bad_input_to_offers_referrals_and_erasure_names_the_field(
    me_gateway: Gateway,
) -> None:
    signed = await sign_in_by_wechat(me_gateway)
    offer = f"couponOffers/{uuid.uuid4()}"
    async with as_member(me_gateway, signed) as me:
        cases = [
            (await me.get("/v1/me/couponOffers", params={"pageSize": -1}), ["page_size"]),
            (await me.get("/v1/me/referrals", params={"pageSize": -3}), ["page_size"]),
            (await me.post(f"/v1/me/{offer}:claim", json={}), ["request_id"]),
            (
                await me.post(
                    "/v1/me/couponOffers/not-an-id:claim", json={"requestId": uuid.uuid4().hex}
                ),
                ["offer"],
            ),
            (
                await me.post("/v1/me:requestErasure", json={"requestId": "no spaces"}),
                ["request_id"],
            ),
            (await me.post("/v1/me/erasureRequest:confirm", json={}), ["request_id", "code"]),
            (
                await me.post(
                    "/v1/me/erasureRequest:confirm",
                    json={"requestId": uuid.uuid4().hex, "code": "12ab"},
                ),
                ["code"],
            ),
            (await me.post("/v1/me/erasureRequest:cancel", json={}), ["request_id"]),
        ]
        for answer, fields in cases:
            assert answer.status_code == 400, answer.text
            assert fields_of(answer) == fields, answer.text
        unknown = await me.post(f"/v1/me/{offer}:claim", json={"requestId": uuid.uuid4().hex})
        assert unknown.status_code == 404, unknown.text
