"""Server configuration: one frozen value that every layer reads and none mutates."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 4 * 1024 * 1024
    max_header_bytes: int = 16 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 75.0
    max_connections: int = 1024
    # One peer address may hold this many connections (0: no bound).  Behind a proxy every
    # connection comes from the proxy's address: raise it, or set 0 and bound at the proxy.
    max_connections_per_peer: int = 256
    shutdown_grace: float = 10.0
    sse_replay_events: int = 256
    sse_keepalive: float = 15.0
    sse_retry_ms: int = 1000
    max_sessions: int = 10_000
    max_sessions_per_principal: int = 64
    session_idle_ttl: float = 3600.0
    max_calls_per_token: int = 32
    rate_per_minute: float = 1200.0
    rate_burst: int = 200
    # While a request is being answered, at most this many bytes of a pipelined next request
    # are read ahead; past that the socket is left unread so that TCP pushes back.
    pipeline_buffer_bytes: int = 64 * 1024
    # Lingering close (RFC 9112 section 9.6): after refusing a request, how long to read and
    # discard what the client still sends before closing outright.
    linger_timeout: float = 2.0
    # A client that reads nothing of a response (or an SSE stream) for this long while the
    # server has bytes waiting for it is cut off.
    send_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    endpoint: str = "/v1/mcp"
    public_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    profile: str = "product"
    log_level: str = "info"
    data_dir: str | None = None
    limits: Limits = field(default_factory=Limits)
    # SO_REUSEPORT: several processes listen on one port, the kernel spreading connections
    # over them (`spky mcp serve --workers N`).
    reuse_port: bool = False
    # Operability: Prometheus metrics at /metrics on the MCP port, or on a port of their own
    # on loopback; one access line per request and one audit line per tool call; their format.
    metrics: bool = False
    metrics_port: int | None = None
    access_log: bool = False
    log_format: str = "text"
    # OpenTelemetry spans for requests and tool calls (needs the [otel] extra).
    traces: bool = False
    # Sign-in with OAuth (the product profile): the authorization server built in, and
    # whether client metadata documents may be fetched from private addresses (development).
    oauth: bool = True
    oauth_private_clients: bool = False
    # Proxies (addresses or networks) whose X-Forwarded-For is believed, so that limits kept
    # per address count the client behind them rather than the proxy.
    trusted_proxies: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/") + self.endpoint
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.endpoint}"
