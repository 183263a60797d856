"""Registering the server with an editor: the config each one documents.

- Claude Code: `claude mcp add --transport http --scope user <name> <url> --header ...`.
- Cursor: `~/.cursor/mcp.json` (or `.cursor/mcp.json` per project), `{"mcpServers": {name:
  {"url", "headers"}}}`; other servers in the file are kept.  A file that may be committed (a
  project's, or any inside a git work tree) gets `${env:SP00KY_MCP_TOKEN}`, which Cursor
  expands from its environment, never the token itself.
- VS Code: `.vscode/mcp.json`, `{"servers": {name: {"type": "http", "url", "headers"}},
  "inputs": [...]}` with a password prompt, so the token is never written into the workspace.

With `--stdio` each gets the command form instead (`spky mcp stdio`, the token in
SP00KY_MCP_TOKEN): `claude mcp add -e …`, `{"command", "args", "env"}`, `"type": "stdio"`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVER_NAME = "sp00ky"
INPUT_ID = "sp00ky-mcp-token"
CLIENTS = ("claude", "cursor", "vscode")
TOKEN_VARIABLE = "SP00KY_MCP_TOKEN"
CURSOR_TOKEN_REFERENCE = f"${{env:{TOKEN_VARIABLE}}}"
# Claude Code expands ${VAR} in a project's .mcp.json from the environment it starts in.
CLAUDE_TOKEN_REFERENCE = f"${{{TOKEN_VARIABLE}}}"


class EditorError(Exception):
    """The editor's config could not be written; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Stdio:
    """The server as a command the editor starts (`spky mcp stdio`), the token in its
    environment, in place of an HTTP URL."""

    command: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SignIn:
    """The server's HTTP URL alone: the editor signs the user in with OAuth when the server
    first answers 401, and keeps the tokens itself; no token is written anywhere."""

    url: str


# Where an editor reaches the server: its HTTP URL with a token, the stdio command, or its URL
# to sign in at.
Where = str | Stdio | SignIn


def claude_command(url: Where, token: str, scope: str = "user") -> list[str]:
    """`claude mcp add` at user scope, or at project scope (the project's `.mcp.json`, which
    may be committed: pass CLAUDE_TOKEN_REFERENCE as the token there)."""
    if isinstance(url, Stdio):
        head = ["claude", "mcp", "add", "--scope", scope, SERVER_NAME, "--", *url.command]
        return [*head[:5], "-e", f"{TOKEN_VARIABLE}={token}", *head[5:]]
    http = ["claude", "mcp", "add", "--transport", "http", "--scope", scope, SERVER_NAME]
    if isinstance(url, SignIn):
        return [*http, url.url]
    return [*http, url, "--header", f"Authorization: Bearer {token}"]


def claude_command_text(url: Where, token: str) -> str:
    return shlex.join(claude_command(url, token))


def claude_command_from_environment(url: Where) -> str:
    """The command with the token read from $SP00KY_MCP_TOKEN when a shell runs it: the
    header (or the variable given to the stdio command) is double-quoted so that the shell
    expands it, and the token stays out of the shell's history file."""
    if isinstance(url, SignIn):
        return shlex.join(claude_command(url, ""))
    if isinstance(url, Stdio):
        words = claude_command(url, "")
        given = f'"{TOKEN_VARIABLE}=${TOKEN_VARIABLE}"'
        return f"{shlex.join(words[:6])} {given} {shlex.join(words[7:])}"
    command = shlex.join(claude_command(url, "")[:-1])
    return f'{command} "Authorization: Bearer ${TOKEN_VARIABLE}"'


def cursor_entry(url: Where, token: str) -> dict[str, Any]:
    if isinstance(url, Stdio):
        return {
            "command": url.command[0],
            "args": list(url.command[1:]),
            "env": {TOKEN_VARIABLE: token},
        }
    if isinstance(url, SignIn):
        return {"url": url.url}
    return {"url": url, "headers": {"Authorization": f"Bearer {token}"}}


def vscode_server(url: Where) -> dict[str, Any]:
    token = f"${{input:{INPUT_ID}}}"
    if isinstance(url, Stdio):
        command, args = url.command[0], list(url.command[1:])
        return {"type": "stdio", "command": command, "args": args, "env": {TOKEN_VARIABLE: token}}
    if isinstance(url, SignIn):
        return {"type": "http", "url": url.url}
    return {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}


def vscode_config(url: Where) -> dict[str, Any]:
    if isinstance(url, SignIn):  # VS Code signs in itself: nothing to ask for
        return {"inputs": [], "servers": {SERVER_NAME: vscode_server(url)}}
    return {
        "inputs": [
            {
                "type": "promptString",
                "id": INPUT_ID,
                "description": "Sp00ky MCP token",
                "password": True,
            }
        ],
        "servers": {SERVER_NAME: vscode_server(url)},
    }


def cursor_path(project: bool, home: Path, cwd: Path) -> Path:
    return (cwd if project else home) / ".cursor" / "mcp.json"


def vscode_path(cwd: Path) -> Path:
    return cwd / ".vscode" / "mcp.json"


def git_work_tree(path: Path) -> Path | None:
    """The git work tree holding `path` (the nearest directory above it with a `.git`
    entry: a directory, or a file for worktrees and submodules), if any."""
    try:
        where = path.resolve()
    except (OSError, RuntimeError):  # a loop of symlinks: refused when the file is written
        where = path.absolute()
    for directory in where.parents:
        if (directory / ".git").exists():
            return directory
    return None


