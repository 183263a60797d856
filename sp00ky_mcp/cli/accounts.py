"""The commands that work on the accounts in the store: minting, listing and revoking
tokens, the audit trail, invitations, passwords, the secret key and the schema, and serving
over stdio.  Imported when one of them runs, so that a server of the engine alone (the
conformance profile, an embedding) never loads the store, its cipher or the tools."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import re
import shutil
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc

from ..engine.config import ServerConfig
from ..engine.context import Principal
from ..engine.errors import HttpError, ToolError
from ..engine.h1 import HttpRequest
from ..product import scopes, tokens
from ..product.accounts import AccountError, Accounts, AuditEntry, TokenRecord, User, default_email
from ..product.store import Store, StoreError, database_url, default_data_dir, open_store
from ..product.store.sqlite import DB_NAME
from . import editors
from .common import CliError, digits, emit_json, interactive, iso, say, server_url
from .install import install

MAX_EXPIRY_DAYS = 3650


def parse_expiry(text: str) -> float | None:
    """Days until expiry, or None for never."""
    if text.strip().lower() == "never":
        return None
    match = re.fullmatch(r"\s*([0-9]+)\s*([dhw])\s*", text.lower())
    if not match or int(match.group(1)) == 0:
        raise CliError(f"--expires-in '{text}' is not a duration; use e.g. 30d, 12h, 2w or never.")
    amount, unit = int(match.group(1)), match.group(2)
    days = amount * {"h": 1 / 24, "d": 1, "w": 7}[unit]
    if days > MAX_EXPIRY_DAYS:
        raise CliError(
            f"--expires-in '{text}' is more than {MAX_EXPIRY_DAYS} days; use never for a token "
            "that does not expire."
        )
    return days


R = TypeVar("R")


async def open_cli_store(args: argparse.Namespace) -> Store:
    try:
        return await open_store(args.data_dir, args.secret_key_file, args.database_url)
    except StoreError as exc:
        raise CliError(str(exc)) from None


def with_accounts(
    args: argparse.Namespace, work: Callable[[Accounts, User], Awaitable[R]]
) -> tuple[R, User]:
    """Runs `work` for the acting user (created on first use) on the command's store."""

    async def session() -> tuple[R, User]:
        store = await open_cli_store(args)
        try:
            accounts = Accounts(store)
            user = await accounts.ensure_user(args.user or default_email())
            return await work(accounts, user), user
        except (StoreError, AccountError) as exc:
            raise CliError(str(exc)) from None
        finally:
            await store.close()

    return anyio.run(session)


def with_existing_accounts(
    args: argparse.Namespace, work: Callable[[Accounts, User], Awaitable[R]]
) -> tuple[R, User]:
    """Listing and revoking read a store that exists; they never create one (a mistyped
    --data-dir would otherwise list nothing, and leave an empty store behind)."""
    require_store(args)
    return with_accounts(args, work)


def require_store(args: argparse.Namespace) -> None:
    if database_url_of(args) is not None:
        return
    directory = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
    if not (directory / DB_NAME).is_file():
        raise CliError(
            f"There is no token store in {directory}; pass the --data-dir that "
            "`spky mcp token` and `spky mcp serve` use."
        )


def database_url_of(args: argparse.Namespace) -> str | None:
    try:
        return database_url(getattr(args, "database_url", None))
    except StoreError as exc:
        raise CliError(str(exc)) from None


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Re-encrypts every stored secret under a new key (see `Store.rotate_secret_key`)."""
    require_store(args)

    async def rotate() -> tuple[int, str]:
        store = await open_cli_store(args)
        try:
            count = await store.rotate_secret_key()
            return count, str(store.secrets.path)
        except StoreError as exc:
            raise CliError(str(exc)) from None
        finally:
            await store.close()

    count, path = anyio.run(rotate)
    say(
        f"Rotated the secret key in {path}: {count} stored secret values are "
        "now encrypted under the new key, and the old key is gone. Back up the key file now."
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Opening a store applies its migrations; this says which it applied."""

    async def migrate() -> tuple[list[int], int, str]:
        store = await open_cli_store(args)
        try:
            return store.applied_at_open, await store.schema_version(), store.describe
        finally:
            await store.close()

    applied, version, where = anyio.run(migrate)
    if applied:
        steps = ", ".join(map(str, applied))
        say(f"Migrated {where} to schema version {version} (applied {steps}).")
    else:
        say(f"{where} is already at schema version {version}; nothing to do.")
    return 0


