"""`spky mcp install` and `spky mcp doctor`: registering the server with an editor, and
checking the connection from this terminal."""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from ..product import narrowing
from ..product.tools import all_specs
from . import editors
from .common import CliError, interactive, say, server_url, shown

# --- install and doctor ----------------------------------------------------------------------


def token_for(given: str | None) -> str:
    from .doctor import pasted

    # A pasted token often comes with a trailing newline or spaces, or a `Bearer ` prefix.
    token = pasted(given or os.environ.get("SP00KY_MCP_TOKEN") or "")
    if token:
        return token
    if interactive():
        return pasted(getpass.getpass("MCP token (mcp_live_…): "))
    raise CliError("No token: pass --token or set SP00KY_MCP_TOKEN.")


def checked_token(given: str | None) -> str:
    """A token to write into an editor's config: one that cannot work is refused first."""
    from .doctor import local_diagnosis

    token = token_for(given)
    problem = local_diagnosis(token)
    if problem:
        raise CliError(problem)
    return token


def cursor_reference_reason(path: Path, project: bool) -> str | None:
    """Why the Cursor config at `path` gets ${env:SP00KY_MCP_TOKEN} instead of the token:
    a file that may be committed never holds one."""
    if project:
        return "a project's config may be committed"
    tree = editors.git_work_tree(path)
    return f"{path} is inside the git work tree {tree}" if tree else None


def install(client: str, url: editors.Where, token: str, project: bool, quiet: bool = False) -> int:
    out: Callable[[str], None] = (lambda _: None) if quiet else say
    try:
        if client == "claude":
            return install_claude(url, token, out, project)
        if client == "cursor":
            path = install_cursor(url, token, project, out)
        else:
            path = editors.vscode_path(Path.cwd())
            editors.write_private_json(path, editors.merge_vscode(editors.read_json(path), url))
            if not isinstance(url, editors.SignIn):
                out("VS Code will ask for the token when it starts the server.")
    except editors.EditorError as exc:
        raise CliError(str(exc)) from None
    out(f"Registered '{editors.SERVER_NAME}' in {path}.")
    return 0


def install_cursor(
    url: editors.Where, token: str, project: bool, out: Callable[[str], None]
) -> Path:
    path = editors.cursor_path(project, Path.home(), Path.cwd())
    reason = cursor_reference_reason(path, project)
    value = editors.CURSOR_TOKEN_REFERENCE if reason else token
    if isinstance(url, editors.SignIn):
        reason = None  # no token anywhere: the editor signs in
    editors.write_private_json(path, editors.merge_cursor(editors.read_json(path), url, value))
    if reason:
        out(
            f"Cursor reads the token from {editors.TOKEN_VARIABLE} ({reason}): export "
            f"{editors.TOKEN_VARIABLE}=mcp_live_… where Cursor starts."
        )
    return path


def install_claude(
    url: editors.Where, token: str, out: Callable[[str], None], project: bool = False
) -> int:
    """At user scope with the token; at project scope (`.mcp.json`, which may be committed)
    with a reference to SP00KY_MCP_TOKEN that Claude Code expands."""
    scope = "project" if project else "user"
    if isinstance(url, editors.SignIn):
        command = editors.claude_command(url, "", scope)
        by_hand = shlex.join(command)
    elif project:
        command = editors.claude_command(url, editors.CLAUDE_TOKEN_REFERENCE, scope)
        by_hand = shlex.join(command)
    else:
        command = editors.claude_command(url, token)
        by_hand = editors.claude_command_from_environment(url)
    if shutil.which("claude") is None:
        out(
            "The claude CLI is not on your PATH; once it is, run this with "
            f"{editors.TOKEN_VARIABLE} set to the token:"
        )
        out(f"  {by_hand}")
        return 0
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True)
    except OSError as exc:
        raise CliError(f"Cannot run claude ({exc.strerror}); run it yourself: {by_hand}") from None
    if done.returncode != 0:
        raise CliError(f"`claude mcp add` failed; run it yourself: {by_hand}")
    reads = f"; it reads the token from {editors.TOKEN_VARIABLE}" if project else ""
    out(
        f"Registered '{editors.SERVER_NAME}' with Claude Code ({scope} scope{reads}). "
        "Verify with `claude mcp list`."
    )
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    address = narrowed_url(server_url(args.url), args.read_only, args.toolsets, args.tools)
    if args.oauth:
        return install_signed_in(args, address)
    url: editors.Where = address
    if args.stdio:
        url = stdio_where(args)
    # VS Code prompts for the token itself, and a Cursor config that may be committed refers
    # to the environment: neither needs (nor writes) the token.
    cursor = editors.cursor_path(args.project, Path.home(), Path.cwd())
    needs_token = (args.client == "claude" and not args.project) or (
        args.client == "cursor" and cursor_reference_reason(cursor, args.project) is None
    )
    token = checked_token(args.token) if needs_token else ""
    return install(args.client, url, token, args.project)


def install_signed_in(args: argparse.Namespace, url: str) -> int:
    """By URL alone: the editor signs the user in with OAuth on the server's first 401."""
    if args.stdio or args.token:
        raise CliError(
            "--oauth registers the URL alone, for the editor to sign in: drop --stdio and --token."
        )
    status = install(args.client, editors.SignIn(url), "", args.project)
    say(
        "The editor signs you in to Sp00ky in your browser when it first connects (set your "
        "password with `spky mcp user passwd EMAIL` on the server)."
    )
    return status


def stdio_where(args: argparse.Namespace) -> editors.Stdio:
    """`spky mcp stdio` by the path of this spky (an editor's PATH may not hold it)."""
    if args.read_only or args.toolsets or args.tools or args.url:
        raise CliError(
            "--stdio starts the server for the editor, with no URL to narrow: drop --url, "
            "--read-only, --toolsets and --tools, and mint a token with fewer scopes instead."
        )
    spky = shutil.which("spky")
    start = (spky,) if spky else (sys.executable, "-m", "sp00ky_mcp")
    return editors.Stdio((*start, "mcp", "stdio"))


def narrowed_url(url: str, read_only: bool, toolsets: str | None, tools: str | None) -> str:
    """The server URL with the narrowing an editor's connection asks for (checked here, so a
    mistyped name is refused now rather than by every request)."""
    asked: list[tuple[str, str]] = [("read_only", "true")] if read_only else []
    for name, given, known in (
        ("toolsets", toolsets, narrowing.TOOLSETS.keys()),
        ("tools", tools, {spec.name for spec in all_specs()}),
    ):
        if given is None:
            continue
        names = [n.strip() for n in given.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            choices = ", ".join(sorted(known)) if name == "toolsets" else "names from tools/list"
            raise CliError(
                f"--{name} '{shown(given)}' names {shown(', '.join(unknown)) or 'nothing'} "
                f"unknown; use {choices}."
            )
        asked.append((name, ",".join(names)))
    if not asked:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(asked, safe=",")


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import doctor  # httpx is heavy; the server process never needs it

    # Without a token the check still runs, so the server's own diagnosis and the curl
    # command are printed.
    given = doctor.pasted(args.token or os.environ.get("SP00KY_MCP_TOKEN") or "")
    token = given or (token_for(None) if interactive() else "")
    return doctor.run(server_url(args.url), token, say)
