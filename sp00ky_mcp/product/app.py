"""The product profile: the embedded store, token authentication, and the Sp00ky tools."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from ..engine.catalogue import Catalogue, Tool
from ..engine.config import ServerConfig
from ..engine.context import CallContext
from ..engine.errors import HttpError
from ..engine.forwarded import ClientAddress
from ..engine.ops import Check
from ..engine.ports import Ports
from ..engine.protocol import ToolResult, verdict
from ..engine.quotas import LocalQuotas, Quotas
from ..engine.server import McpServer
from . import scopes
from .accounts import Accounts, AuditEntry, arguments_digest
from .auth import TokenAuthenticator
from .cloud.base import Cloud
from .oauth.authority import Authority
from .oauth.clients import Clients
from .oauth.fetching import document_fetcher
from .oauth.metadata import Urls, challenge
from .oauth.signed import Signer
from .oauth.web import SIGNED_IN_SECONDS, OAuthWeb
from .shared import SharedState
from .signing import SIGN_IN, FileKeyRing
from .store import Store, StoreError, StoreInDoubt, StoreUnavailable
from .tools import product_tools

log = logging.getLogger("sp00ky_mcp.audit")
MAX_PENDING_RECORDS = 512
AUDIT_DELAY = 0.01
# While the store does not take them, records are kept (at most this many, the oldest dropped
# first) and tried again this often.
MAX_KEPT_RECORDS = 50_000
AUDIT_RETRY_SECONDS = 1.0


class AuditTrail:
    """Records every tools/call: who, where, which tool, a digest of the arguments, outcome.

    Records are committed together, `delay` seconds after the first of them (or at once when
    `MAX_PENDING_RECORDS` wait): every commit rewrites the log's last pages in
    the write-ahead log, which costs more than the call itself when done per call.  So a
    crash of the process loses at most the records of the last `delay` seconds (and a
    loss of power, those since the last transaction; see `Store.record`).  Records the store
    cannot take for now (it is down, or full) are kept, to a bound, and written once it
    takes them again."""

    def __init__(self, accounts: Accounts, delay: float = AUDIT_DELAY) -> None:
        self.accounts = accounts
        self.delay = delay
        self._pending: list[AuditEntry] = []
        self._flushing: set[asyncio.Future[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._held_back = False  # the store refused the last write: wait for the retry
        self._retry: asyncio.TimerHandle | None = None
        self._writing = asyncio.Lock()  # one write at a time, oldest records first
        self._dropped = 0  # records let go while held back, not yet reported

    def __call__(
        self,
        ctx: CallContext,
        tool: Tool,
        arguments: dict[str, Any],
        outcome: ToolResult | None,
        started: float,
    ) -> None:
        principal = ctx.principal
        if principal.token_id is None or principal.user_id is None:
            return
        outcome_word = verdict(outcome)
        # Positional: a NamedTuple built from keywords costs twice as much, on every call.
        self._pending.append(
            AuditEntry(
                time.time(),
                principal.token_id,
                principal.user_id,
                ctx.tenant_id,
                tool.name,
                arguments_digest(arguments),
                outcome_word,
                (time.perf_counter() - started) * 1000,
            )
        )
        if self._held_back:  # the retry writes it, with the records the store refused
            if len(self._pending) > MAX_KEPT_RECORDS:
                del self._pending[0]
                self._dropped += 1
            return
        if len(self._pending) == 1:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self.flush_soon)
        elif len(self._pending) >= MAX_PENDING_RECORDS:
            self.flush_soon()

    def flush_soon(self) -> None:
        """Writes the pending records in the background; no call waits for them."""
        task = asyncio.ensure_future(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self) -> None:
        """Writes the pending records, in batches of at most MAX_PENDING_RECORDS (records
        that arrive meanwhile too).  The calls they record have been answered, so a store
        that cannot take them is reported to the operator, not to a client."""
        async with self._writing:
            while self._pending:
                batch = self._pending[:MAX_PENDING_RECORDS]
                del self._pending[:MAX_PENDING_RECORDS]
                if not await self._written(batch):
                    return

    async def _written(self, batch: list[AuditEntry]) -> bool:
        """Whether to go on writing: False when the store refused `batch` for now (kept)."""
        try:
            await self.accounts.audit(batch)
        except StoreInDoubt as exc:  # written or not: trying again could record calls twice
            log.error("%d audit records may not have been written: %s", len(batch), _said(exc))
        except StoreUnavailable as exc:
            self._keep(batch, exc)
            return False
        except StoreError as exc:
            log.error("%d audit records were not written: %s", len(batch), _said(exc))
        except Exception:
            # In the background: nothing above it would hear of it, and it must not end the
            # server; the traceback is for the operator.
            log.exception("%d audit records were not written", len(batch))
        else:
            if self._held_back:
                self._held_back = False
                log.warning("audit records are written again")
        return True

    def _keep(self, batch: list[AuditEntry], exc: StoreError) -> None:
        """Records the store refused, kept ahead of newer ones and tried again later."""
        kept = batch + self._pending
        over = max(0, len(kept) - MAX_KEPT_RECORDS) + self._dropped
        if over:
            log.error(
                "%d audit records were not written: %s; more wait than are kept", over, _said(exc)
            )
            kept, self._dropped = kept[-MAX_KEPT_RECORDS:], 0
        self._pending = kept
        if not self._held_back:
            self._held_back = True
            log.warning("audit records wait for the store: %s", _said(exc))
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(
                AUDIT_RETRY_SECONDS, self._try_again
            )

    def _stop_retrying(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _try_again(self) -> None:
        self._retry = None
        self.flush_soon()

    async def drain(self) -> None:
        """Writes what is pending and waits for the writes under way (at shutdown); no timer
        is left to start another write once the store may be closed, and records the store
        still refuses are reported lost."""
        if self._timer is not None:
            self._timer.cancel()
        self._stop_retrying()
        await self.flush()
        while self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
        self._stop_retrying()
        lost, self._pending, self._held_back = self._pending, [], False
        if lost:
            log.error("%d audit records were not written: the store did not take them", len(lost))


@dataclass(frozen=True, slots=True)
class Product:
    """The product profile's parts, for the CLI and tests that need more than the server."""

    server: McpServer
    store: Store
    accounts: Accounts
    cloud: Cloud


