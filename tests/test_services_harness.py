"""The test harness's own servers (bench/services.py): a server started on a port another process
took first must not be mistaken for the other process. CI saw a paused broker keep acknowledging:
its port had gone to a benchmark's broker, ours had exited, and the tests talked to the other."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from bench.services import Broker, RedisServer
from streaming.kafka_bus import KafkaBus


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port that a socket of this process listens on for the test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_broker_whose_port_is_taken_starts_on_another(taken_port: int) -> None:
    broker = Broker()
    broker.port = taken_port
    try:
        broker.start()
        assert broker.port != taken_port
        KafkaBus(broker.bootstrap, timeout_s=5.0).ensure_topics({"harness": 1})  # ours answers
    finally:
        broker.stop()


def test_a_redis_server_whose_port_is_taken_starts_on_another(taken_port: int) -> None:
    server = RedisServer()
    server.port = taken_port
    try:
        server.start()
        assert server.port != taken_port
        assert redis.Redis.from_url(server.url).ping()
        server.restart()  # a restart keeps the port it has
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.cleanup()