def token_row(record: TokenRecord, now: float) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "token": tokens.masked(record.hint),
        "scopes": list(record.scopes),
        "created_at": iso(record.created_at),
        "expires_at": iso(record.expires_at),
        "last_used_at": iso(record.last_used_at),
        "status": record.status(now),
        # Minted here, or issued to a client by OAuth sign-in (named after the client).
        "issued_by": "sign-in" if record.grant_id is not None else "cli",
    }


# --- token -----------------------------------------------------------------------------------


def can_ask(args: argparse.Namespace) -> bool:
    """Whether a question may be put: a terminal, no --yes, and no --json (whose standard
    output is for the JSON only)."""
    return interactive() and not args.yes and not args.json


def pick_scopes(args: argparse.Namespace) -> tuple[str, ...]:
    if args.scopes is not None:
        return given_scopes(args.scopes, args.read_only)
    if args.read_only or not can_ask(args):
        return scopes.DEFAULT
    return prompt_scopes()


def given_scopes(text: str, read_only: bool) -> tuple[str, ...]:
    if not any(part.strip() for part in text.split(",")):
        raise CliError("--scopes is empty; name at least one scope, e.g. --scopes mcp:read.")
    chosen = scopes.parse(text)
    writes = [s for s in chosen if s == scopes.MCP_FULL or s in scopes.WRITE_SCOPES]
    if read_only and writes:
        raise CliError(
            f"--read-only contradicts the write scope{'s' if len(writes) > 1 else ''} "
            f"{', '.join(writes)} in --scopes; drop one or the other."
        )
    return chosen


def prompt_scopes() -> tuple[str, ...]:
    say("Pick scopes (numbers or names, comma-separated; Enter for read-only):")
    for number, scope in enumerate(scopes.VALID, 1):
        say(f"  {number:2}. {scope:<20} {scope_help(scope)}")
    answer = input("Scopes [mcp:read]: ").strip()
    chosen = [
        scopes.VALID[int(p) - 1] if digits(p) and 0 < int(p) <= len(scopes.VALID) else p.strip()
        for p in answer.split(",")
        if p.strip()
    ]
    return scopes.parse(chosen) if chosen else scopes.DEFAULT


def scope_help(scope: str) -> str:
    if scope == scopes.MCP_READ:
        return "every *:read scope"
    if scope == scopes.MCP_FULL:
        return "every read and write scope (not secrets:reveal)"
    return scopes.GRANTS[scope]


def cmd_token(args: argparse.Namespace) -> int:
    # Everything that can be refused is checked before the token exists, so that a refusal
    # never leaves a minted token behind.
    days = parse_expiry(args.expires_in)
    url = server_url(args.url)
    given_name = token_name(args.name)
    refuse_unaskable_client(args)
    try:
        chosen = pick_scopes(args)
    except scopes.UnknownScope as exc:
        raise CliError(str(exc)) from None

    async def mint(accounts: Accounts, user: User) -> tuple[TokenRecord, str]:
        name = given_name or await dated_name(accounts, user)
        await refuse_duplicate(accounts, user, name)
        return await accounts.mint(user, name, chosen, days)

    (record, secret), user = with_accounts(args, mint)
    if args.json:
        emit_json(
            {
                "id": record.id,
                "token": secret,
                "name": record.name,
                "scopes": list(record.scopes),
                "created_at": iso(record.created_at),
                "expires_at": iso(record.expires_at),
                "user": user.email,
                "url": url,
            }
        )
    else:
        show_new_token(record, secret, user)
    return install_after_mint(args, url, secret, record)


def token_name(given: str | None) -> str | None:
    if given is None:
        return None
    if not given.strip():
        raise CliError("--name is blank; give the token a label, or leave --name out.")
    if not given.isprintable():
        raise CliError("--name holds a line break or a control character; use plain text.")
    return given.strip()


async def dated_name(accounts: Accounts, user: User) -> str:
    """`token-<UTC time>`, with a suffix when a live token already has that name."""
    taken = await live_names(accounts, user)
    stem = f"token-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    name = stem
    while name in taken:
        suffix += 1
        name = f"{stem}-{suffix}"
    return name


async def live_names(accounts: Accounts, user: User) -> dict[str, str]:
    """Name to id of the tokens not revoked: the ones `spky mcp revoke NAME` would match."""
    return {t.name: t.id for t in await accounts.list_tokens(user) if t.revoked_at is None}