def build_product(config: ServerConfig, store: Store, shared: SharedState | None = None) -> Product:
    """The product server over `store` (see `store.open_store`), sharing its sessions and
    quotas with other replicas through `shared` when given."""
    accounts = Accounts(store)
    cloud = Cloud(store, accounts)
    limits = config.limits
    quotas = shared.quotas if shared is not None else LocalQuotas()
    catalogue = Catalogue(product_tools(cloud))
    authenticate = TokenAuthenticator(
        accounts,
        limits.rate_per_minute,
        limits.rate_burst,
        quotas=quotas,
        tools={tool.name: tool.scope for tool in catalogue.tools.values()},
    )
    audit = AuditTrail(accounts)
    site = Site(config)
    if config.oauth:
        authenticate.urls = site.urls
    server = McpServer(
        config,
        catalogue,
        authenticate=authenticate,
        instructions=lambda ctx: scopes.instructions(
            ctx.principal.scopes, ctx.principal.narrowed, ctx.principal.tools
        ),
        scope_hint=scopes.missing_scope_message,
        observer=audit,
        on_stop=lambda: _settle(audit, authenticate),
        ports=_ports(store, quotas, shared),
        background=[shared.link.keep_alive] if shared is not None else [],
        ready=_checks(store, shared),
        pages=_sign_in(config, store, accounts, quotas, site) if config.oauth else None,
        scope_challenge=site.scope_challenge if config.oauth else None,
    )
    site.server = server
    if server.ops.registry is not None:
        ops = server.ops
        store.timings.observe = lambda seconds, ok: ops.backend("store", seconds, ok)
        if shared is not None:
            shared.link.observe = lambda seconds, ok: ops.backend("redis", seconds, ok)
    return Product(server, store, accounts, cloud)


class Site:
    """Where the server is reached (its public URL, or where it listens once it does), for
    OAuth metadata, challenges and the audience of the tokens sign-in issues."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.server: McpServer | None = None

    def urls(self) -> Urls:
        config = self.config
        issuer = config.public_url
        if not issuer:
            assert self.server is not None, "the server listens before anyone asks"
            issuer = self.server.url.removesuffix(config.endpoint)
        return Urls.of(issuer, config.endpoint)

    def scope_challenge(self, scope: str) -> HttpError:
        """403 insufficient_scope naming the one scope the call needs (MCP authorization,
        "Scope Challenge Handling"), so that the client can ask the user for it."""
        sentence = (
            f"this call needs the '{scope}' scope, which the token lacks; sign in again "
            "and allow it."
        )
        value = challenge(self.urls(), scope, "insufficient_scope", sentence)
        return HttpError(403, f"403 Forbidden: {sentence}", (("www-authenticate", value),))


def _sign_in(
    config: ServerConfig, store: Store, accounts: Accounts, quotas: Quotas, site: Site
) -> OAuthWeb:
    """The authorization server's pages and endpoints."""
    keys = FileKeyRing(lambda: store.secrets, SIGN_IN, window=SIGNED_IN_SECONDS)
    clients = Clients(store, document_fetcher(config.oauth_private_clients), quotas=quotas)
    authority = Authority(store, site.urls)
    addresses = ClientAddress(config.trusted_proxies)
    return OAuthWeb(
        accounts, clients, authority, Signer(keys), quotas, config.endpoint, addresses=addresses
    )


def _checks(store: Store, shared: SharedState | None) -> dict[str, Check]:
    """What the server is ready only while it answers: the store, and Redis when shared."""
    checks: dict[str, Check] = {"store": store.ready}
    if shared is not None:
        checks["redis"] = shared.link.ping
    return checks


def _ports(store: Store, quotas: Quotas, shared: SharedState | None) -> Ports:
    """Sessions, events and quotas shared with other replicas through Redis when given;
    signing keys from the secret key file every replica shares, in either case."""
    keys = FileKeyRing(lambda: store.secrets)
    if shared is None:
        return Ports(quotas=quotas, keys=keys)
    return Ports(shared.sessions, shared.events, shared.bus, quotas, keys)


def _said(exc: StoreError) -> str:
    return exc.message if isinstance(exc, StoreUnavailable) else str(exc)


async def _settle(audit: AuditTrail, authenticate: TokenAuthenticator) -> None:
    """At shutdown: the pending audit records and last uses are written before the store
    may close."""
    await audit.drain()
    await authenticate.settle()
