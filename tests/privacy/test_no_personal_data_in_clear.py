"""After a realistic run, no phone, e-mail, name or resident id number is in clear in the logs,
the traces, the events or the metrics.

The five services run with tracing into memory; members are registered through the gateway with
a phone, an e-mail, a name and a resident id number, buy, pay at a checkout, are found by phone
and e-mail, change their name, are exported and erased; the hotel imports its legacy members
from a file (one new, one joined, one refused); some requests are refused on the way (a
malformed e-mail, a duplicate). Then what the run wrote to stderr, every span it traced and
every message of every stream of its namespace go through the scanner that `loyalty-dev
scan-pii` runs (`loyalty_devstack.pii`): the patterns, and each personal value as written. Every
service's /metrics is scraped too: no label value is personal data or a member's id.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from loyalty.identity.v1 import member_import_pb2 as import_pb
from loyalty_devstack import cli
from loyalty_devstack.pii import Finding, PersonalDataScanner, demo_values, is_resident_id, mask
from loyalty_kit import events, telemetry
from loyalty_kit.caller import Caller
from loyalty_kit.settings import Settings
from nats.js.errors import NotFoundError

from tests.gateway.test_composite import eventually
from tests.identity.import_files import imported, report
from tests.support.metrics import scrape
from tests.support.suite import Run, traced_suite

pytestmark = pytest.mark.asyncio(loop_scope="session")

SERVICES = ("identity", "points", "tiers", "benefits", "gateway")


@dataclass
class Person:
    """Someone's personal data, as made up for this run (never seen before it)."""

    phone: str
    email: str
    name: str
    id_number: str
    new_name: str
    member: str = ""

    def values(self) -> list[str]:
        return [self.phone, self.email, self.name, self.id_number, self.new_name]


def resident_id() -> str:
    """A resident id number with a valid check digit, of someone born in Beijing on a day
    between 1950 and 2005: some 20 million numbers, so that two people of a run never share one
    (a shared one registers the second person as the first, whose e-mail it does not have)."""
    draw = uuid.uuid4().int
    born = datetime.date(1950, 1, 1) + datetime.timedelta(days=draw % 20000)
    body = f"110105{born:%Y%m%d}{draw // 20000 % 10**3:03d}"
    return next(body + check for check in "0123456789X" if is_resident_id(body + check))


def person(given: str) -> Person:
    tag = uuid.uuid4().hex[:6]
    return Person(
        phone=f"137{uuid.uuid4().int % 10**8:08d}",
        email=f"{given.lower()}.{tag}@example.cn",
        name=f"{given} 测{tag[:2]}",
        id_number=resident_id(),
        new_name=f"{given} 新{tag[2:4]}",
    )


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def run(make_settings: Callable[..., Settings], run_id: str) -> AsyncIterator[Run]:
    """The five services on databases and an event namespace of their own, tracing into
    memory, with the Huayue demo loaded."""
    async with traced_suite(make_settings, run_id, "pii") as started:
        yield started


async def everyday_life(run: Run, people: list[Person]) -> None:
    """What members and units do, through the gateway, and some of what they get wrong."""
    gateway = run.gateway
    async with await gateway.session("group", "admin") as admin:
        typed = await admin.post(
            "/v1/identityTypes",
            json={
                "code": "cn_resident_id",
                "kind": "IDENTITY_KIND_TOKEN",
                "pattern": "[0-9]{17}[0-9X]",
                "description": "resident identity card number",
            },
        )
        assert typed.status_code == 200, typed.text
        # The group's welcome journey: each registration tags the member and sends a message
        # (the engagement service's logs are scanned too).
        journey = await admin.post(
            "/v1/journeys",
            params={"requestId": uuid.uuid4().hex},
            json={
                "displayName": "welcome to the group",
                "unit": "group",
                "trigger": {"kind": "TRIGGER_KIND_MEMBER_REGISTERED"},
                "steps": [
                    {"changeTags": {"addTags": ["journey:welcomed"]}},
                    {
                        "sendMessage": {
                            "purpose": "CONSENT_PURPOSE_MARKETING_SMS",
                            "body": "Welcome to Huayue",
                        }
                    },
                ],
            },
        )
        assert journey.status_code == 201, journey.text
        started = await admin.post(
            f"/v1/{journey.json()['journey']['name']}:resume",
            json={"requestId": uuid.uuid4().hex},
        )
        assert started.status_code == 200, started.text
    till = await gateway.session("mall", "earn", "redeem", "members:manage", "profile:write")
    privacy = await gateway.session("mall", "personal_data:read", "members:manage")
    async with till, privacy:
        for someone in people[:2]:
            registered = await till.post(
                "/v1/members:register",
                json={
                    "requestId": uuid.uuid4().hex,
                    "unit": "mall",
                    "channel": "CHANNEL_POS",
                    "identities": [
                        {"type": "phone", "value": someone.phone},
                        {"type": "email", "value": someone.email},
                        {"type": "cn_resident_id", "value": someone.id_number},
                    ],
                    "profile": {
                        "fullName": someone.name,
                        "birthday": {"year": 1990, "month": 1, "day": 1},
                    },
                },
            )
            assert registered.status_code == 200, registered.text
            assert registered.json()["created"], registered.text  # no one else's identity
            someone.member = registered.json()["member"]["name"]
            await purchase_and_pay(till, someone)
            for kind, value in (("phone", someone.phone), ("email", someone.email)):
                found = await privacy.get(
                    "/v1/members:resolve",
                    params={"identity.type": kind, "identity.value": value},
                )
                assert found.status_code == 200, found.text
            changed = await till.patch(
                f"/v1/{someone.member}/profile",
                params={"requestId": uuid.uuid4().hex, "updateMask": "fullName"},
                json={"fullName": someone.new_name},
            )
            assert changed.status_code == 200, changed.text
            await mistakes(till, someone)
        await legacy_import(run, people[1], people[2])
        exported = await privacy.get(f"/v1/{people[0].member}:export")
        assert exported.status_code == 200, exported.text
        assert people[0].email in exported.text  # the export is the one place it belongs
        erased = await privacy.post(
            f"/v1/{people[0].member}:erase",
            json={"requestId": uuid.uuid4().hex, "reason": "the member asked"},
        )
        assert erased.status_code == 200, erased.text
    # The group's loyalty team reads its figures (the insights service's logs are scanned too).
    async with await gateway.session("group", "insights:group") as team:
        figures = await team.get(
            "/v1/insights/pointsLiability",
            params={"startTime": "2020-01-01T00:00:00Z", "endTime": "2100-01-01T00:00:00Z"},
        )
        assert figures.status_code == 200, figures.text


