"""Lifetime value as a served figure: a history drawn from the models' own story (a few
thousand members who first bought in 2023, followed to mid-2024) is put into the insights
service's facts, FitLifetimeValue fits on it in the worker process while the service goes on
answering, the predictions land in `member_figures`, and GetLifetimeValue's totals, deciles and
member pages agree with those rows; a fit that fails keeps the last fit's predictions; a merge
counts the absorbed member's purchases for the survivor, an erased member gets none; the
access rules; one fit at a time across replicas; the routes through the gateway.

The first fit in the worker process imports pymc (about 10 s) and, with an empty compile cache,
compiles the models (a minute more, once per machine)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pandas as pd
import pytest
import pytest_asyncio
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty.insights.v1 import insights_service_pb2_grpc
from loyalty_insights.adapters.locks import FIT_LOCK, held
from loyalty_insights.domain.clv import (
    AMOUNT,
    AT,
    MEMBER,
    PurchaseParameters,
    SpendParameters,
    simulate_transactions,
)
from loyalty_kit.db import driver_connection
from loyalty_kit.pagination import next_token
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.gateway.conftest import Gateway
from tests.insights.conftest import GROUP_TEAM, Suite, unit_team
from tests.points.conftest import ADMIN
from tests.support.clients import As
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

PURCHASES = PurchaseParameters(r=0.6, alpha=30.0, a=0.8, b=4.0)
SPEND = SpendParameters(p=6.0, q=4.0, v=300.0)
START, CALIBRATION_END, AS_OF = (
    datetime(2023, 1, 1, tzinfo=UTC),
    datetime(2024, 1, 1, tzinfo=UTC),
    datetime(2024, 7, 1, tzinfo=UTC),
)
HOLDOUT_DAYS = (AS_OF - CALIBRATION_END).days
MEMBERS = 2_000
NEWCOMERS = 50  # registered before AS_OF, never bought
UNITS = ("mall", "hotel", "cinema")
FIT_SECONDS = 300  # the first fit of a session may compile the models


class History:
    """The drawn history as facts of the insights service, under member IDs of this run."""

    def __init__(self, transactions: pd.DataFrame, prefix: str) -> None:
        self.transactions = transactions
        self.prefix = prefix

    def id(self, n: int) -> str:
        return f"{self.prefix}{n}"

    @property
    def member_ids(self) -> set[str]:
        return {self.id(n) for n in range(MEMBERS)}

    def spent(self, *members: int) -> Decimal:
        """What these members spent before AS_OF."""
        names = {f"m{n}" for n in members}
        rows = self.transactions[self.transactions[MEMBER].isin(names)]
        return sum((Decimal(str(a)) for a in rows[AMOUNT]), Decimal(0))


async def _execute(service: RunningService, statement: str, *args: Any) -> None:
    async with service.context.uow() as uow:
        conn = await driver_connection(uow.session)
        await conn.execute(statement, *args)
        await uow.commit()


async def _fetch(service: RunningService, statement: str, *args: Any) -> list[Any]:
    async with service.context.uow() as uow:
        conn = await driver_connection(uow.session)
        return list(await conn.fetch(statement, *args))


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def history(insights_service: RunningService) -> History:
    """Purchases of MEMBERS members at the group's units (the first before CALIBRATION_END),
    NEWCOMERS members registered without a purchase; member 1 merged into member 0, member 2
    erased."""
    drawn = simulate_transactions(
        MEMBERS,
        PURCHASES,
        SPEND,
        START.replace(tzinfo=None),
        AS_OF.replace(tzinfo=None) - timedelta(seconds=1),
        first_purchases_until=CALIBRATION_END.replace(tzinfo=None),
        seed=11,
    )
    found = History(drawn, f"clv{uuid.uuid4().hex[:8]}-")
    members = [found.prefix + m.removeprefix("m") for m in drawn[MEMBER]]
    await _execute(
        insights_service,
        "INSERT INTO activity (member_id, kind, event_id, unit, occurred_at, spend, currency) "
        "SELECT m, 'purchase', e, u, t, s, 'CNY' FROM unnest($1::text[], $2::text[], "
        "$3::text[], $4::timestamptz[], $5::numeric[]) AS r(m, e, u, t, s)",
        members,
        [uuid.uuid4().hex for _ in members],
        [UNITS[i % len(UNITS)] for i in range(len(members))],
        [t.floor("us").to_pydatetime().replace(tzinfo=UTC) for t in drawn[AT]],
        [Decimal(str(a)) for a in drawn[AMOUNT]],
    )
    newcomers = [f"{found.prefix}new{n}" for n in range(NEWCOMERS)]
    await _execute(
        insights_service,
        "INSERT INTO registrations (member_id, unit, registered_at, imported) "
        "SELECT m, 'mall', $2, false FROM unnest($1::text[]) AS m",
        newcomers,
        AS_OF - timedelta(days=30),
    )
    await _execute(
        insights_service,
        "INSERT INTO member_merges (absorbed_id, survivor_id, merged_at) VALUES ($1, $2, $3)",
        found.id(1),
        found.id(0),
        AS_OF,
    )
    await _execute(
        insights_service,
        "INSERT INTO erased_members (member_id, erased_at) VALUES ($1, $2)",
        found.id(2),
        AS_OF,
    )
    return found


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def channel(insights_service: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(insights_service.target) as opened:
        yield opened


def admin(channel: grpc.aio.Channel) -> Any:
    return As(insights_service_pb2_grpc.InsightsServiceStub, channel, ADMIN)


def group(channel: grpc.aio.Channel) -> Any:
    return As(insights_service_pb2_grpc.InsightsServiceStub, channel, GROUP_TEAM)


async def fit_to_the_end(channel: grpc.aio.Channel, name: str) -> tuple[pb.LifetimeValueFit, float]:
    """The fit once it succeeded or failed, and the slowest answer of another figure while
    it was running."""
    insights = group(channel)
    slowest = 0.0
    deadline = time.monotonic() + FIT_SECONDS
    while time.monotonic() < deadline:
        fit = (await insights.GetLifetimeValueFit(pb.GetLifetimeValueFitRequest(name=name))).fit
        if fit.state in (
            pb.LIFETIME_VALUE_FIT_STATE_SUCCEEDED,
            pb.LIFETIME_VALUE_FIT_STATE_FAILED,
        ):
            return fit, slowest
        if fit.state == pb.LIFETIME_VALUE_FIT_STATE_RUNNING:
            began = time.monotonic()
            await insights.GetUnitOverlap(
                pb.GetUnitOverlapRequest(start_time=timestamp(START), end_time=timestamp(AS_OF))
            )
            slowest = max(slowest, time.monotonic() - began)
        await asyncio.sleep(0.2)
    raise AssertionError(f"fit {name} did not end in {FIT_SECONDS} s: {fit}")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def fitted(
    channel: grpc.aio.Channel, history: History
) -> tuple[pb.LifetimeValueFit, float, str]:
    # The members' figures learn the units of the facts put in by hand (events would tell them).
    await group(channel).RefreshFigures(pb.RefreshFiguresRequest(request_id=uuid.uuid4().hex))
    request_id = uuid.uuid4().hex
    asked = await admin(channel).FitLifetimeValue(
        pb.FitLifetimeValueRequest(
            request_id=request_id, as_of=timestamp(AS_OF), holdout_days=HOLDOUT_DAYS
        )
    )
    assert asked.fit.state in (
        pb.LIFETIME_VALUE_FIT_STATE_PENDING,
        pb.LIFETIME_VALUE_FIT_STATE_RUNNING,
    )
    assert asked.fit.as_of.ToDatetime(tzinfo=UTC) == AS_OF
    fit, slowest = await fit_to_the_end(channel, asked.fit.name)
    return fit, slowest, request_id


async def test_a_fit_stores_every_members_prediction_and_its_holdout_report(
    fitted: tuple[pb.LifetimeValueFit, float, str],
    history: History,
    insights_service: RunningService,
) -> None:
    fit, _, _ = fitted
    assert fit.state == pb.LIFETIME_VALUE_FIT_STATE_SUCCEEDED, fit.error
    assert fit.members == fit.members_done
    assert fit.members >= MEMBERS - 2 + NEWCOMERS  # one absorbed, one erased
    assert fit.end_time.ToDatetime() >= fit.start_time.ToDatetime()

    # The parameters the history was drawn from, found again roughly.
    assert fit.parameters.r == pytest.approx(PURCHASES.r, rel=0.5)
    assert fit.parameters.alpha == pytest.approx(PURCHASES.alpha, rel=0.5)

    report = fit.holdout
    assert report.calibration_end_time.ToDatetime(tzinfo=UTC) == CALIBRATION_END
    assert report.holdout_end_time.ToDatetime(tzinfo=UTC) == AS_OF
    assert report.members >= MEMBERS - 2
    assert report.actual_purchases > 0
    assert report.predicted_purchases == pytest.approx(report.actual_purchases, rel=0.25)
    assert Decimal(report.actual_value.amount) > 0
    assert report.mean_absolute_error < report.baseline_mean_absolute_error
    # Member by member, grouped by calibration repeat purchase days (0, 1, ..., 7 or more).
    groups = list(report.groups)
    assert [g.repeat_purchases for g in groups] == sorted(g.repeat_purchases for g in groups)
    assert groups[0].repeat_purchases == 0 and groups[-1].and_more
    assert sum(g.members for g in groups) == report.members
    assert sum(g.actual_purchases for g in groups) == report.actual_purchases
    assert sum(g.predicted_purchases for g in groups) == pytest.approx(report.predicted_purchases)

    rows = await _fetch(
        insights_service,
        "SELECT member_id, historical_value, predicted_value_12m, p_alive FROM member_figures "
        "WHERE clv_fit_id = $1 AND member_id LIKE $2",
        fit.name.removeprefix("lifetimeValueFits/"),
        history.prefix + "%",
    )
    by_member = {r["member_id"]: r for r in rows}
    bought = history.member_ids - {history.id(1), history.id(2)}
    assert bought <= by_member.keys()
    assert history.id(1) not in by_member  # absorbed: counted for member 0
    assert history.id(2) not in by_member  # erased
    assert by_member[history.id(0)]["historical_value"] == history.spent(0, 1)
    assert all(0 <= by_member[m]["p_alive"] <= 1 for m in bought)
    assert all(by_member[m]["predicted_value_12m"] >= 0 for m in bought)
    newcomers = [r for m, r in by_member.items() if m.startswith(history.prefix + "new")]
    assert len(newcomers) == NEWCOMERS
    assert all(r["p_alive"] is None and r["predicted_value_12m"] > 0 for r in newcomers)


async def test_the_service_answers_while_the_models_are_fitted(
    fitted: tuple[pb.LifetimeValueFit, float, str],
) -> None:
    _, slowest, _ = fitted
    assert slowest < 2.0


async def test_the_figure_agrees_with_the_stored_predictions(
    suite: Suite, fitted: tuple[pb.LifetimeValueFit, float, str], insights_service: RunningService
) -> None:
    fit, _, _ = fitted
    found = await suite.insights().GetLifetimeValue(pb.GetLifetimeValueRequest(page_size=50))
    assert found.fit.name == fit.name
    assert found.fit.holdout.members == fit.holdout.members
    [stored] = await _fetch(
        insights_service,
        "SELECT count(*) AS n, sum(historical_value) AS h, sum(predicted_value_12m) AS p, "
        "avg(p_alive) AS a FROM member_figures WHERE predicted_value_12m IS NOT NULL",
    )
    totals = found.totals
    assert totals.members == stored["n"]
    assert Decimal(totals.predicted_value.amount) == stored["p"].quantize(Decimal("0.01"))
    assert Decimal(totals.historical_value.amount) == stored["h"].quantize(Decimal("0.01"))
    assert totals.mean_probability_alive == pytest.approx(stored["a"])
    assert sum(d.members for d in found.deciles) == totals.members
    assert [d.decile for d in found.deciles] == list(range(1, 11))
    assert sum(Decimal(d.predicted_value.amount) for d in found.deciles) == pytest.approx(
        Decimal(totals.predicted_value.amount), abs=Decimal("0.1")
    )
    lows = [Decimal(d.min_predicted_value.amount) for d in found.deciles]
    assert lows == sorted(lows)

    values = [Decimal(m.predicted_value.amount) for m in found.members]
    assert len(values) == 50 and values == sorted(values, reverse=True)
    assert values[0] == Decimal(found.deciles[-1].max_predicted_value.amount)
    after = await suite.insights().GetLifetimeValue(
        pb.GetLifetimeValueRequest(page_size=50, page_token=found.next_page_token)
    )
    assert Decimal(after.members[0].predicted_value.amount) <= values[-1]
    assert not {m.member for m in after.members} & {m.member for m in found.members}

    hotel = await suite.insights().GetLifetimeValue(pb.GetLifetimeValueRequest(unit="hotel"))
    assert 0 < hotel.totals.members < totals.members


async def test_a_retried_fit_request_answers_the_same_fit(
    suite: Suite, fitted: tuple[pb.LifetimeValueFit, float, str]
) -> None:
    fit, _, request_id = fitted
    again = await admin(suite.insights_channel).FitLifetimeValue(
        pb.FitLifetimeValueRequest(
            request_id=request_id, as_of=timestamp(AS_OF), holdout_days=HOLDOUT_DAYS
        )
    )
    assert again.fit.name == fit.name
    assert again.fit.state == pb.LIFETIME_VALUE_FIT_STATE_SUCCEEDED


async def test_a_fit_that_fails_keeps_the_last_predictions(
    suite: Suite, fitted: tuple[pb.LifetimeValueFit, float, str]
) -> None:
    fit, _, _ = fitted
    before = await suite.insights().GetLifetimeValue(pb.GetLifetimeValueRequest(page_size=10))
    asked = await admin(suite.insights_channel).FitLifetimeValue(
        pb.FitLifetimeValueRequest(
            request_id=uuid.uuid4().hex, as_of=timestamp(datetime(2001, 1, 1, tzinfo=UTC))
        )
    )
    failed, _ = await fit_to_the_end(suite.insights_channel, asked.fit.name)
    assert failed.state == pb.LIFETIME_VALUE_FIT_STATE_FAILED
    assert "repeat purchases" in failed.error
    after = await suite.insights().GetLifetimeValue(pb.GetLifetimeValueRequest(page_size=10))
    assert after.fit.name == fit.name
    assert after.totals == before.totals
    assert list(after.members) == list(before.members)


async def test_bad_fit_requests_and_unknown_fits(suite: Suite) -> None:
    bad = await fails(
        admin(suite.insights_channel).FitLifetimeValue(
            pb.FitLifetimeValueRequest(request_id=uuid.uuid4().hex, holdout_days=-1)
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.fields == ["holdout_days"]
    missing = await fails(
        suite.insights().GetLifetimeValueFit(
            pb.GetLifetimeValueFitRequest(name=f"lifetimeValueFits/{uuid.uuid4()}")
        )
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND
    assert missing.reason == "LIFETIME_VALUE_FIT_NOT_FOUND"
    named = await fails(
        suite.insights().GetLifetimeValueFit(pb.GetLifetimeValueFitRequest(name="fits/1"))
    )
    assert named.code == grpc.StatusCode.INVALID_ARGUMENT and named.fields == ["name"]
    for page_token in ("nonsense", next_token(["NaN", "m1"], {"unit": ""})):
        token = await fails(
            suite.insights().GetLifetimeValue(pb.GetLifetimeValueRequest(page_token=page_token))
        )
        assert token.code == grpc.StatusCode.INVALID_ARGUMENT and token.fields == ["page_token"]


async def test_who_may_read_and_fit_lifetime_value(suite: Suite) -> None:
    hotel = suite.insights(unit_team("hotel"))
    own = await hotel.GetLifetimeValue(pb.GetLifetimeValueRequest(unit="hotel"))
    assert own.totals.members >= 0
    other = await fails(hotel.GetLifetimeValue(pb.GetLifetimeValueRequest(unit="mall")))
    assert other.code == grpc.StatusCode.PERMISSION_DENIED and other.reason == "UNIT_MISMATCH"
    group = await fails(hotel.GetLifetimeValue(pb.GetLifetimeValueRequest()))
    assert group.code == grpc.StatusCode.PERMISSION_DENIED and group.reason == "SCOPE_REQUIRED"
    fit = await fails(
        hotel.GetLifetimeValueFit(pb.GetLifetimeValueFitRequest(name="lifetimeValueFits/x"))
    )
    assert fit.code == grpc.StatusCode.PERMISSION_DENIED
    asked = await fails(
        suite.insights(GROUP_TEAM).FitLifetimeValue(
            pb.FitLifetimeValueRequest(request_id=uuid.uuid4().hex)
        )
    )
    assert asked.code == grpc.StatusCode.PERMISSION_DENIED


async def test_lifetime_value_over_http_through_the_gateway(
    fitted: tuple[pb.LifetimeValueFit, float, str], gateway_service: RunningService
) -> None:
    fit, _, _ = fitted
    gateway = Gateway(
        gateway_service, f"http://127.0.0.1:{gateway_service.context.settings.gateway_http_port}"
    )
    async with await gateway.session("group", "insights:group") as http:
        found = await http.get("/v1/insights/lifetimeValue", params={"pageSize": "3"})
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["fit"]["name"] == fit.name and len(body["members"]) == 3
        assert body["fit"]["holdout"]["members"] == str(fit.holdout.members)
        one = await http.get(f"/v1/insights/{fit.name}")
        assert (
            one.status_code == 200
            and one.json()["fit"]["state"] == "LIFETIME_VALUE_FIT_STATE_SUCCEEDED"
        )
    async with await gateway.session("group", "admin") as http:
        bad = await http.post(
            "/v1/insights/lifetimeValue:fit", json={"requestId": "http-1", "holdoutDays": -1}
        )
        assert bad.status_code == 400, bad.text


async def test_one_fit_at_a_time_across_replicas_oldest_first(
    suite: Suite, fitted: tuple[pb.LifetimeValueFit, float, str], insights_service: RunningService
) -> None:
    """Another replica holding the fit lock (this test's connection, as one would) keeps a fit
    waiting; once it lets go, the fits waiting run one after the other, oldest first."""
    long_ago = timestamp(datetime(2001, 1, 1, tzinfo=UTC))  # nothing bought then: fails at once
    engine = insights_service.context.engine
    assert engine is not None
    async with held(engine, FIT_LOCK) as taken:
        assert taken
        first = await admin(suite.insights_channel).FitLifetimeValue(
            pb.FitLifetimeValueRequest(request_id=uuid.uuid4().hex, as_of=long_ago)
        )
        await asyncio.sleep(3)
        waiting = await suite.insights().GetLifetimeValueFit(
            pb.GetLifetimeValueFitRequest(name=first.fit.name)
        )
        assert waiting.fit.state == pb.LIFETIME_VALUE_FIT_STATE_PENDING
    second = await admin(suite.insights_channel).FitLifetimeValue(
        pb.FitLifetimeValueRequest(request_id=uuid.uuid4().hex, as_of=long_ago)
    )
    ended = [(await fit_to_the_end(suite.insights_channel, f.fit.name))[0] for f in (first, second)]
    assert [f.state for f in ended] == [pb.LIFETIME_VALUE_FIT_STATE_FAILED] * 2
    assert ended[0].end_time.ToDatetime() <= ended[1].start_time.ToDatetime()
