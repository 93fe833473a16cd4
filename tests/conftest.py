"""Real services for integration tests, started on free loopback ports for the session.

With ``CI=true`` a service that cannot start fails the run; elsewhere its tests are skipped
with the reason. The embedded implementations never stand in for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from bench.services import Broker, RedisCluster, RedisServer, ServiceUnavailable, free_port

IN_CI = os.environ.get("CI", "").lower() == "true"

__all__ = ["Broker", "RedisServer", "free_port"]


def unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"CI=true and a required service is unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    try:
        server = RedisServer().start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    yield server.url
    server.cleanup()


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    try:
        b = Broker().start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    yield b
    b.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real Redis Cluster: 3 masters, one replica each."""
    try:
        cluster = RedisCluster().start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    yield cluster
    cluster.cleanup()
