"""An event a consumer publishes is handed to the next consumer in process (bus._run_inline) without being
validated a second time; anything else a consumer receives is validated."""

import pytest

from ground import bus
from tests.unit.test_event_schema import SPEC_EXAMPLES

SIGNAL = next(example for example in SPEC_EXAMPLES if example["type"] == "signal")


@pytest.fixture
def validations(monkeypatch) -> list:
    seen: list = []
    real = bus.validate

    def counting(payload):
        seen.append(payload)
        return real(payload)

    monkeypatch.setattr(bus, "validate", counting)
    return seen


def test_a_handed_on_event_is_not_validated_again_and_a_received_one_is(validations):
    received = []

    @bus.consumer("signal")
    def decide(event):
        received.append(event)

    published = bus.validate(dict(SIGNAL))  # what bus.publish does before storing and handing it on
    bus._run_inline([decide], published)
    assert received == [published] and validations == [published]

    copy = dict(SIGNAL)  # the same content, but not the object published here: checked
    decide(copy)
    assert received[-1] == copy and validations == [published, copy]


@pytest.mark.django_db
def test_the_handed_on_event_is_only_that_one_while_it_is_handed_on(validations):
    @bus.consumer("signal")
    def decide(event):
        return event

    published = bus.validate(dict(SIGNAL))
    bus._run_inline([decide], published)
    assert decide(published) is published  # afterwards the same object is checked again
    assert validations == [published, published]
    assert decide({**SIGNAL, "side": "HOLD"}) is None  # and a bad one is refused (stored as a RejectedEvent)


def test_an_enqueued_payload_is_described_briefly_for_monitoring():
    assert bus._describe_payload(SIGNAL) == "(signal BTC_USDT @1730443260000)"
    order = {"type": "order", "client_order_id": "cdb123", "symbol": "BTC_USDT", "timestamp": 1}
    assert bus._describe_payload(order) == "(order cdb123 @1)"
    assert bus._describe_payload([SIGNAL, SIGNAL]) == "[2 signal events]"
    assert bus._describe_payload("junk") == "str"


@pytest.mark.django_db
def test_no_payload_is_taken_for_the_handed_on_event_when_there_is_none():
    @bus.consumer("signal")
    def decide(event):
        return event

    assert decide(None) is None  # refused and stored, not handed to the consumer as "already validated"
