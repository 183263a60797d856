"""`spky mcp …`: a thin shell over the embedding API, the accounts and the editor configs.

Every command is scriptable: `--json` output, exit status 0 on success, 1 on a refused
operation (with a one-sentence message on stderr), 2 on bad usage, and no prompt unless
standard input is a terminal.
"""

from __future__ import annotations

import argparse
import gc
import getpass
import importlib.util
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import orjson

from . import editors, scopes, tokens
from .accounts import DEFAULT_TOKEN_DAYS, AccountError, Accounts, TokenRecord, User, default_email
from .config import Limits, ServerConfig
from .server import McpServer
from .store import Store, StoreError
from .transport import LOOPBACK_HOSTS

DEFAULT_PORT = 8765
DEFAULTS = Limits()
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}/v1/mcp"


class CliError(Exception):
    """A refused command: printed as one sentence, exit status 1."""


# --- arguments -------------------------------------------------------------------------------


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the embedded store's directory (default: $SP00KY_MCP_DATA_DIR "
        "or the platform's user data directory)",
    )
    parser.add_argument(
        "--user",
        default=None,
        metavar="EMAIL",
        help="the acting user on the embedded store (default: you@localhost)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any free)")
    parser.add_argument("--data-dir", default=None, help="where the embedded store lives")
    parser.add_argument("--public-url", default=None, help="the URL clients use, if proxied")
    parser.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="an Origin browsers may call from (repeatable)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a Host header value to accept (repeatable)",
    )
    parser.add_argument(
        "--profile",
        choices=("product", "conformance"),
        default="product",
        help="'conformance' serves the official suite's fixtures, without auth, on loopback only",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop; uvloop is faster, and comes with `pip install 'sp00ky-mcp[uvloop]'`",
    )
    parser.add_argument(
        "--rate-per-minute",
        type=float,
        default=DEFAULTS.rate_per_minute,
        metavar="N",
        help=f"requests a token may make per minute (default {DEFAULTS.rate_per_minute:g})",
    )
    parser.add_argument(
        "--rate-burst",
        type=int,
        default=DEFAULTS.rate_burst,
        metavar="N",
        help=f"requests a token may make at once (default {DEFAULTS.rate_burst})",
    )
    parser.add_argument(
        "--user",
        default=None,
        metavar="EMAIL",
        help="who a first-run token is minted for (default: you@localhost)",
    )


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--read-only", action="store_true", help="shortcut for mcp:read")
    parser.add_argument("--scopes", default=None, help="comma-separated scopes; skips the picker")
    parser.add_argument("--name", default=None, help="a label to tell tokens apart")
    parser.add_argument(
        "--expires-in",
        default=f"{DEFAULT_TOKEN_DAYS}d",
        help="e.g. 30d, 12h, or 'never' (default 90d)",
    )
    parser.add_argument(
        "--install", action="store_true", help="register the server with an editor right after"
    )
    parser.add_argument(
        "--client", choices=editors.CLIENTS, default=None, help="which editor to register with"
    )
    parser.add_argument(
        "--yes", action="store_true", help="non-interactive (read-only unless --scopes is given)"
    )
    parser.add_argument("--url", default=None, help=f"the server URL (default {DEFAULT_URL})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spky", description="Sp00ky Cloud command line.")
    top = parser.add_subparsers(dest="area", required=True)
    mcp = top.add_parser("mcp", help="the Sp00ky MCP server and its tokens")
    commands = mcp.add_subparsers(dest="command", required=True)
    add_serve_arguments(commands.add_parser("serve", help="run the MCP server"))
    add_token_arguments(commands.add_parser("token", help="mint an MCP token"))
    add_store_arguments(commands.add_parser("tokens", help="list MCP tokens"))
    revoke = commands.add_parser("revoke", help="revoke an MCP token")
    add_store_arguments(revoke)
    revoke.add_argument("token", metavar="ID|NAME")
    install = commands.add_parser("install", help="register the server with an editor")
    install.add_argument("--client", choices=editors.CLIENTS, required=True)
    install.add_argument("--token", default=None, help="default: $SP00KY_MCP_TOKEN or a prompt")
    install.add_argument("--url", default=None, help=f"the server URL (default {DEFAULT_URL})")
    install.add_argument(
        "--project", action="store_true", help="Cursor: write .cursor/mcp.json in this directory"
    )
    check = commands.add_parser("doctor", help="check the connection from this terminal")
    check.add_argument("--url", default=None, help=f"the server URL (default {DEFAULT_URL})")
    check.add_argument("--token", default=None, help="default: $SP00KY_MCP_TOKEN")
    return parser


# --- helpers ---------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def emit_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def interactive() -> bool:
    return sys.stdin.isatty()


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def server_url(given: str | None) -> str:
    return given or os.environ.get("SP00KY_MCP_URL") or DEFAULT_URL


