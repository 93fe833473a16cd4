"""The Kafka producer through a broker stall, on a real broker of its own (frozen with SIGSTOP):
feedback is acknowledged again once the broker is back, and decision records sent while it was
down are resent until they land (``onlinematch rebuild`` replays them). Found by ``make soak``:
kafka-python's idempotent producer never sent again after a batch expired during a stall."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from bench.services import Broker, ServiceUnavailable
from streaming.bus import BusUnavailable, Message, read_to_end
from streaming.kafka_bus import KafkaBus
from tests.conftest import unavailable


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """Its own broker: freezing the session's would stall every other test."""
    try:
        broker = Broker().start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    yield broker
    broker.stop()


def test_the_producer_recovers_from_a_broker_stall_and_loses_no_decision(own_broker: Broker) -> None:
    topic, decisions = f"feedback-{uuid.uuid4().hex[:6]}", f"decisions-{uuid.uuid4().hex[:6]}"
    bus = KafkaBus(own_broker.bootstrap, timeout_s=1.0)
    bus.ensure_topics({topic: 2, decisions: 2})
    producer = bus.producer()
    try:
        producer.send_and_wait([Message(topic, b"a", b"before")], 5.0)
        own_broker.pause()
        try:
            for n in range(20):  # decision records while the broker is down
                producer.send_nowait(Message(decisions, f"r{n}".encode(), f"d{n}".encode()))
            with pytest.raises(BusUnavailable):
                producer.send_and_wait([Message(topic, b"a", b"during")], 2.0)
            time.sleep(3.0)  # longer than the delivery timeout: in-flight batches expire
        finally:
            own_broker.resume()
        deadline = time.monotonic() + 30
        while True:  # acknowledged again once the broker is back
            try:
                producer.send_and_wait([Message(topic, b"a", b"after")], 2.0)
                break
            except BusUnavailable:
                assert time.monotonic() < deadline, "the producer never recovered from the stall"
        while {r.value for r in read_to_end(bus, decisions)} != {f"d{n}".encode() for n in range(20)}:
            assert time.monotonic() < deadline + 30, "decision records sent during the stall were lost"
            time.sleep(0.5)
        assert getattr(producer, "dropped", 0) == 0 and getattr(producer, "resent", 0) > 0
    finally:
        producer.close()


def test_decisions_queued_together_go_out_merged_and_every_one_is_read_back(broker: Broker) -> None:
    from streaming.events import RequestContext, decode_decisions, merge_decisions

    decisions = f"decisions-{uuid.uuid4().hex[:6]}"
    bus = KafkaBus(broker.bootstrap, timeout_s=2.0)
    bus.ensure_topics({decisions: 2})
    producer = bus.producer()
    producer.batch(decisions, merge_decisions)
    sent = [RequestContext(f"r{n}", "home", "v1", [1], [1.0], {"a": (0.1, False)}, float(n)) for n in range(300)]
    try:
        for ctx in sent:
            producer.send_nowait(Message(decisions, ctx.request_id.encode(), ctx.encode()))
        deadline = time.monotonic() + 30
        while True:
            records = list(read_to_end(bus, decisions))
            got = [ctx for r in records for ctx in decode_decisions(r.value)]
            if len(got) >= len(sent) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sorted(got, key=lambda c: c.ts) == sent
        assert len(records) < len(sent) / 4, f"{len(records)} records for {len(sent)} decisions: not merged"
    finally:
        producer.close()
