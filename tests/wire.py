"""A raw-socket HTTP/1.1 client for wire-level tests: requests go out as the exact bytes a test
writes, and responses are parsed here by hand (RFC 9112), independently of the server's h11, so
that status lines, header fields, framing and SSE events can be asserted byte for byte."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from sp00ky_mcp.engine.catalogue import Catalogue, Tool
from sp00ky_mcp.engine.config import Limits, ServerConfig
from sp00ky_mcp.engine.context import Principal
from sp00ky_mcp.engine.errors import HttpError
from sp00ky_mcp.engine.fixtures import conformance_catalogue
from sp00ky_mcp.engine.http import HttpRequest
from sp00ky_mcp.engine.server import McpServer, allow_anonymous
from sp00ky_mcp.engine.service import Authenticator, McpService
from sp00ky_mcp.engine.sessions import LocalSessions

ENDPOINT = "/v1/mcp"
BOTH = "application/json, text/event-stream"
LATEST = "2025-11-25"
MODERN = "2026-07-28"
PV = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO = "io.modelcontextprotocol/serverInfo"
CLIENT_INFO = {"name": "wire-tests", "version": "1.0"}
SERVER = {"name": "sp00ky-mcp", "version": "0.1.0"}
CONFORMANCE_CAPABILITIES = {
    "logging": {},
    "tools": {"listChanged": True},
    "prompts": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "completions": {},
}
# Every read in these tests is bounded; a server that stops answering fails, never hangs.
READ_BOUND = 5.0
_STREAM_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)

Headers = Iterable[tuple[str, str]] | Mapping[str, str]


class WireError(AssertionError):
    """The server sent bytes that are not a well-formed HTTP/1.1 response."""


class Truncated(WireError):
    """The server closed the connection in the middle of a response."""


@dataclass(frozen=True, slots=True)
class Head:
    status: int
    reason: str
    # Field names lower-cased, in the order received.
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        values = self.values(name)
        return ", ".join(values) if values else None

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def names(self) -> list[str]:
        return [key for key, _ in self.headers]


@dataclass(frozen=True, slots=True)
class Reply:
    head: Head
    body: bytes

    @property
    def status(self) -> int:
        return self.head.status

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Event:
    """One SSE event (HTML Living Standard, 9.2.6), with the bytes it arrived as."""

    raw: bytes
    id: str | None
    event: str | None
    data: str
    retry: int | None

    def json(self) -> Any:
        return json.loads(self.data)


def parse_event(raw: bytes) -> Event | None:
    """None for a block of comments only (keep-alives)."""
    fields: dict[str, list[str]] = {}
    for line in raw.decode("utf-8").split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))
    if not fields:
        return None
    retry = fields.get("retry", [None])[-1]
    return Event(
        raw=raw,
        id=fields.get("id", [None])[-1],
        event=fields.get("event", [None])[-1],
        data="\n".join(fields.get("data", [])),
        retry=int(retry) if retry is not None else None,
    )


def encode_request(
    method: str,
    target: str = ENDPOINT,
    headers: Headers = (),
    body: bytes | None = None,
    host: str = "127.0.0.1",
) -> bytes:
    """A request as bytes: Host first, then `headers`, then Content-Length when there is a
    body and the caller did not frame it."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    names = {name.lower() for name, _ in pairs}
    if "host" not in names:
        pairs.insert(0, ("Host", host))
    if body is not None and not names & {"content-length", "transfer-encoding"}:
        pairs.append(("Content-Length", str(len(body))))
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in pairs)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(*parts: bytes) -> bytes:
    """A chunked body (RFC 9112 section 7.1) with one chunk per part, then the last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"


class Wire:
    """One client connection.  Reads go through `buffer`, so a test can read a response head,
    then its body or its events, then the next pipelined response."""

    def __init__(self, stream: anyio.abc.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.buffer = bytearray()
        self.eof = False

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def request(
        self,
        method: str,
        target: str = ENDPOINT,
        headers: Headers = (),
        body: bytes | None = None,
    ) -> None:
        await self.send(encode_request(method, target, headers, body, self.host))

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def _fill(self) -> bool:
        """Read more bytes into the buffer; False once the server has closed."""
        if self.eof:
            return False
        try:
            data = await self.stream.receive(65536)
        except _STREAM_GONE:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    async def _until(self, delimiter: bytes) -> bytes:
        while (end := self.buffer.find(delimiter)) < 0:
            if not await self._fill():
                raise Truncated(f"connection closed before {delimiter!r}: {bytes(self.buffer)!r}")
        return self._take(end + len(delimiter))

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self._fill():
                raise Truncated(f"connection closed {size - len(self.buffer)} bytes short")
        return self._take(size)

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def head(self) -> Head:
        with anyio.fail_after(READ_BOUND):
            return parse_head(await self._until(b"\r\n\r\n"))

    async def reply(self, head_request: bool = False) -> Reply:
        """The next response, 1xx included; its body read by its framing (RFC 9112 section
        6.3); a HEAD response has none."""
        head = await self.head()
        if head_request or head.status < 200 or head.status in (204, 304):
            return Reply(head, b"")
        with anyio.fail_after(READ_BOUND):
            return Reply(head, await self._body(head))

    async def final(self) -> Reply:
        """The next final response, skipping interim ones."""
        while (reply := await self.reply()).status < 200:
            pass
        return reply

    async def _body(self, head: Head) -> bytes:
        if head.get("transfer-encoding") is not None:
            if head.get("transfer-encoding") != "chunked":
                raise WireError(f"unexpected transfer-encoding: {head.headers}")
            return b"".join([chunk async for chunk in self._chunks()])
        length = head.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise WireError(f"bad content-length: {length!r}")
            return await self._exactly(int(length))
        while await self._fill():
            pass
        return self._take(len(self.buffer))

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        while True:
            line = (await self._until(b"\r\n"))[:-2]
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise WireError(f"bad chunk size line: {line!r}") from None
            if size == 0:
                while await self._until(b"\r\n") != b"\r\n":
                    pass  # trailer fields
                return
            data = await self._exactly(size + 2)
            if data[-2:] != b"\r\n":
                raise WireError(f"chunk not followed by CRLF: {data[-2:]!r}")
            yield data[:-2]

    async def events(self, head: Head) -> AsyncGenerator[Event, None]:
        """The SSE events of a chunked text/event-stream body, as they arrive; ends with the
        body.  Each wait for the next event is bounded."""
        assert head.get("transfer-encoding") == "chunked", head.headers
        pending = b""
        async with aclosing(self._chunks()) as chunks:
            while True:
                with anyio.fail_after(READ_BOUND):
                    chunk = await anext(chunks, None)
                if chunk is None:
                    assert pending == b"", f"the stream ended inside an event: {pending!r}"
                    return
                pending += chunk
                while (end := pending.find(b"\n\n")) >= 0:
                    raw, pending = pending[: end + 2], pending[end + 2 :]
                    event = parse_event(raw)
                    if event is not None:
                        yield event

    async def until_closed(self) -> list[Reply]:
        """Every response until the server closes the connection.  A chunked body that the
        close cuts short is kept as far as it got: the server ends the stream of a client that
        went away.  Any other shortfall, and any malformed byte, raises `WireError`."""
        replies: list[Reply] = []
        while self.buffer or await self._fill():
            head = parse_head(await self._until(b"\r\n\r\n"))
            if head.status < 200 or head.get("transfer-encoding") != "chunked":
                replies.append(Reply(head, b"" if head.status < 200 else await self._body(head)))
                continue
            parts: list[bytes] = []
            try:
                async for chunk in self._chunks():
                    parts.append(chunk)
            except Truncated:
                replies.append(Reply(head, b"".join(parts)))
                break
            replies.append(Reply(head, b"".join(parts)))
        return replies

    async def closed(self) -> bool:
        """True when the server closes the connection with nothing more to say."""
        with anyio.fail_after(READ_BOUND):
            while await self._fill():
                pass
        return not self.buffer

    async def aclose(self) -> None:
        await self.stream.aclose()


def parse_head(raw: bytes) -> Head:
    lines = raw[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    status, _, reason = rest.partition(b" ")
    if version != b"HTTP/1.1" or len(status) != 3 or not status.isdigit():
        raise WireError(f"bad status line: {lines[0]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name:
            raise WireError(f"bad header line: {line!r}")
        headers.append((name.decode("ascii").lower(), value.strip().decode("latin-1")))
    return Head(int(status), reason.decode("latin-1"), tuple(headers))


@asynccontextmanager
async def connect(server: McpServer) -> AsyncIterator[Wire]:
    assert server.port is not None
    stream = await anyio.connect_tcp(server.config.host, server.port)
    wire = Wire(stream, f"{server.config.host}:{server.port}")
    try:
        yield wire
    finally:
        await wire.aclose()


@asynccontextmanager
async def running(
    limits: Limits | None = None,
    catalogue: Catalogue | None = None,
    authenticate: Authenticator = allow_anonymous,
) -> AsyncIterator[McpServer]:
    """A server on an ephemeral loopback port, shut down when the block ends."""
    config = ServerConfig(port=0, profile="conformance", limits=limits or Limits())
    server = McpServer(config, catalogue or conformance_catalogue(), authenticate=authenticate)
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        try:
            yield server
        finally:
            server.shutdown()


def bearer_auth(request: HttpRequest) -> Principal:
    """`Authorization: Bearer <x>` is the token x; anything else is refused."""
    scheme, _, token = (request.header("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HttpError(
            401, "Unauthorized: send a bearer token.", (("www-authenticate", "Bearer"),)
        )
    return Principal(token_id=token, user_id=f"user-{token}", scopes=None)


# --- MCP messages --------------------------------------------------------------------------


def rpc(method: str, request_id: Any = 1, **params: Any) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params:
        message["params"] = params
    return json.dumps(message).encode()


def notification(method: str, **params: Any) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params:
        message["params"] = params
    return json.dumps(message).encode()


def initialize_body(
    version: str = LATEST, capabilities: dict[str, Any] | None = None, request_id: Any = 0
) -> bytes:
    return rpc(
        "initialize",
        request_id,
        protocolVersion=version,
        capabilities=capabilities or {},
        clientInfo=CLIENT_INFO,
    )


def initialize_reply(version: str = LATEST, request_id: Any = 0) -> dict[str, Any]:
    """The conformance profile's whole initialize response."""
    result = {
        "protocolVersion": version,
        "capabilities": CONFORMANCE_CAPABILITIES,
        "serverInfo": SERVER,
    }
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def rpc_error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def post_headers(
    session_id: str | None = None, version: str | None = None, **extra: str
) -> dict[str, str]:
    headers = {"Accept": BOTH, "Content-Type": "application/json"}
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
    if version is not None:
        headers["MCP-Protocol-Version"] = version
    headers.update({name.replace("_", "-"): value for name, value in extra.items()})
    return headers


