"""The product's server as `spky mcp serve` starts it: its store, the state it shares with
other replicas on Redis, and what to tell whoever started it."""

from __future__ import annotations

import os

import anyio
import anyio.abc

from ..engine.config import ServerConfig
from ..engine.server import McpServer
from ..product import scopes
from ..product.accounts import DEFAULT_TOKEN_DAYS, AccountError, User, default_email
from ..product.app import Product, build_product
from ..product.secretbox import KEY_FILE_ENV
from ..product.shared import SharedState, redis_url
from ..product.store import Store, StoreError, database_url, default_data_dir, open_store
from . import editors
from .common import CliError, Closer, Notes
from .replicas import shared_state


async def close_all(store: Store, shared: SharedState | None) -> None:
    with anyio.CancelScope(shield=True):
        if shared is not None:
            await shared.close()
        await store.close()


async def connect_replicas(
    config: ServerConfig, key_file: str | None, url: str | None, redis: str | None
) -> SharedState | None:
    """The state shared with other replicas, if a Redis is named.  Replicas on PostgreSQL may
    run on other machines, so they must be given one secret key file: it encrypts what they
    store and signs what they hand clients (on SQLite they share the data directory's)."""
    chosen = redis_url(redis)
    if chosen is None:
        return None
    if database_url(url) is not None and not (key_file or os.environ.get(KEY_FILE_ENV)):
        raise CliError(
            "Replicas that share state on Redis must share one secret key: pass "
            "--secret-key-file (or set SP00KY_MCP_SECRET_KEY_FILE) to a copy of the same key "
            "file on every replica."
        )
    return await shared_state(chosen, config.limits)


def store_flags(config: ServerConfig, url: str | None) -> str:
    """The flags that point another command at the store this server uses."""
    if database_url(url) is not None:
        return '--database-url "$SP00KY_MCP_DATABASE_URL"'
    return f"--data-dir {config.data_dir or default_data_dir()}"


async def connect_notes(product: Product, user: User, url: str, where: str) -> list[str]:
    """What someone who just started the server needs in order to connect.  On a store with
    no tokens at all, a read-only token is minted and shown this once.  `where`: the flags
    that point `spky mcp token` at the same store."""
    signing_in = sign_in_notes(product, user, url, where)
    if await product.accounts.list_tokens(user):
        return [
            f"Store: {product.store.describe} (user {user.email})",
            f"Mint a token:  spky mcp token {where} --url {url}",
            f"Check a token: spky mcp doctor --url {url} --token mcp_live_…",
            *signing_in,
        ]
    accounts = product.accounts
    record, secret = await accounts.mint(user, "first-run", scopes.DEFAULT, DEFAULT_TOKEN_DAYS)
    return [
        f"Store: {product.store.describe} (user {user.email})",
        f"First run: minted the read-only token '{record.name}' (shown only now; store it "
        "like a password):",
        f"  {secret}",
        "Connect Claude Code:",
        f"  {editors.claude_command_text(url, secret)}",
        f"Any MCP client: POST {url} with the header 'Authorization: Bearer {secret}'.",
        f"More tokens: spky mcp token {where} --url {url}",
        *signing_in,
    ]


def sign_in_notes(product: Product, user: User, url: str, where: str) -> list[str]:
    """How a client adds the server by URL alone, when the server signs users in."""
    if not product.server.config.oauth:
        return []
    return [
        f"Or add {url} alone to a client that signs in with OAuth (Claude Desktop, claude.ai, "
        "VS Code, Cursor, Claude Code); a user signs in with a password set by",
        f"  spky mcp user passwd {user.email} {where}".rstrip(),
    ]


async def product_server(
    config: ServerConfig,
    user: str | None,
    key_file: str | None,
    url: str | None,
    redis: str | None,
) -> tuple[McpServer, Notes, Closer]:
    """The product on its store (opened here, and closed by the closer returned), one of
    several replicas when a Redis is named."""
    try:
        store = await open_store(config.data_dir, key_file, url)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    shared: SharedState | None = None
    try:
        shared = await connect_replicas(config, key_file, url, redis)
        product = build_product(config, store, shared)
        user_record = await product.accounts.ensure_user(user or default_email())
    except (StoreError, AccountError) as exc:
        await close_all(store, shared)
        raise CliError(str(exc)) from None
    except BaseException:
        await close_all(store, shared)
        raise
    where = store_flags(config, url)

    # Behind a proxy, clients use the public URL, not the address bound here.
    async def notes(server: McpServer) -> list[str]:
        shown = config.url if config.public_url or server.port is None else server.url
        return await connect_notes(product, user_record, shown, where)

    return product.server, notes, lambda: close_all(store, shared)