async def legacy_import(run: Run, known: Person, newcomer: Person) -> None:
    """The hotel brings its legacy members in by file (over gRPC: the gateway's upload route is
    not there yet): a newcomer, someone the mall registered (joined by phone) and a row with a
    broken e-mail (refused, its detail masked); the report is read back."""
    header = ("no", "mobile", "mail", "name")
    rows = [
        ("H1", newcomer.phone, newcomer.email, newcomer.name),
        ("H2", known.phone, f"hotel.{known.email}", known.name),
        ("H3", "", f"{newcomer.phone}@@{newcomer.name}", newcomer.name),
    ]
    content = ("\r\n".join(",".join(row) for row in (header, *rows)) + "\r\n").encode()
    spec = import_pb.MemberImportSpec(
        unit="hotel",
        mapping=import_pb.ColumnMapping(
            legacy_number="no", phone="mobile", email="mail", name="name"
        ),
    )
    caller = Caller(unit="hotel", client_id="hotel-crm", scopes=frozenset({"members:import"}))
    async with grpc.aio.insecure_channel(run.services["identity"].target) as channel:
        made = await imported(channel, caller, spec, content)
        assert made.progress.created == 1 and made.progress.linked == 1, made
        rows_read = await report(channel, caller, made.name)
    assert [r.outcome for r in rows_read][2] == import_pb.IMPORT_ROW_OUTCOME_REJECTED
    newcomer.member = f"members/{rows_read[0].member_id}"


