"""Background work that fails (a recovery round, an issuance, a scheduled job): an outage of the
database or of a peer service is one warning, retried; anything else is logged with its
traceback, as the bug it is."""

from __future__ import annotations

import logging

import grpc
import nats.errors
import nats.js.errors
import pytest
from loyalty_kit.jobs import log_round_failed, outage
from loyalty_kit.logs import get_logger


def peer_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "down")


def test_a_peer_down_or_too_slow_is_an_outage_and_a_refusal_is_not() -> None:
    assert outage(peer_error(grpc.StatusCode.UNAVAILABLE))
    assert outage(peer_error(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert not outage(peer_error(grpc.StatusCode.FAILED_PRECONDITION))
    assert not outage(ValueError("a bug"))


@pytest.mark.parametrize(
    "error",
    [
        nats.js.errors.ServiceUnavailableError(),  # a stream or consumer without a leader
        nats.js.errors.NoStreamResponseError(),  # a publish no stream leader answered
        nats.errors.NoRespondersError(),
        nats.errors.ConnectionReconnectingError(),
        nats.errors.TimeoutError(),
    ],
)
def test_the_event_bus_unavailable_is_an_outage(error: Exception) -> None:
    assert outage(error)


def test_a_refusal_of_the_event_bus_is_not_an_outage() -> None:
    assert not outage(nats.js.errors.BadRequestError())
    assert not outage(nats.errors.MaxPayloadError())


@pytest.mark.parametrize(
    ("error", "level", "traceback"),
    [
        (peer_error(grpc.StatusCode.UNAVAILABLE), logging.WARNING, False),
        (ValueError("a bug"), logging.ERROR, True),
    ],
)
def test_a_failed_round_is_a_warning_in_an_outage_and_an_error_with_traceback_otherwise(
    error: Exception, level: int, traceback: bool, caplog: pytest.LogCaptureFixture
) -> None:
    log = get_logger("loyalty.test-rounds")
    with caplog.at_level(logging.INFO, logger="loyalty.test-rounds"):
        try:
            raise error
        except Exception as caught:
            log_round_failed(log, "checkout recovery", caught, checkout_id="c1")
    (record,) = [r for r in caplog.records if r.name == "loyalty.test-rounds"]
    assert record.levelno == level
    assert (record.exc_info is not None) is traceback