async def refuse_duplicate(accounts: Accounts, user: User, name: str) -> None:
    existing = (await live_names(accounts, user)).get(name)
    if existing is not None:
        raise CliError(
            f"{user.email} already has a token named '{name}' ({existing}); pick another "
            f"--name, or revoke that one first (spky mcp revoke {existing})."
        )


def refuse_unaskable_client(args: argparse.Namespace) -> None:
    """--install with no --client is answered by asking; where nothing can be asked, no
    editor is picked on the user's behalf."""
    if args.install and args.client is None and not can_ask(args):
        raise CliError(
            "--install needs --client claude|cursor|vscode when nothing can be asked "
            "(no terminal, --yes or --json); nothing was minted."
        )


def install_after_mint(args: argparse.Namespace, url: str, secret: str, record: TokenRecord) -> int:
    """The token exists from here on: a failure or a cancel says so instead of claiming that
    nothing changed."""
    kept = (
        f"the token '{record.name}' ({record.id}) was minted all the same; register it with "
        "`spky mcp install`, or revoke it with `spky mcp revoke`."
    )
    try:
        return offer_install(args, url, secret)
    except (KeyboardInterrupt, EOFError):
        raise CliError(f"Stopped before registering an editor; {kept}") from None
    except CliError as exc:
        raise CliError(f"{exc} Not registered: {kept}") from None


def show_new_token(record: TokenRecord, secret: str, user: User) -> None:
    say(
        f"Token '{record.name}' for {user.email} ({', '.join(record.scopes)}), "
        f"expires {iso(record.expires_at) or 'never'}:"
    )
    say("")
    say(f"  {secret}")
    say("")
    say(
        "This is the only time the full token is shown. Store it like a password; if you lose "
        "it, revoke it (spky mcp revoke) and mint a new one."
    )


def offer_install(args: argparse.Namespace, url: str, secret: str) -> int:
    # --client names the editor to register with, so it asks for the registration too.
    wants = args.install or args.client is not None
    if not wants and can_ask(args):
        answer = input("Register the server with your editor now? [Y/n] ").strip().lower()
        wants = answer in ("", "y", "yes")
    if not wants:
        if not args.json:
            say("To add it to Claude Code later:")
            say(f"  {editors.claude_command_text(url, secret)}")
        return 0
    # Without --client a question can be put here (refuse_unaskable_client saw to that); the
    # claude CLI on the PATH answers it, as the product page promises.
    client = args.client or ("claude" if shutil.which("claude") else ask_client())
    return install(client, url, secret, project=False, quiet=args.json)


def ask_client() -> str:
    while True:
        answer = input("Which editor? [claude/cursor/vscode] ").strip().lower()
        if answer in editors.CLIENTS:
            return answer
        say(f"'{answer}' is not one of claude, cursor or vscode.")


# --- tokens and revoke -----------------------------------------------------------------------


def cmd_tokens(args: argparse.Namespace) -> int:

    async def listed(accounts: Accounts, user: User) -> list[dict[str, Any]]:
        now = accounts.clock()
        return [token_row(r, now) for r in await accounts.list_tokens(user)]

    rows, user = with_existing_accounts(args, listed)
    header = (
        f"{'ID':<21} {'NAME':<20} {'TOKEN':<19} {'STATUS':<8} {'EXPIRES':<21} "
        f"{'LAST USED':<21} SCOPES"
    )
    empty = f"No MCP tokens for {user.email}; mint one with `spky mcp token`."
    return show_rows(args, rows, empty, header, token_line)


def token_line(row: dict[str, Any]) -> str:
    return (
        f"{row['id']:<21} {row['name'][:20]:<20} {row['token']:<19} {row['status']:<8} "
        f"{row['expires_at'] or 'never':<21} {row['last_used_at'] or '-':<21} "
        f"{','.join(row['scopes'])}"
    )


def show_rows(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    empty: str,
    header: str,
    line: Callable[[dict[str, Any]], str],
) -> int:
    """Rows as JSON with --json, else a table (or the sentence for none)."""
    if args.json:
        emit_json(rows)
    elif not rows:
        say(empty)
    else:
        say(header)
        for row in rows:
            say(line(row))
    return 0