def parse_expiry(text: str) -> float | None:
    """Days until expiry, or None for never."""
    if text.strip().lower() == "never":
        return None
    match = re.fullmatch(r"\s*(\d+)\s*([dhw])\s*", text.lower())
    if not match or int(match.group(1)) == 0:
        raise CliError(f"--expires-in '{text}' is not a duration; use e.g. 30d, 12h, 2w or never.")
    amount, unit = int(match.group(1)), match.group(2)
    return amount * {"h": 1 / 24, "d": 1, "w": 7}[unit]


def open_accounts(args: argparse.Namespace) -> tuple[Accounts, User]:
    try:
        accounts = Accounts(Store.open(args.data_dir))
        return accounts, accounts.ensure_user(args.user or default_email())
    except (StoreError, AccountError) as exc:
        raise CliError(str(exc)) from None


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
    }


# --- token -----------------------------------------------------------------------------------


def pick_scopes(args: argparse.Namespace) -> tuple[str, ...]:
    if args.scopes:
        return scopes.parse(args.scopes)
    if args.read_only or args.yes or not interactive():
        return scopes.DEFAULT
    return prompt_scopes()


def prompt_scopes() -> tuple[str, ...]:
    say("Pick scopes (numbers or names, comma-separated; Enter for read-only):")
    for number, scope in enumerate(scopes.VALID, 1):
        say(f"  {number:2}. {scope:<20} {scope_help(scope)}")
    answer = input("Scopes [mcp:read]: ").strip()
    chosen = [
        scopes.VALID[int(p) - 1]
        if p.strip().isdigit() and 0 < int(p) <= len(scopes.VALID)
        else p.strip()
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
    try:
        chosen = pick_scopes(args)
    except scopes.UnknownScope as exc:
        raise CliError(str(exc)) from None
    accounts, user = open_accounts(args)
    name = args.name or f"token-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    try:
        record, secret = accounts.mint(user, name, chosen, parse_expiry(args.expires_in))
    except AccountError as exc:
        raise CliError(str(exc)) from None
    url = server_url(args.url)
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
    return offer_install(args, url, secret)


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
    client = args.client
    wants = args.install
    if not wants and interactive() and not args.yes and not args.json:
        wants = input("Register the server with your editor now? [Y/n] ").strip().lower() in (
            "",
            "y",
            "yes",
        )
    if not wants:
        if not args.json:
            say("To add it to Claude Code later:")
            say(f"  {editors.claude_command_text(url, secret)}")
        return 0
    client = client or ("claude" if shutil.which("claude") else None)
    if client is None:
        client = ask_client() if interactive() and not args.yes else "cursor"
    return install(client, url, secret, project=False, quiet=args.json)


def ask_client() -> str:
    answer = input("Which editor? [claude/cursor/vscode] ").strip().lower()
    if answer not in editors.CLIENTS:
        raise CliError(f"'{answer}' is not one of claude, cursor or vscode.")
    return answer


# --- tokens and revoke -----------------------------------------------------------------------


def cmd_tokens(args: argparse.Namespace) -> int:
    accounts, user = open_accounts(args)
    now = accounts.clock()
    rows = [token_row(r, now) for r in accounts.list_tokens(user)]
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        say(f"No MCP tokens for {user.email}; mint one with `spky mcp token`.")
        return 0
    say(
        f"{'ID':<21} {'NAME':<20} {'TOKEN':<19} {'STATUS':<8} {'EXPIRES':<21} "
        f"{'LAST USED':<21} SCOPES"
    )
    for row in rows:
        say(
            f"{row['id']:<21} {row['name'][:20]:<20} {row['token']:<19} {row['status']:<8} "
            f"{row['expires_at'] or 'never':<21} {row['last_used_at'] or '-':<21} "
            f"{','.join(row['scopes'])}"
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    accounts, user = open_accounts(args)
    try:
        record = accounts.revoke(user, args.token)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        emit_json({"id": record.id, "name": record.name, "status": "revoked"})
    else:
        say(f"Revoked token '{record.name}' ({record.id}); it is refused from the next request.")
    return 0


# --- install and doctor ----------------------------------------------------------------------


def token_for(given: str | None) -> str:
    token = given or os.environ.get("SP00KY_MCP_TOKEN")
    if token:
        return token
    if interactive():
        return getpass.getpass("MCP token (mcp_live_…): ").strip()
    raise CliError("No token: pass --token or set SP00KY_MCP_TOKEN.")


def install(client: str, url: str, token: str, project: bool, quiet: bool = False) -> int:
    out: Callable[[str], None] = (lambda _: None) if quiet else say
    try:
        if client == "claude":
            return install_claude(url, token, out)
        if client == "cursor":
            path = editors.cursor_path(project, Path.home(), Path.cwd())
            editors.write_private_json(
                path, editors.merge_cursor(editors.read_json(path), url, token)
            )
        else:
            path = editors.vscode_path(Path.cwd())
            editors.write_private_json(path, editors.merge_vscode(editors.read_json(path), url))
            out("VS Code will ask for the token when it starts the server.")
    except editors.EditorError as exc:
        raise CliError(str(exc)) from None
    out(f"Registered '{editors.SERVER_NAME}' in {path}.")
    return 0


def install_claude(url: str, token: str, out: Callable[[str], None]) -> int:
    command = editors.claude_command(url, token)
    if shutil.which("claude") is None:
        out("The claude CLI is not on your PATH; run this once it is (or paste it as is):")
        out(f"  {editors.claude_command_text(url, token)}")
        return 0
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise CliError(
            "`claude mcp add` failed; run it yourself: "
            + editors.claude_command_text(url, "$SP00KY_MCP_TOKEN")
        )
    out(
        f"Registered '{editors.SERVER_NAME}' with Claude Code (user scope). "
        "Verify with `claude mcp list`."
    )
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    # VS Code prompts for the token itself, so none is needed (nor written) here.
    token = "" if args.client == "vscode" else token_for(args.token)
    return install(args.client, server_url(args.url), token, args.project)


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import doctor  # httpx is heavy; the server process never needs it

    # Without a token the check still runs, so the server's own diagnosis and the curl
    # command are printed.
    given = args.token or os.environ.get("SP00KY_MCP_TOKEN")
    token = given or (token_for(None) if interactive() else "")
    return doctor.run(server_url(args.url), token, say)


# --- serve -----------------------------------------------------------------------------------


def config_from(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        allowed_origins=tuple(args.allowed_origin),
        allowed_hosts=tuple(args.allowed_host),
        profile=args.profile,
        log_level=args.log_level,
        data_dir=args.data_dir or os.environ.get("SP00KY_MCP_DATA_DIR"),
        limits=Limits(rate_per_minute=args.rate_per_minute, rate_burst=args.rate_burst),
    )


Notes = Callable[[McpServer], list[str]]


def build_server(config: ServerConfig, user: str | None) -> tuple[McpServer, Notes]:
    """The server, and what to tell the person who started it once it listens."""
    if config.profile == "conformance":
        if config.host not in LOOPBACK_HOSTS and not config.host.startswith("127."):
            raise CliError(
                "The conformance profile has no authentication, so it only binds a "
                "loopback address; drop --host or use 127.0.0.1."
            )
        from .fixtures import conformance_catalogue

        return McpServer(config, conformance_catalogue()), lambda _: []
    from .product import build_product, connect_notes

    try:
        product = build_product(config)
        user_record = product.accounts.ensure_user(user or default_email())
    except (StoreError, AccountError) as exc:
        raise CliError(str(exc)) from None
    return product.server, lambda server: connect_notes(product, user_record, server.url)


def _uvloop_wanted(loop: str) -> bool:
    if loop != "uvloop":
        return False
    if importlib.util.find_spec("uvloop") is None:
        raise CliError(
            "uvloop is not installed: pip install 'sp00ky-mcp[uvloop]', or drop --loop uvloop."
        )
    return True


async def run_server(server: McpServer, notes: Notes) -> None:
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        # Signals are handled before the server says it listens: whoever waits for that line
        # may send SIGTERM at once, and must get a graceful stop, not the default death.
        await tasks.start(_stop_on_signal, server)
        # Everything built at start-up (modules, catalogue, schemas) lives as long as the
        # process: freezing it keeps the collector from rescanning it during requests.
        gc.collect()
        gc.freeze()
        say(f"sp00ky-mcp listening on {server.url}")
        for line in notes(server):
            say(line)
        await server.wait_stopped()
        tasks.cancel_scope.cancel()


async def _stop_on_signal(
    server: McpServer, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            say("sp00ky-mcp shutting down")
            server.shutdown()
            return


def cmd_serve(args: argparse.Namespace) -> int:
    config = config_from(args)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    options = {"use_uvloop": _uvloop_wanted(args.loop)}
    server, notes = build_server(config, args.user)
    anyio.run(run_server, server, notes, backend_options=options)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "token": cmd_token,
    "tokens": cmd_tokens,
    "revoke": cmd_revoke,
    "install": cmd_install,
    "doctor": cmd_doctor,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"spky: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("spky: cancelled; nothing was changed.", file=sys.stderr)
        return 1


def serve_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sp00ky-mcp", description="Run the Sp00ky MCP server.")
    add_serve_arguments(parser)
    try:
        return cmd_serve(parser.parse_args(argv))
    except CliError as exc:
        print(f"sp00ky-mcp: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