def read_json(path: Path) -> dict[str, Any]:
    """An editor's config; VS Code and Cursor allow comments and trailing commas (JSONC),
    which are read past (and not written back)."""
    if not path.exists():
        return {}
    try:
        # A byte order mark, as some Windows editors write, is read past.
        value = _exact_json(without_comments(path.read_text(encoding="utf-8-sig")))
    except OSError as exc:
        raise EditorError(f"Cannot read {path}: {exc.strerror}; fix or move it first.") from None
    except _TooLarge as exc:
        message = f"{path} holds a number too large to write back ({exc}); fix or move it first."
        raise EditorError(message) from None
    except (ValueError, UnicodeDecodeError):
        message = f"{path} is not valid JSON; fix or move it, then run this again."
        raise EditorError(message) from None
    except RecursionError:
        raise EditorError(f"{path} nests too deep to be read; fix or move it first.") from None
    if not isinstance(value, dict):
        raise EditorError(f"{path} does not hold a JSON object; fix or move it first.")
    return value


def _exact_json(text: str) -> Any:
    """The standard library's parser, not orjson: the user's own entries are written back as
    they were, integers of any size included (orjson reads those past 64 bits as floats) and
    escaped lone surrogates too."""
    return json.loads(text, parse_constant=_not_json, parse_float=_finite)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    """A number too large for a float (`1e400`) would be written back as `Infinity`, which
    is not JSON: refused instead."""
    value = float(text)
    if not math.isfinite(value):
        raise _TooLarge(text)
    return value


class _TooLarge(ValueError):
    pass


def without_comments(text: str) -> str:
    """JSONC as JSON: `//` and `/* */` comments and trailing commas dropped, strings kept."""
    out: list[str] = []
    i, size = 0, len(text)
    while i < size:
        if text[i] == '"':
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
        elif text.startswith(("//", "/*"), i):
            i = _comment_end(text, i)
        elif text[i] == "," and _after_value(out) and _closes(text, _blank_end(text, i + 1)):
            i += 1  # a trailing comma: after a value, before the bracket that closes
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _after_value(out: list[str]) -> bool:
    """Whether what was kept so far ends in a value (not `{`, `[` or `,`)."""
    for piece in reversed(out):
        kept = piece.rstrip()
        if kept:
            return kept[-1] not in "{[,"
    return False


def _closes(text: str, at: int) -> bool:
    return at < len(text) and text[at] in "}]"


def _string_end(text: str, start: int) -> int:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return len(text)


def _comment_end(text: str, start: int) -> int:
    if text.startswith("//", start):
        end = text.find("\n", start)
        return len(text) if end < 0 else end
    end = text.find("*/", start + 2)
    return len(text) if end < 0 else end + 2


def _blank_end(text: str, start: int) -> int:
    """Past the whitespace and comments from `start` on."""
    i = start
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text.startswith(("//", "/*"), i):
            i = _comment_end(text, i)
        else:
            break
    return i


def merge_cursor(existing: dict[str, Any], url: Where, token: str) -> dict[str, Any]:
    servers = dict(_member(existing, "mcpServers", dict))
    servers[SERVER_NAME] = cursor_entry(url, token)
    return {**existing, "mcpServers": servers}


def merge_vscode(existing: dict[str, Any], url: Where) -> dict[str, Any]:
    fresh = vscode_config(url)
    servers = dict(_member(existing, "servers", dict))
    servers[SERVER_NAME] = fresh["servers"][SERVER_NAME]
    kept = _member(existing, "inputs", list)
    inputs = [i for i in kept if isinstance(i, dict) and i.get("id") != INPUT_ID]
    return {**existing, "servers": servers, "inputs": [*inputs, *fresh["inputs"]]}


def _member(config: dict[str, Any], key: str, kind: type[dict[str, Any]] | type[list[Any]]) -> Any:
    """A member the merge adds to, empty when absent (or empty); of another type, what the
    user has in it would be lost, so the config is refused instead."""
    value = config.get(key)
    if not value:
        return kind()
    if not isinstance(value, kind):
        shape = "an object" if kind is dict else "a list"
        raise EditorError(f'"{key}" in the config is not {shape}; fix or move the file first.')
    return value


def write_private_json(path: Path, value: dict[str, Any]) -> None:
    """Atomic (write a temporary file, then rename over) and readable by the owner only,
    because the file may hold a token: the new file is made 0600 whatever the old one's mode
    was.  A symlinked config is written where the link points, so the link stays."""
    path = _resolved(path)
    try:
        encoded = _encoded(value)
    except RecursionError:  # nested deeper than can be written back
        message = f"{path} nests too deep to be written back; fix or move it first."
        raise EditorError(message) from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".mcp-", suffix=".tmp")
    except OSError as exc:
        raise EditorError(f"Cannot write {path}: {_cause(exc, path)}.") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(encoded)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except OSError as exc:
        _discard(temporary)
        raise EditorError(f"Cannot write {path}: {exc.strerror}.") from None


def _encoded(value: dict[str, Any]) -> bytes:
    """Indented as editors write it, non-ASCII text as itself; escaped as `\\u` only when it
    holds a lone surrogate, which UTF-8 cannot carry."""
    text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(value, indent=2, allow_nan=False) + "\n").encode("ascii")


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a loop of symlinks
        raise EditorError(f"{path} is a loop of symbolic links; fix or remove it.") from None


def _cause(exc: OSError, path: Path) -> str:
    # mkdir over a file says only "File exists", which does not tell what is in the way.
    if isinstance(exc, FileExistsError | NotADirectoryError):
        for directory in (path.parent, *path.parent.parents):
            if directory.exists() and not directory.is_dir():
                return f"{directory} is a file, not a directory"
    return str(exc.strerror)


def _discard(temporary: str) -> None:
    """A failed write leaves the old file as it was and no temporary file behind."""
    with contextlib.suppress(OSError):
        os.unlink(temporary)
