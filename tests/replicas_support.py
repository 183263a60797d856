"""Replicas behind a load balancer without stickiness, for the tests: a small HTTP/1.1 reverse
proxy that sends each request (not each connection) to the next replica in turn, streams
responses back as they come (SSE included), and passes over a replica that refuses
connections, as a load balancer's health check would; and `spky mcp serve` replicas on one
PostgreSQL and one Redis, each with a data directory of its own and the same key file."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import anyio.abc
import h11
import httpx

from sp00ky_mcp.product.secretbox import Key, create_keys
from tests.faults_support import Served, served

HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"te"}
CHUNK = 65536


class RoundRobin:
    def __init__(self, backends: Sequence[str]) -> None:
        self.backends = list(backends)
        self._turn = itertools.cycle(range(len(self.backends)))
        self.port = 0
        self.served: list[int] = []

    def url(self, path: str = "/v1/mcp") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, httpx.AsyncClient(timeout=None) as upstream:
            task_status.started()
            await listener.serve(lambda stream: self._connection(stream, upstream))

    async def _connection(self, stream: anyio.abc.ByteStream, upstream: httpx.AsyncClient) -> None:
        connection = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while await self._exchange(stream, connection, upstream):
                    connection.start_next_cycle()
            except (anyio.BrokenResourceError, anyio.EndOfStream, h11.ProtocolError, OSError):
                return

    async def _exchange(
        self, stream: anyio.abc.ByteStream, connection: h11.Connection, upstream: httpx.AsyncClient
    ) -> bool:
        """One request forwarded and its response relayed; False when the client is done."""
        head, body = await _read_request(stream, connection)
        if head is None:
            return False
        headers = [(k, v) for k, v in head.headers if k.lower() not in HOP_BY_HOP]
        async with self._forward(upstream, head, headers, body) as response:
            out = [(k.encode(), v.encode()) for k, v in response.headers.items()]
            out = [(k, v) for k, v in out if k.lower() not in HOP_BY_HOP]
            await _send(
                stream, connection, h11.Response(status_code=response.status_code, headers=out)
            )
            async for chunk in response.aiter_raw():
                await _send(stream, connection, h11.Data(data=chunk))
        await _send(stream, connection, h11.EndOfMessage())
        return connection.our_state is h11.DONE and connection.their_state is h11.DONE

    @asynccontextmanager
    async def _forward(
        self,
        upstream: httpx.AsyncClient,
        head: h11.Request,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> AsyncIterator[httpx.Response]:
        """The next replica that accepts the connection, in turn."""
        for _ in range(len(self.backends)):
            index = next(self._turn)
            url = self.backends[index] + head.target.decode()
            request = upstream.build_request(
                head.method.decode(), url, headers=headers, content=body
            )
            try:
                response = await upstream.send(request, stream=True)
            except httpx.ConnectError:
                continue
            self.served.append(index)
            try:
                yield response
            finally:
                await response.aclose()
            return
        raise OSError("no replica accepts connections")


async def _read_request(
    stream: anyio.abc.ByteStream, connection: h11.Connection
) -> tuple[h11.Request | None, bytes]:
    head: h11.Request | None = None
    body = b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            try:
                connection.receive_data(await stream.receive(CHUNK))
            except anyio.EndOfStream:
                connection.receive_data(b"")
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return head, body
        elif isinstance(event, h11.ConnectionClosed):
            return None, b""


async def _send(stream: anyio.abc.ByteStream, connection: h11.Connection, event: h11.Event) -> None:
    data = connection.send(event)
    if data:
        await stream.send(data)


@asynccontextmanager
async def round_robin(backends: Sequence[str]) -> AsyncIterator[RoundRobin]:
    proxy = RoundRobin(backends)
    async with anyio.create_task_group() as tasks:
        await tasks.start(proxy.serve)
        yield proxy
        tasks.cancel_scope.cancel()


def shared_key_file(directory: Path) -> Path:
    """The key file every replica is given (as a secret mounted on each machine)."""
    path = directory / "shared-secret.key"
    create_keys(path, [Key.new()])
    return path


@contextmanager
def replicas(
    directory: Path,
    count: int,
    database_url: str | None,
    redis_url: str,
    key_file: Path,
    extra: Sequence[str] = (),
    profile: str = "product",
) -> Iterator[list[Served]]:
    """`count` serve processes, each with a data directory of its own, sharing the database,
    Redis and the key file; stopped at the end."""
    with ExitStack() as stack:
        started = []
        for index in range(count):
            data_dir = directory / f"replica-{index}"
            data_dir.mkdir()
            options = (
                "--profile",
                profile,
                "--redis-url",
                redis_url,
                "--secret-key-file",
                str(key_file),
                "--log-level",
                "warning",
                *extra,
            )
            where = None if profile == "conformance" else data_dir
            started.append(stack.enter_context(served(where, database_url, options)))
        yield started
