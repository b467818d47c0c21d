"""`loyalty-admin jobs run` drives a job in steps (`loyalty_admin.jobs.drive`), here against
fake Run* RPCs: a count first, then calls of one step each until nothing is left, the bar at
the total; Ctrl-C stops between steps (a second abandons the step under way); a step that
leaves as much due as before stops the run rather than spinning."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.message import Message
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_admin.jobs import Interrupt, Outcome, drive, progress_bar, report
from rich.console import Console

AS_OF = datetime(2026, 11, 30, 2, tzinfo=UTC)


class Expiry:
    """RunExpiry over `due` members, each worth 10 points; `stuck` of them never expire (as if
    another runner held them)."""

    def __init__(self, due: int, stuck: int = 0) -> None:
        self.due, self.stuck = due, stuck
        self.requests: list[points_pb.RunExpiryRequest] = []
        self.during_step: Callable[[], None] = lambda: None

    async def __call__(self, request: Message) -> Message:
        assert isinstance(request, points_pb.RunExpiryRequest)
        self.requests.append(request)
        if request.validate_only:
            return points_pb.RunExpiryResponse(remaining=self.due)
        self.during_step()
        movable = self.due - self.stuck
        taken = min(request.max_members or movable, movable)
        self.due -= taken
        return points_pb.RunExpiryResponse(
            members_expired=taken, lots_expired=taken, points_expired=10 * taken, remaining=self.due
        )


class Birthdays:
    """RunBirthdayGifts over members celebrating today, walked by a page token (the position)."""

    def __init__(self, celebrating: int) -> None:
        self.celebrating = celebrating
        self.tokens: list[str] = []

    async def __call__(self, request: Message) -> Message:
        assert isinstance(request, benefits_pb.RunBirthdayGiftsRequest)
        start = int(request.page_token or 0)
        if request.validate_only:
            return benefits_pb.RunBirthdayGiftsResponse(remaining=self.celebrating - start)
        self.tokens.append(request.page_token)
        end = min(self.celebrating, start + request.max_members)
        left = self.celebrating - end
        return benefits_pb.RunBirthdayGiftsResponse(
            celebrating=end - start,
            granted=end - start,
            remaining=left,
            next_page_token=str(end) if left else "",
        )


async def test_a_job_is_counted_then_run_in_steps_until_none_is_left() -> None:
    expiry = Expiry(due=5)
    screen = io.StringIO()
    with progress_bar(Console(file=screen, width=80)) as progress:
        outcome = await drive(
            "expiry", expiry, as_of=AS_OF, step=2, chunk_size=1, progress=progress
        )

    assert outcome == Outcome(
        "expiry",
        AS_OF,
        due=5,
        counts={"members_expired": 5, "lots_expired": 5, "points_expired": 50},
        remaining=0,
        steps=3,
    )
    assert [(r.validate_only, r.max_members) for r in expiry.requests] == [
        (True, 0),
        (False, 2),
        (False, 2),
        (False, 2),
    ]
    # Every call is at the time the run started, with the transactions asked for.
    assert {(r.as_of.ToDatetime(tzinfo=UTC), r.chunk_size) for r in expiry.requests} == {(AS_OF, 1)}
    (task,) = progress.tasks
    assert (task.completed, task.total) == (5, 5)
    bar, counts = screen.getvalue().splitlines()
    assert bar.startswith("expiry ") and " 5/5 members " in bar and " eta " in bar
    assert counts == "  members_expired 5, lots_expired 5, points_expired 50"
    assert report(outcome).out == ["expiry: members_expired 5, lots_expired 5, points_expired 50"]
    assert report(outcome).code == 0


async def test_birthday_gifts_walk_by_page_token_until_none_is_given() -> None:
    birthdays = Birthdays(celebrating=7)

    outcome = await drive("birthday-gifts", birthdays, as_of=AS_OF, step=3)

    assert birthdays.tokens == ["", "3", "6"]
    assert (outcome.counts, outcome.remaining, outcome.steps) == (
        {"celebrating": 7, "granted": 7},
        0,
        3,
    )


async def test_nothing_due_makes_no_call_but_the_count_and_reports_zeros() -> None:
    expiry = Expiry(due=0)

    outcome = await drive("expiry", expiry, as_of=AS_OF, step=2)

    assert len(expiry.requests) == 1 and expiry.requests[0].validate_only
    assert report(outcome).out == ["expiry: members_expired 0, lots_expired 0, points_expired 0"]


async def test_ctrl_c_lets_the_step_under_way_finish_then_stops_saying_what_was_done() -> None:
    expiry = Expiry(due=5)
    interrupt = Interrupt()
    expiry.during_step = interrupt.press

    outcome = await drive("expiry", expiry, as_of=AS_OF, step=2, interrupt=interrupt)

    assert (outcome.steps, outcome.remaining, outcome.interrupted) == (1, 3, True)
    said = report(outcome)
    assert said.code == 130
    assert said.out == ["expiry: members_expired 2, lots_expired 2, points_expired 20"]
    (why,) = said.err
    assert why.startswith("expiry: stopped by Ctrl-C after 1 step(s)")
    assert "3 of 5 members with points to expire still due as of 2026-11-30T02:00:00+00:00" in why
    assert "Run it again to finish" in why


async def test_a_second_ctrl_c_abandons_the_step_under_way() -> None:
    interrupt = Interrupt()
    abandoned = asyncio.Event()

    async def hangs(request: Message) -> Message:
        assert isinstance(request, points_pb.RunExpiryRequest)
        if request.validate_only:
            return points_pb.RunExpiryResponse(remaining=5)
        interrupt.press()
        interrupt.press()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            abandoned.set()
            raise
        raise AssertionError("unreachable")

    outcome = await drive("expiry", hangs, as_of=AS_OF, step=2, interrupt=interrupt)

    assert abandoned.is_set()
    assert (outcome.steps, outcome.remaining, outcome.interrupted) == (0, 5, True)
    assert outcome.counts == {"members_expired": 0, "lots_expired": 0, "points_expired": 0}


async def test_a_step_that_leaves_as_much_due_stops_the_run() -> None:
    expiry = Expiry(due=5, stuck=3)

    outcome = await drive("expiry", expiry, as_of=AS_OF, step=2)

    assert (outcome.steps, outcome.remaining, outcome.stalled) == (2, 3, True)
    said = report(outcome)
    assert said.code == 1
    assert "3 of 5 members with points to expire still due" in said.err[0]


def test_a_dry_run_reports_what_is_due() -> None:
    outcome = Outcome("grant-expiry", AS_OF, due=1234, counts={}, remaining=1234)
    assert report(outcome, dry_run=True).out == [
        "grant-expiry: 1,234 grants whose time is up as of 2026-11-30T02:00:00+00:00; "
        "nothing changed"
    ]


async def test_ctrl_c_reaches_the_interrupt_while_a_job_runs_and_not_after() -> None:
    interrupt = Interrupt()
    with interrupt.on_sigint():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            if interrupt.requested:
                break
            await asyncio.sleep(0.01)
    assert interrupt.requested
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_bar_has_room_for_large_counts_in_80_columns() -> None:
    screen = io.StringIO()
    with progress_bar(Console(file=screen, width=80)) as progress:
        task = progress.add_task("birthday-gifts", total=1_234_567, unit="members", counts="")
        progress.update(task, completed=1_234_567, counts="celebrating 1,234,567")
    assert "1234567/1234567 members" in screen.getvalue()