async def purchase_and_pay(till: httpx.AsyncClient, someone: Person) -> None:
    order = f"M-{uuid.uuid4().hex[:8]}"
    bought = await till.post(
        "/v1/purchases:record",
        json={
            "requestId": uuid.uuid4().hex,
            "identity": {"type": "email", "value": someone.email},
            "unit": "mall",
            "orderId": order,
            "lines": [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": "880.00"}}],
        },
    )
    assert bought.status_code == 200, bought.text
    confirmed = await till.post(
        f"/v1/{someone.member}/points:confirmOrder",
        json={"requestId": uuid.uuid4().hex, "unit": "mall", "orderId": order},
    )
    assert confirmed.status_code == 200, confirmed.text

    async def paid() -> bool:
        answer = await till.post(
            "/v1/checkouts:redeem",
            json={
                "requestId": f"pay-{order}",
                "identity": {"type": "phone", "value": someone.phone},
                "unit": "mall",
                "orderId": f"{order}-pay",
                "points": "100",
            },
        )
        return answer.status_code == 200

    await eventually(paid)


async def mistakes(till: httpx.AsyncClient, someone: Person) -> None:
    """Refusals carry the caller's own values back to the caller, and no further."""
    twice = await till.post(
        "/v1/members:register",
        json={
            "requestId": uuid.uuid4().hex,
            "unit": "mall",
            "identities": [{"type": "email", "value": someone.email}],
            "profile": {"fullName": someone.name},
        },
    )
    assert twice.status_code in (200, 409), twice.text
    wrong = await till.post(
        "/v1/members:register",
        json={
            "requestId": uuid.uuid4().hex,
            "unit": "mall",
            "identities": [{"type": "email", "value": f"{someone.phone}@@{someone.name}"}],
        },
    )
    assert wrong.status_code == 400, wrong.text
    unknown = await till.get(
        "/v1/members:resolve",
        params={"identity.type": "phone", "identity.value": f"139{someone.phone[3:]}"},
    )
    assert unknown.status_code == 404, unknown.text


async def event_messages(settings: Settings) -> AsyncIterator[tuple[str, bytes]]:
    """Every message of every stream of the run's namespace: (where, headers and data)."""
    client = await events.connect(settings.nats_url, "pii-scan")
    try:
        js = client.jetstream()
        prefix = events.stream_name(settings.event_namespace, "")
        for stream in await js.streams_info():
            name = stream.config.name or ""
            if not name.startswith(prefix) or not stream.state.messages:
                continue
            for seq in range(max(1, stream.state.first_seq), stream.state.last_seq + 1):
                try:
                    message = await js.get_msg(name, seq)
                except NotFoundError:
                    continue
                headers = json.dumps(message.headers or {}, ensure_ascii=False).encode()
                yield f"event {name}#{seq}", headers + b"\n" + (message.data or b"")
    finally:
        await client.close()


async def test_logs_traces_and_events_hold_no_personal_data_in_clear(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    people = [person("Wei"), person("Xiu"), person("Lan")]  # Lan comes in by the hotel's file
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)  # everything the services would say, not only INFO
    try:
        await everyday_life(run, people)
    finally:
        root.setLevel(level)
    logs = capsys.readouterr().err
    assert '"event": "rpc"' in logs, "the services' logs were not captured"

    scanner = PersonalDataScanner([*demo_values(), *(v for p in people for v in p.values())])
    findings = scanner.scan(logs, "stderr")
    spans = telemetry.recorded_spans()
    assert spans, "tracing into memory recorded nothing"
    for span in spans:
        findings += scanner.scan(span.to_json(indent=None), f"span {span.name}")
    published = 0
    async for where, data in event_messages(run.settings):
        published += 1
        findings += scanner.scan_bytes(data, where)
    assert published > 10, "the run published no events to scan"
    findings += await metrics_findings(run, people, scanner)
    assert not findings, "\n".join(map(str, findings))


# A member's id, or a member's resource name (a route's template, `members/*`, names none).
MEMBER_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|members/[^*]")


async def metrics_findings(
    run: Run, people: list[Person], scanner: PersonalDataScanner
) -> list[Finding]:
    """What each service's /metrics says after the run: personal data found by the scanner in
    the whole text, and any label value that is or looks like a member's id."""
    found: list[Finding] = []
    members = {p.member.split("/")[-1] for p in people}
    for name, service in run.services.items():
        scraped = await scrape(service)
        assert scraped.value("grpc_server_handled_total") > 0 or name == "gateway", name
        found += scanner.scan(scraped.text, f"metrics of {name}")
        for value in scraped.label_values():
            if MEMBER_ID.search(value) or any(member in value for member in members):
                found.append(Finding(f"metrics of {name}", 0, "member id", mask(value)))
    gateway = await scrape(run.services["gateway"])
    assert gateway.value("loyalty_http_requests_total", route="/v1/members:register") > 0
    points = await scrape(run.services["points"])
    assert points.value("loyalty_points_total", movement="earned", unit="mall") > 0
    return found


async def test_the_scanner_finds_what_it_is_there_for() -> None:
    """The same scan on text that does leak: each kind is found, and masked in the finding."""
    someone = person("Lan")
    scanner = PersonalDataScanner(someone.values())
    text = "\n".join(
        [
            f'{{"event": "lookup", "phone": "{someone.phone}"}}',
            f"to {someone.email}: hello",
            f"id={someone.id_number}",
            f"name: {someone.name}",
            "member 3f2a9c1e-1380-0138-0001-138001380001 at 1767225600123",  # ids are not data
            "order 110105199001011234 has no valid check digit",
        ]
    )
    found = scanner.scan(text, "sample")
    assert [(f.line, f.kind) for f in found] == [
        (1, "phone"),
        (2, "email"),
        (3, "id_number"),
        (4, "known"),
    ]
    assert all(value not in str(f) for f in found for value in someone.values())


async def test_scan_pii_on_files_exits_1_with_masked_findings_and_0_when_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leaky, clean = tmp_path / "leaky.log", tmp_path / "clean.log"
    leaky.write_text('{"event": "rpc", "note": "李明 at 13900139000"}\n', encoding="utf-8")
    clean.write_text('{"event": "rpc", "member": "members/3f2a9c1e-1380"}\n', encoding="utf-8")
    assert cli.main(["scan-pii", str(leaky), str(clean), "--value", "Wei Lan"]) == 1
    out = capsys.readouterr().out
    assert f"{leaky}:1: phone 139******00" in out and f"{leaky}:1: known 李*" in out
    assert "13900139000" not in out and "李明" not in out
    assert cli.main(["scan-pii", str(clean)]) == 0
    assert cli.main(["scan-pii", str(tmp_path / "missing.log")]) == 2