def modern_meta(
    capabilities: dict[str, Any] | None = None, version: str = MODERN
) -> dict[str, Any]:
    return {PV: version, CAPS: capabilities if capabilities is not None else {}}


def modern_headers(method: str, name: str | None = None, version: str = MODERN) -> dict[str, str]:
    headers = {
        "Accept": BOTH,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": version,
        "Mcp-Method": method,
    }
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


async def exchange(
    server: McpServer, method: str = "POST", headers: Headers = (), body: bytes | None = None
) -> Reply:
    """One request on a fresh connection; the whole final response."""
    async with connect(server) as wire:
        await wire.request(method, ENDPOINT, headers, body)
        return await wire.final()


async def open_session(
    server: McpServer,
    version: str = LATEST,
    capabilities: dict[str, Any] | None = None,
    token: str | None = None,
) -> str:
    """initialize, then notifications/initialized; the session id."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    reply = await exchange(
        server, "POST", {**post_headers(), **auth}, initialize_body(version, capabilities)
    )
    assert reply.status == 200, reply
    session_id = reply.head.get("mcp-session-id")
    assert session_id is not None
    done = await exchange(
        server,
        "POST",
        {**post_headers(session_id, version), **auth},
        notification("notifications/initialized"),
    )
    assert done.status == 202, done
    return session_id


class Gate:
    """A tool that blocks until released, recording whether it was cancelled instead: what a
    test needs to hold a request in flight and observe what happens to it."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = anyio.Event()

    async def handler(self, args: dict[str, Any], ctx: Any) -> str:
        self.entered.set()
        try:
            await self.release.wait()
        finally:
            if not self.release.is_set():
                self.cancelled.set()
        return "released"

    def catalogue(self) -> Catalogue:
        schema = {"type": "object", "properties": {}}
        return Catalogue([Tool("gate", "Blocks until the test releases it", schema, self.handler)])


async def bounded(event: anyio.Event) -> None:
    with anyio.fail_after(READ_BOUND):
        await event.wait()


def local_sessions(service: McpService) -> LocalSessions:
    """The sessions of a server that keeps them in its own memory (the default)."""
    sessions = service.sessions
    assert isinstance(sessions, LocalSessions)
    return sessions


def token_headers(token: str, session_id: str | None = None) -> dict[str, str]:
    """A POST's headers with a bearer token, and within a session when `session_id` is given."""
    headers = {
        "authorization": f"Bearer {token}",
        "accept": BOTH,
        "content-type": "application/json",
    }
    if session_id is not None:
        headers |= {"mcp-session-id": session_id, "mcp-protocol-version": LATEST}
    return headers