def parse_since(text: str, now: float) -> float:
    """A moment from `--since`: an age back from now (30m, 2h, 7d, 2w) or an ISO date/time."""
    match = re.fullmatch(r"\s*([0-9]+)\s*([mhdw])\s*", text.lower())
    if match:
        seconds = {"m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        return now - int(match.group(1)) * seconds
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--since '{text}' is neither an age nor a date; use e.g. 2h, 7d, 2026-12-01 or "
            "2026-12-01T09:30Z."
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def audit_row(entry: AuditEntry, names: dict[str, str]) -> dict[str, Any]:
    return {
        "at": iso(entry.at),
        "token_id": entry.token_id,
        "token_name": names.get(entry.token_id),
        "tenant_id": entry.tenant_id,
        "tool": entry.tool,
        "outcome": entry.outcome,
        "duration_ms": round(entry.duration_ms, 3),
        "arguments_digest": entry.arguments_digest,
    }


def cmd_audit(args: argparse.Namespace) -> int:

    async def read(accounts: Accounts, user: User) -> list[dict[str, Any]]:
        since = None if args.since is None else parse_since(args.since, accounts.clock())
        names = {t.id: t.name for t in await accounts.list_tokens(user)}
        entries = await accounts.audit_trail(user, args.token, since)
        return [audit_row(entry, names) for entry in entries]

    rows, user = with_existing_accounts(args, read)
    header = f"{'AT':<21} {'TOKEN':<20} {'TOOL':<24} {'OUTCOME':<9} {'MS':>9}  TENANT"
    return show_rows(args, rows, f"No audit records for {user.email} yet.", header, audit_line)


def audit_line(row: dict[str, Any]) -> str:
    return (
        f"{row['at']:<21} {(row['token_name'] or row['token_id'])[:20]:<20} "
        f"{row['tool'][:24]:<24} {row['outcome']:<9} {row['duration_ms']:>9.1f}  "
        f"{row['tenant_id'] or '-'}"
    )


def cmd_invitations(args: argparse.Namespace) -> int:
    """The invitations addressed to you, or your answer to one (`accept ID`, `decline ID`)."""
    if args.answer is not None and args.invitation is None:
        raise CliError(f"Say which invitation: spky mcp invitations {args.answer} ID.")

    async def work(accounts: Accounts, user: User) -> Any:
        from ..product.cloud import teams as team_ops
        from ..product.cloud.base import Cloud

        cloud = Cloud(accounts.store, accounts)
        try:
            if args.answer == "accept":
                return await team_ops.accept_invitation(cloud, user.id, args.invitation)
            if args.answer == "decline":
                return await team_ops.decline_invitation(cloud, user.id, args.invitation)
            return await team_ops.invitations_of(cloud, user.id)
        except ToolError as exc:
            raise CliError(f"{exc.message} `spky mcp invitations` lists yours.") from None

    result, user = with_existing_accounts(args, work)
    if args.json:
        emit_json(result)
    elif args.answer is not None:
        done = "Joined" if args.answer == "accept" else "Declined the invitation to"
        say(
            f"{done} team {result['tenant_id']}"
            + (f" as {result['role']}." if "role" in result else ".")
        )
    elif not result:
        say(f"No invitations for {user.email}.")
    else:
        for row in result:
            invited = row["invited_at"]
            say(f"{row['invitation_id']}  {row['team']} ({row['role']}), invited {invited}")
        say("Answer with `spky mcp invitations accept ID` or `spky mcp invitations decline ID`.")
    return 0


def cmd_stdio(args: argparse.Namespace) -> int:
    """The same catalogue, scopes, redaction and audit as over HTTP, for a local client that
    starts this command itself; standard output carries MCP messages only."""
    token = os.environ.get("SP00KY_MCP_TOKEN", "").strip()
    if not tokens.well_formed(token):
        raise CliError(
            "spky mcp stdio takes its token from SP00KY_MCP_TOKEN, which "
            + ("is not set" if not token else "does not hold an mcp_live_ token")
            + "; mint one with `spky mcp token` and set it in the client's config."
        )
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    try:
        anyio.run(serve_stdio, args, token)
    except BaseExceptionGroup as group:
        # The client closed standard output: the same quiet stop as any command's reader gone.
        if group.split(BrokenPipeError)[1] is None:
            raise BrokenPipeError from None
        raise
    return 0


async def serve_stdio(args: argparse.Namespace, token: str) -> None:
    from ..engine.stdio import StdioServer
    from ..product.app import build_product

    require_store(args)  # a token can only be in a store that exists: none is made here
    config = ServerConfig(data_dir=args.data_dir or os.environ.get("SP00KY_MCP_DATA_DIR"))
    store = await open_cli_store(args)
    try:
        product = build_product(config, store)
        request = HttpRequest("POST", config.endpoint, "", {"authorization": f"Bearer {token}"})
        authenticate = product.server.service.authenticate

        async def principal() -> Principal:
            found = authenticate(request)
            return found if isinstance(found, Principal) else await found

        try:
            await principal()
        except HttpError as exc:
            raise CliError(f"SP00KY_MCP_TOKEN was refused: {exc.message}") from None
        limit = config.limits.max_body_bytes
        calls = config.limits.max_calls_per_token
        server = StdioServer(product.server.engine, principal, write_stdout, limit, calls)
        try:
            await server.serve(stdin_lines(limit))
        finally:
            # The audit records of the calls made, however the client left.
            with anyio.CancelScope(shield=True):
                if product.server.on_stop is not None:
                    await product.server.on_stop()
    finally:
        await store.close()


async def stdin_lines(limit: int) -> AsyncIterator[bytes]:
    """Lines of standard input, one at a time; one longer than `limit` is cut there (and
    refused).  Read by a daemon thread: a read of a pipe cannot be interrupted, and once the
    serving stops (its client closed our output, say) it must not keep the process waiting
    for more input."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes] = asyncio.Queue()
    wanted = threading.Semaphore(0)  # a line is read only once the one before is taken
    reader = threading.Thread(
        target=_read_lines, args=(limit, loop, lines, wanted), name="sp00ky-stdin", daemon=True
    )
    reader.start()
    while True:
        wanted.release()
        line = await lines.get()
        if not line:
            return
        yield line


def _read_lines(
    limit: int,
    loop: asyncio.AbstractEventLoop,
    lines: asyncio.Queue[bytes],
    wanted: threading.Semaphore,
) -> None:
    try:
        for line in lines_of(sys.stdin.fileno(), limit):
            if not _hand_over(line, loop, lines, wanted):
                return
    except OSError:  # standard input failed (closed under us): as its end, not a hang
        pass
    _hand_over(b"", loop, lines, wanted)  # b"": the end


def _hand_over(
    line: bytes,
    loop: asyncio.AbstractEventLoop,
    lines: asyncio.Queue[bytes],
    wanted: threading.Semaphore,
) -> bool:
    """`line` to the reader once it wants one; False when the loop has closed."""
    wanted.acquire()
    try:
        loop.call_soon_threadsafe(lines.put_nowait, line)
    except RuntimeError:  # the loop has closed: nobody reads on
        return False
    return True


def lines_of(fd: int, limit: int) -> Iterator[bytes]:
    """The lines read from `fd`, each cut at `limit` + 1 bytes (the rest of a longer one
    dropped).  Read with os.read, not through sys.stdin's buffer: a daemon thread blocked
    holding that buffer's lock aborts the interpreter as it exits."""
    pending, skipping = bytearray(), False
    while chunk := os.read(fd, 65536):
        pending += chunk
        while (end := pending.find(b"\n")) >= 0:
            line = bytes(pending[: end + 1])
            del pending[: end + 1]
            if not skipping:
                yield line[: limit + 1]
            skipping = False
        if len(pending) > limit and not skipping:
            yield bytes(pending[: limit + 1])
            skipping = True
        if skipping:
            pending.clear()
    if pending and not skipping:
        yield bytes(pending)


async def write_stdout(data: bytes) -> None:
    def write() -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    await anyio.to_thread.run_sync(write)


def cmd_user(args: argparse.Namespace) -> int:
    password = new_password(args.password_stdin)
    args.user = args.email

    async def set_it(accounts: Accounts, user: User) -> None:
        await accounts.set_password(user, password)

    _, user = with_accounts(args, set_it)
    if args.json:
        emit_json({"user": user.email, "password": "set"})
    else:
        say(f"Password set for {user.email}; they can now sign in from an MCP client.")
    return 0


def new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not interactive():
        raise CliError("No terminal to ask for the password: pass --password-stdin.")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise CliError("The two passwords differ; nothing was changed.")
    return first


def cmd_revoke(args: argparse.Namespace) -> int:

    async def revoke(accounts: Accounts, user: User) -> TokenRecord:
        return await accounts.revoke(user, args.token)

    record, _ = with_existing_accounts(args, revoke)
    if args.json:
        emit_json({"id": record.id, "name": record.name, "status": "revoked"})
    else:
        say(f"Revoked token '{record.name}' ({record.id}); it is refused from the next request.")
    return 0
