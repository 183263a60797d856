"""Registering the server with an editor: the config each one documents.

- Claude Code: `claude mcp add --transport http --scope user <name> <url> --header ...`.
- Cursor: `~/.cursor/mcp.json` (or `.cursor/mcp.json` per project), `{"mcpServers": {name:
  {"url", "headers"}}}`; other servers in the file are kept.  A file that may be committed (a
  project's, or any inside a git work tree) gets `${env:SP00KY_MCP_TOKEN}`, which Cursor
  expands from its environment, never the token itself.
- VS Code: `.vscode/mcp.json`, `{"servers": {name: {"type": "http", "url", "headers"}},
  "inputs": [...]}` with a password prompt, so the token is never written into the workspace.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

import orjson

SERVER_NAME = "sp00ky"
INPUT_ID = "sp00ky-mcp-token"
CLIENTS = ("claude", "cursor", "vscode")
TOKEN_VARIABLE = "SP00KY_MCP_TOKEN"
CURSOR_TOKEN_REFERENCE = f"${{env:{TOKEN_VARIABLE}}}"


class EditorError(Exception):
    """The editor's config could not be written; the message says what to fix."""


def claude_command(url: str, token: str) -> list[str]:
    return [
        "claude",
        "mcp",
        "add",
        "--transport",
        "http",
        "--scope",
        "user",
        SERVER_NAME,
        url,
        "--header",
        f"Authorization: Bearer {token}",
    ]


def claude_command_text(url: str, token: str) -> str:
    return shlex.join(claude_command(url, token))


def claude_command_from_environment(url: str) -> str:
    """The command with the token read from $SP00KY_MCP_TOKEN when a shell runs it: the
    header is double-quoted so that the shell expands the variable, and the token stays out
    of the shell's history file."""
    command = shlex.join(claude_command(url, "")[:-1])
    return f'{command} "Authorization: Bearer ${TOKEN_VARIABLE}"'


def cursor_entry(url: str, token: str) -> dict[str, Any]:
    return {"url": url, "headers": {"Authorization": f"Bearer {token}"}}


def vscode_config(url: str) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "type": "promptString",
                "id": INPUT_ID,
                "description": "Sp00ky MCP token",
                "password": True,
            }
        ],
        "servers": {
            SERVER_NAME: {
                "type": "http",
                "url": url,
                "headers": {"Authorization": f"Bearer ${{input:{INPUT_ID}}}"},
            }
        },
    }


def cursor_path(project: bool, home: Path, cwd: Path) -> Path:
    return (cwd if project else home) / ".cursor" / "mcp.json"


def vscode_path(cwd: Path) -> Path:
    return cwd / ".vscode" / "mcp.json"


def git_work_tree(path: Path) -> Path | None:
    """The git work tree holding `path` (the nearest directory above it with a `.git`
    entry: a directory, or a file for worktrees and submodules), if any."""
    for directory in path.resolve().parents:
        if (directory / ".git").exists():
            return directory
    return None


def read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        value = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise EditorError(f"Cannot read {path}: {exc.strerror}; fix or move it first.") from None
    except orjson.JSONDecodeError:
        message = f"{path} is not valid JSON; fix or move it, then run this again."
        raise EditorError(message) from None
    if not isinstance(value, dict):
        raise EditorError(f"{path} does not hold a JSON object; fix or move it first.")
    return value


def merge_cursor(existing: dict[str, Any], url: str, token: str) -> dict[str, Any]:
    servers = existing.get("mcpServers")
    servers = dict(servers) if isinstance(servers, dict) else {}
    servers[SERVER_NAME] = cursor_entry(url, token)
    return {**existing, "mcpServers": servers}


def merge_vscode(existing: dict[str, Any], url: str) -> dict[str, Any]:
    fresh = vscode_config(url)
    servers = existing.get("servers")
    servers = dict(servers) if isinstance(servers, dict) else {}
    servers[SERVER_NAME] = fresh["servers"][SERVER_NAME]
    inputs = [
        i for i in existing.get("inputs", []) if isinstance(i, dict) and i.get("id") != INPUT_ID
    ]
    return {**existing, "servers": servers, "inputs": [*inputs, *fresh["inputs"]]}


def write_private_json(path: Path, value: dict[str, Any]) -> None:
    """Atomic (write a temporary file, then rename over) and readable by the owner only,
    because the file may hold a token: the new file is made 0600 whatever the old one's mode
    was.  A symlinked config is written where the link points, so the link stays."""
    path = path.resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".mcp-", suffix=".tmp")
    except OSError as exc:
        raise EditorError(f"Cannot write {path}: {_cause(exc, path)}.") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except OSError as exc:
        _discard(temporary)
        raise EditorError(f"Cannot write {path}: {exc.strerror}.") from None


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
