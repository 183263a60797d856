"""`spky mcp token/tokens/revoke/install`, called in-process as a script would call it (and once
as a real process, to show it never prompts when standard input is not a terminal)."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from sp00ky_mcp.cli.commands import main
from sp00ky_mcp.engine.config import Limits
from sp00ky_mcp.product import tokens
from sp00ky_mcp.product.oauth import passwords
from sp00ky_mcp.product.store.sqlite import SqliteStore

from .product_support import ProductEnv, product_server

URL = "https://mcp.example.test/v1/mcp"
DEFAULT_URL = "http://127.0.0.1:8765/v1/mcp"
USER = "ada@example.com"
VALID = (
    "projects:read, deployments:read, logs:read, env:read, vault:read, backups:read, "
    "domains:read, links:read, tenants:read, billing:read, projects:write, deployments:write, "
    "env:write, vault:write, backups:write, domains:write, links:write, tenants:write, "
    "billing:write, mcp:read, mcp:full, secrets:reveal"
)
WARNING = (
    "This is the only time the full token is shown. Store it like a password; if you lose it, "
    "revoke it (spky mcp revoke) and mint a new one."
)
ROW_KEYS = {
    "id",
    "name",
    "token",
    "scopes",
    "created_at",
    "expires_at",
    "last_used_at",
    "status",
    "issued_by",
}
Run = tuple[int, str, str]
PYTHON_M = (sys.executable, "-m", "sp00ky_mcp")
TOKEN = tokens.mint()
OLD_TOKEN = tokens.mint()
ENV_TOKEN = tokens.mint()


pytestmark = pytest.mark.usefixtures("cli_environment")


def spky(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    status = main(["mcp", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def mint(capsys: pytest.CaptureFixture[str], data_dir: str, *extra: str) -> dict[str, Any]:
    status, out, err = spky(
        capsys, "token", "--data-dir", data_dir, "--user", USER, "--yes", "--json", *extra
    )
    assert (status, err) == (0, "")
    minted: dict[str, Any] = orjson.loads(out)
    return minted


def listed(capsys: pytest.CaptureFixture[str], data_dir: str) -> list[dict[str, Any]]:
    status, out, err = spky(capsys, "tokens", "--data-dir", data_dir, "--user", USER, "--json")
    assert (status, err) == (0, "")
    rows: list[dict[str, Any]] = orjson.loads(out)
    return rows


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def fake_claude(directory: Path, status: int = 0) -> Path:
    """A `claude` executable that records its arguments, one a line, in argv.txt."""
    directory.mkdir(exist_ok=True)
    script = directory / "claude"
    script.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do printf \'%s\\n\' "$arg"; done > "$(dirname "$0")/argv.txt"\n'
        f"exit {status}\n"
    )
    script.chmod(0o755)
    return directory / "argv.txt"


@asynccontextmanager
async def serving(data_dir: str) -> AsyncIterator[ProductEnv]:
    """What `spky mcp serve --data-dir DATA_DIR --port 0` runs, in-process."""
    store = await SqliteStore.open(data_dir)
    try:
        async with product_server(store, data_dir, Limits()) as env:
            yield env
    finally:
        await store.close()


# --- token -----------------------------------------------------------------------------------


def test_token_json_prints_the_id_token_name_scopes_and_expiry(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    minted = mint(capsys, data_dir, "--scopes", "mcp:full", "--name", "ci")
    assert set(minted) == {
        "id",
        "token",
        "name",
        "scopes",
        "created_at",
        "expires_at",
        "user",
        "url",
    }
    assert minted["id"].startswith("tok_")
    assert tokens.well_formed(minted["token"])
    assert (minted["name"], minted["scopes"], minted["user"], minted["url"]) == (
        "ci",
        ["mcp:full"],
        USER,
        DEFAULT_URL,
    )
    assert moment(minted["expires_at"]) - moment(minted["created_at"]) == timedelta(days=90)


def test_revoke_accepts_the_id_that_token_printed(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    minted = mint(capsys, data_dir, "--scopes", "mcp:full", "--name", "ci")
    status, out, err = spky(capsys, "revoke", minted["id"], "--data-dir", data_dir, "--user", USER)
    assert (status, err) == (0, "")
    assert out == (f"Revoked token 'ci' ({minted['id']}); it is refused from the next request.\n")
    assert [row["status"] for row in listed(capsys, data_dir)] == ["revoked"]


@pytest.mark.anyio
async def test_a_minted_token_works_at_once_against_a_running_server_and_revoke_stops_it(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    # The commands run their own event loop, so they run here on a thread of their own.
    async with serving(data_dir) as server:
        minted = await anyio.to_thread.run_sync(
            lambda: mint(capsys, data_dir, "--scopes", "mcp:full", "--name", "ci")
        )
        reply = await server.rpc(minted["token"], "tools/list")
        assert reply.status_code == 200
        assert "tools" in reply.json()["result"]
        await anyio.to_thread.run_sync(
            lambda: spky(capsys, "revoke", minted["id"], "--data-dir", data_dir, "--user", USER)
        )
        reply = await server.rpc(minted["token"], "tools/list")
        assert reply.status_code == 401
        assert reply.text.startswith("401 Unauthorized: the token was revoked; ")


def test_an_unknown_scope_fails_listing_the_valid_ones_and_mints_nothing(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    status, out, err = spky(
        capsys, "token", "--data-dir", data_dir, "--user", USER, "--scopes", "logs:write", "--yes"
    )
    assert (status, out) == (1, "")
    assert err == f"spky: Unknown scope: logs:write. Valid scopes: {VALID}.\n"
    assert not Path(data_dir).exists()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--read-only",), ["mcp:read"]),
        ((), ["mcp:read"]),
        (("--scopes", "logs:read, env:read"), ["logs:read", "env:read"]),
        (("--scopes", "mcp:full,secrets:reveal"), ["mcp:full", "secrets:reveal"]),
    ],
)
def test_the_scopes_a_token_gets(
    capsys: pytest.CaptureFixture[str], data_dir: str, flags: tuple[str, ...], expected: list[str]
) -> None:
    assert mint(capsys, data_dir, *flags)["scopes"] == expected


@pytest.mark.parametrize(
    ("given", "lifetime"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2))],
)
def test_expires_in_sets_the_expiry(
    capsys: pytest.CaptureFixture[str], data_dir: str, given: str, lifetime: timedelta
) -> None:
    minted = mint(capsys, data_dir, "--expires-in", given)
    assert moment(minted["expires_at"]) - moment(minted["created_at"]) == lifetime


def test_expires_in_never_gives_a_token_without_expiry(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    assert mint(capsys, data_dir, "--expires-in", "never")["expires_at"] is None
    assert listed(capsys, data_dir)[0]["expires_at"] is None


# Full-width and Arabic-Indic digits are digits to `\d`, and `int` reads them: refused all the
# same, a duration is written in ASCII.
@pytest.mark.parametrize("given", ["garbage", "0d", "30", "-1d", "3y", "\uff13\uff10d", "\u0663d"])
def test_expires_in_that_is_not_a_duration_fails(
    capsys: pytest.CaptureFixture[str], data_dir: str, given: str
) -> None:
    status, out, err = spky(
        capsys, "token", "--data-dir", data_dir, "--user", USER, "--yes", f"--expires-in={given}"
    )
    assert (status, out) == (1, "")
    assert err == (
        f"spky: --expires-in '{given}' is not a duration; use e.g. 30d, 12h, 2w or never.\n"
    )
    assert not Path(data_dir).exists()


def test_token_prints_the_secret_once_with_the_password_warning(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    status, out, err = spky(
        capsys, "token", "--data-dir", data_dir, "--user", USER, "--name", "laptop", "--yes"
    )
    assert (status, err) == (0, "")
    lines = out.splitlines()
    secret = lines[2].strip()
    assert tokens.well_formed(secret)
    assert lines[0].startswith(f"Token 'laptop' for {USER} (mcp:read), expires 20")
    assert lines[1:6] == ["", f"  {secret}", "", WARNING, "To add it to Claude Code later:"]
    assert lines[6] == (
        f"  claude mcp add --transport http --scope user sp00ky {DEFAULT_URL} "
        f"--header 'Authorization: Bearer {secret}'"
    )
    assert len(lines) == 7


def test_token_uses_the_url_given(capsys: pytest.CaptureFixture[str], data_dir: str) -> None:
    assert mint(capsys, data_dir, "--url", URL)["url"] == URL


def test_a_bad_user_email_fails_with_one_sentence(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    status, out, err = spky(capsys, "token", "--data-dir", data_dir, "--user", "ada", "--yes")
    assert (status, out) == (1, "")
    assert err == "spky: 'ada' is not an email address; pass --user you@example.com.\n"


def test_token_never_prompts_when_stdin_is_not_a_terminal(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    environment = {**os.environ, "HOME": str(tmp_path)}
    for name in ("SP00KY_MCP_URL", "SP00KY_MCP_TOKEN", "SP00KY_MCP_DATA_DIR"):
        environment.pop(name, None)
    done = subprocess.run(
        [*PYTHON_M, "mcp", "token", "--data-dir", data_dir, "--user", USER, "--name", "script"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        env=environment,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "Pick scopes" not in done.stdout
    assert "[Y/n]" not in done.stdout
    assert done.stdout.startswith(f"Token 'script' for {USER} (mcp:read), expires ")
    assert WARNING in done.stdout


# --- tokens and revoke -----------------------------------------------------------------------


def test_tokens_json_lists_masked_tokens_and_never_the_secret(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    first = mint(capsys, data_dir, "--name", "ci", "--scopes", "mcp:full")
    second = mint(capsys, data_dir, "--name", "laptop", "--expires-in", "never")
    spky(capsys, "revoke", "ci", "--data-dir", data_dir, "--user", USER)
    status, out, err = spky(capsys, "tokens", "--data-dir", data_dir, "--user", USER, "--json")
    assert (status, err) == (0, "")
    assert first["token"] not in out
    assert second["token"] not in out
    rows = orjson.loads(out)
    assert [set(row) for row in rows] == [ROW_KEYS, ROW_KEYS]
    assert [
        (r["id"], r["name"], r["token"], r["scopes"], r["expires_at"], r["last_used_at"])
        for r in rows
    ] == [
        (
            first["id"],
            "ci",
            first["token"][:13] + "••••••",
            ["mcp:full"],
            first["expires_at"],
            None,
        ),
        (second["id"], "laptop", second["token"][:13] + "••••••", ["mcp:read"], None, None),
    ]
    assert [r["status"] for r in rows] == ["revoked", "active"]
    assert [r["issued_by"] for r in rows] == ["cli", "cli"]
    assert [r["created_at"] for r in rows] == [first["created_at"], second["created_at"]]


def test_tokens_as_a_table_shows_masked_tokens_only(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    minted = mint(capsys, data_dir, "--name", "ci", "--expires-in", "never")
    status, out, err = spky(capsys, "tokens", "--data-dir", data_dir, "--user", USER)
    assert (status, err) == (0, "")
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME", "TOKEN", "STATUS", "EXPIRES", "LAST", "USED", "SCOPES"]
    assert row.split() == [
        minted["id"],
        "ci",
        minted["token"][:13] + "••••••",
        "active",
        "never",
        "-",
        "mcp:read",
    ]
    assert minted["token"] not in out


def test_tokens_without_any_says_how_to_mint_one(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    spky(capsys, "token", "--data-dir", data_dir, "--user", "bob@example.com", "--yes")
    assert spky(capsys, "tokens", "--data-dir", data_dir, "--user", USER) == (
        0,
        f"No MCP tokens for {USER}; mint one with `spky mcp token`.\n",
        "",
    )


def test_revoke_by_name_revokes_that_token_only(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    ci = mint(capsys, data_dir, "--name", "ci")
    mint(capsys, data_dir, "--name", "laptop")
    status, out, err = spky(
        capsys, "revoke", "ci", "--data-dir", data_dir, "--user", USER, "--json"
    )
    assert (status, err) == (0, "")
    assert orjson.loads(out) == {"id": ci["id"], "name": "ci", "status": "revoked"}
    assert [(r["name"], r["status"]) for r in listed(capsys, data_dir)] == [
        ("ci", "revoked"),
        ("laptop", "active"),
    ]


def test_revoking_an_unknown_name_fails(capsys: pytest.CaptureFixture[str], data_dir: str) -> None:
    mint(capsys, data_dir, "--name", "ci")
    assert spky(capsys, "revoke", "nope", "--data-dir", data_dir, "--user", USER) == (
        1,
        "",
        "spky: No active token 'nope'; `spky mcp tokens` lists them.\n",
    )


def test_revoking_twice_fails_the_second_time(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    minted = mint(capsys, data_dir, "--name", "ci")
    assert spky(capsys, "revoke", "ci", "--data-dir", data_dir, "--user", USER)[0] == 0
    assert spky(capsys, "revoke", minted["id"], "--data-dir", data_dir, "--user", USER) == (
        1,
        "",
        f"spky: No active token '{minted['id']}'; `spky mcp tokens` lists them.\n",
    )


def test_the_data_directory_defaults_to_the_environment(
    capsys: pytest.CaptureFixture[str], data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SP00KY_MCP_DATA_DIR", data_dir)
    status, _, err = spky(capsys, "token", "--user", USER, "--yes", "--json", "--name", "env")
    assert (status, err) == (0, "")
    assert [r["name"] for r in listed(capsys, data_dir)] == ["env"]


# --- install ---------------------------------------------------------------------------------


def test_install_cursor_merges_into_the_global_config_keeping_other_servers(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    path = home / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text('{"mcpServers": {"other": {"command": "other-mcp"}}, "theme": "dark"}')
    before = path.stat().st_ino
    result = spky(capsys, "install", "--client", "cursor", "--token", TOKEN, "--url", URL)
    assert result == (0, f"Registered 'sp00ky' in {path}.\n", "")
    assert orjson.loads(path.read_bytes()) == {
        "mcpServers": {
            "other": {"command": "other-mcp"},
            "sp00ky": {"url": URL, "headers": {"Authorization": f"Bearer {TOKEN}"}},
        },
        "theme": "dark",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != before
    assert [p.name for p in path.parent.iterdir()] == ["mcp.json"]


def test_install_cursor_replaces_its_own_entry_on_a_second_run(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    spky(capsys, "install", "--client", "cursor", "--token", OLD_TOKEN, "--url", URL)
    spky(capsys, "install", "--client", "cursor", "--token", TOKEN, "--url", URL)
    config = orjson.loads((home / ".cursor" / "mcp.json").read_bytes())
    assert config == {
        "mcpServers": {"sp00ky": {"url": URL, "headers": {"Authorization": f"Bearer {TOKEN}"}}}
    }


def test_install_cursor_with_project_writes_an_environment_reference_never_the_token(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    result = spky(capsys, "install", "--client", "cursor", "--project", "--token", TOKEN)
    path = Path.cwd() / ".cursor" / "mcp.json"
    assert result == (
        0,
        "Cursor reads the token from SP00KY_MCP_TOKEN (a project's config may be committed): "
        "export SP00KY_MCP_TOKEN=mcp_live_… where Cursor starts.\n"
        f"Registered 'sp00ky' in {path}.\n",
        "",
    )
    assert orjson.loads(path.read_bytes()) == {
        "mcpServers": {
            "sp00ky": {
                "url": DEFAULT_URL,
                "headers": {"Authorization": "Bearer ${env:SP00KY_MCP_TOKEN}"},
            }
        }
    }
    assert TOKEN not in path.read_text()
    assert not (home / ".cursor").exists()


def test_install_cursor_with_project_needs_no_token(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    status, _, err = spky(capsys, "install", "--client", "cursor", "--project")
    assert (status, err) == (0, "")
    assert (Path.cwd() / ".cursor" / "mcp.json").exists()


def test_install_vscode_writes_a_password_prompt_and_never_the_token(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    result = spky(capsys, "install", "--client", "vscode", "--token", TOKEN)
    path = Path.cwd() / ".vscode" / "mcp.json"
    assert result == (
        0,
        f"VS Code will ask for the token when it starts the server.\n"
        f"Registered 'sp00ky' in {path}.\n",
        "",
    )
    assert orjson.loads(path.read_bytes()) == {
        "inputs": [
            {
                "type": "promptString",
                "id": "sp00ky-mcp-token",
                "description": "Sp00ky MCP token",
                "password": True,
            }
        ],
        "servers": {
            "sp00ky": {
                "type": "http",
                "url": DEFAULT_URL,
                "headers": {"Authorization": "Bearer ${input:sp00ky-mcp-token}"},
            }
        },
    }
    assert TOKEN not in path.read_text()


def test_install_vscode_needs_no_token(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    status, _, err = spky(capsys, "install", "--client", "vscode")
    assert (status, err) == (0, "")
    assert (Path.cwd() / ".vscode" / "mcp.json").exists()


def test_install_without_a_token_and_no_terminal_fails(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    assert spky(capsys, "install", "--client", "cursor") == (
        1,
        "",
        "spky: No token: pass --token or set SP00KY_MCP_TOKEN.\n",
    )
    assert not (home / ".cursor").exists()


def test_install_takes_the_token_and_url_from_the_environment(
    capsys: pytest.CaptureFixture[str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SP00KY_MCP_TOKEN", ENV_TOKEN)
    monkeypatch.setenv("SP00KY_MCP_URL", URL)
    assert spky(capsys, "install", "--client", "cursor")[0] == 0
    assert orjson.loads((home / ".cursor" / "mcp.json").read_bytes())["mcpServers"] == {
        "sp00ky": {"url": URL, "headers": {"Authorization": f"Bearer {ENV_TOKEN}"}}
    }


def test_install_claude_without_claude_on_path_prints_a_command_reading_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = spky(capsys, "install", "--client", "claude", "--token", TOKEN, "--url", URL)
    assert result == (
        0,
        "The claude CLI is not on your PATH; once it is, run this with SP00KY_MCP_TOKEN set "
        "to the token:\n"
        f"  claude mcp add --transport http --scope user sp00ky {URL} "
        '--header "Authorization: Bearer $SP00KY_MCP_TOKEN"\n',
        "",
    )


def test_the_printed_claude_command_hands_claude_the_token_from_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    _, out, _ = spky(capsys, "install", "--client", "claude", "--token", TOKEN, "--url", URL)
    printed = out.splitlines()[1].strip()
    argv = fake_claude(tmp_path / "bin")
    environment = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin",
        "SP00KY_MCP_TOKEN": TOKEN,
    }
    done = subprocess.run(["sh", "-c", printed], env=environment, check=False, timeout=20)
    assert done.returncode == 0
    assert argv.read_text().splitlines()[-2:] == ["--header", f"Authorization: Bearer {TOKEN}"]


def test_install_claude_runs_claude_mcp_add_with_exactly_those_arguments(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = fake_claude(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = spky(capsys, "install", "--client", "claude", "--token", TOKEN, "--url", URL)
    assert result == (
        0,
        "Registered 'sp00ky' with Claude Code (user scope). Verify with `claude mcp list`.\n",
        "",
    )
    assert argv.read_text().splitlines() == [
        "mcp",
        "add",
        "--transport",
        "http",
        "--scope",
        "user",
        "sp00ky",
        URL,
        "--header",
        f"Authorization: Bearer {TOKEN}",
    ]


def test_install_claude_reports_a_failing_claude_without_the_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_claude(tmp_path / "bin", status=1)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = spky(capsys, "install", "--client", "claude", "--token", TOKEN, "--url", URL)
    assert result == (
        1,
        "",
        "spky: `claude mcp add` failed; run it yourself: claude mcp add --transport http "
        f'--scope user sp00ky {URL} --header "Authorization: Bearer $SP00KY_MCP_TOKEN"\n',
    )


def test_token_with_install_runs_claude_mcp_add_with_the_new_token(
    capsys: pytest.CaptureFixture[str],
    data_dir: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = fake_claude(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    minted = mint(capsys, data_dir, "--install", "--client", "claude", "--url", URL)
    assert argv.read_text().splitlines()[-1] == f"Authorization: Bearer {minted['token']}"


def test_token_with_install_writes_the_cursor_config_and_keeps_the_json_clean(
    capsys: pytest.CaptureFixture[str], data_dir: str, home: Path
) -> None:
    minted = mint(capsys, data_dir, "--install", "--client", "cursor", "--url", URL)
    config = orjson.loads((home / ".cursor" / "mcp.json").read_bytes())
    assert config["mcpServers"]["sp00ky"]["headers"] == {
        "Authorization": f"Bearer {minted['token']}"
    }


# --- audit -----------------------------------------------------------------------------------


def calls_through(data_dir: str, *calls: tuple[str, str]) -> None:
    """Each (token, tool) called, without arguments, on a server over `data_dir`."""

    async def run() -> None:
        async with serving(data_dir) as env:
            for token, tool in calls:
                await env.call(token, tool, {})

    anyio.run(run)


def test_audit_lists_the_calls_of_each_token_oldest_first(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    laptop = mint(capsys, data_dir, "--name", "laptop")
    ci = mint(capsys, data_dir, "--name", "ci")
    calls_through(data_dir, (laptop["token"], "list_projects"), (ci["token"], "list_teams"))
    status, out, err = spky(capsys, "audit", "--data-dir", data_dir, "--user", USER, "--json")
    assert (status, err) == (0, "")
    rows = orjson.loads(out)
    assert [(r["token_name"], r["tool"], r["outcome"]) for r in rows] == [
        ("laptop", "list_projects", "ok"),
        ("ci", "list_teams", "ok"),
    ]
    assert set(rows[0]) == {
        "at",
        "token_id",
        "token_name",
        "tenant_id",
        "tool",
        "outcome",
        "duration_ms",
        "arguments_digest",
    }
    assert laptop["token"] not in out and ci["token"] not in out


def test_audit_narrows_to_one_token_and_to_a_moment_on(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    laptop = mint(capsys, data_dir, "--name", "laptop")
    ci = mint(capsys, data_dir, "--name", "ci")
    calls_through(data_dir, (laptop["token"], "list_projects"), (ci["token"], "list_teams"))
    base = ("audit", "--data-dir", data_dir, "--user", USER, "--json")
    _, by_name, _ = spky(capsys, *base, "--token", "ci")
    _, by_id, _ = spky(capsys, *base, "--token", laptop["id"])
    _, lately, _ = spky(capsys, *base, "--since", "1h")
    _, later, _ = spky(capsys, *base, "--since", "2999-01-01")
    assert [r["tool"] for r in orjson.loads(by_name)] == ["list_teams"]
    assert [r["tool"] for r in orjson.loads(by_id)] == ["list_projects"]
    assert len(orjson.loads(lately)) == 2
    assert orjson.loads(later) == []


def test_audit_as_a_table_and_its_refusals(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    laptop = mint(capsys, data_dir, "--name", "laptop")
    calls_through(data_dir, (laptop["token"], "list_teams"))
    status, out, _ = spky(capsys, "audit", "--data-dir", data_dir, "--user", USER)
    header, row = out.splitlines()
    assert status == 0
    assert header.split() == ["AT", "TOKEN", "TOOL", "OUTCOME", "MS", "TENANT"]
    assert row.split()[1:4] == ["laptop", "list_teams", "ok"]
    base = ("audit", "--data-dir", data_dir, "--user", USER)
    status, _, err = spky(capsys, *base, "--since", "yesterday")
    assert (status, err.strip()) == (
        1,
        "spky: --since 'yesterday' is neither an age nor a date; use e.g. 2h, 7d, 2026-12-01 or "
        "2026-12-01T09:30Z.",
    )
    status, _, err = spky(capsys, *base, "--since", "\uff12h")
    assert (status, err.strip()) == (
        1,
        "spky: --since '\uff12h' is neither an age nor a date; use e.g. 2h, 7d, 2026-12-01 or "
        "2026-12-01T09:30Z.",
    )
    status, _, err = spky(capsys, *base, "--token", "desktop")
    assert (status, err.strip()) == (1, "spky: No token 'desktop'; `spky mcp tokens` lists them.")


def test_install_writes_the_narrowing_into_the_servers_url(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    narrowing = ("--read-only", "--toolsets", "env, logs", "--tools", "list_env_vars")
    result = spky(
        capsys, "install", "--client", "cursor", "--token", TOKEN, "--url", URL, *narrowing
    )
    config = orjson.loads((home / ".cursor" / "mcp.json").read_bytes())
    assert result[0] == 0
    assert config["mcpServers"]["sp00ky"]["url"] == (
        URL + "?read_only=true&toolsets=env,logs&tools=list_env_vars"
    )


def test_install_refuses_a_toolset_it_does_not_know(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    status, _, err = spky(
        capsys, "install", "--client", "cursor", "--token", TOKEN, "--toolsets", "env,mail"
    )
    assert (status, err.strip()) == (
        1,
        "spky: --toolsets 'env,mail' names mail unknown; use backups, billing, deployments, "
        "domains, env, links, logs, projects, teams, tenants, vault.",
    )
    assert not (home / ".cursor" / "mcp.json").exists()


def stdio_start() -> list[str]:
    """How `install --stdio` starts the server: this spky, else this Python's module."""
    spky_path = shutil.which("spky")
    return [spky_path] if spky_path else [sys.executable, "-m", "sp00ky_mcp"]


def test_install_cursor_with_stdio_writes_the_command_and_the_token_in_its_environment(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    result = spky(capsys, "install", "--client", "cursor", "--token", TOKEN, "--stdio")
    start = stdio_start()
    config = orjson.loads((home / ".cursor" / "mcp.json").read_bytes())
    assert result[0] == 0
    assert config["mcpServers"]["sp00ky"] == {
        "command": start[0],
        "args": [*start[1:], "mcp", "stdio"],
        "env": {"SP00KY_MCP_TOKEN": TOKEN},
    }


def test_install_vscode_with_stdio_prompts_for_the_token_it_hands_the_command(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    spky(capsys, "install", "--client", "vscode", "--token", TOKEN, "--stdio")
    start = stdio_start()
    config = orjson.loads((Path.cwd() / ".vscode" / "mcp.json").read_bytes())
    assert config["servers"]["sp00ky"] == {
        "type": "stdio",
        "command": start[0],
        "args": [*start[1:], "mcp", "stdio"],
        "env": {"SP00KY_MCP_TOKEN": "${input:sp00ky-mcp-token}"},
    }
    assert TOKEN not in (Path.cwd() / ".vscode" / "mcp.json").read_text()


def test_install_claude_with_stdio_runs_claude_mcp_add_with_the_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = fake_claude(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    start = stdio_start()
    result = spky(capsys, "install", "--client", "claude", "--token", TOKEN, "--stdio")
    assert result[0] == 0
    assert argv.read_text().splitlines() == [
        "mcp",
        "add",
        "--scope",
        "user",
        "-e",
        f"SP00KY_MCP_TOKEN={TOKEN}",
        "sp00ky",
        "--",
        *start,
        "mcp",
        "stdio",
    ]


def test_install_with_stdio_refuses_a_url_or_a_narrowing(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    status, _, err = spky(
        capsys, "install", "--client", "cursor", "--token", TOKEN, "--stdio", "--read-only"
    )
    assert (status, err.strip()) == (
        1,
        "spky: --stdio starts the server for the editor, with no URL to narrow: drop --url, "
        "--read-only, --toolsets and --tools, and mint a token with fewer scopes instead.",
    )


# --- invitations -----------------------------------------------------------------------------


def invited(data_dir: str, email: str, teams: tuple[str, ...]) -> list[str]:
    """Ada owns each of `teams` and invites `email` to it as a member: the invitation ids."""

    async def run() -> list[str]:
        async with serving(data_dir) as env:
            ada = await env.user(USER)
            token = await env.token(ada)
            ids = []
            for name in teams:
                tenant_id = await env.make_team({ada: "owner"}, name=name)
                arguments = {"tenant_id": tenant_id, "email": email, "role": "member"}
                result = await env.structured(token, "invite_team_member", arguments)
                ids.append(result["invitation_id"])
            return ids

    return anyio.run(run)


def test_an_invitee_sees_their_invitations_and_accepts_one_and_declines_the_other(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    bob = "bob@example.com"
    acme, globex = invited(data_dir, bob, ("Acme", "Globex"))
    base = ("invitations", "--data-dir", data_dir, "--user", bob)
    status, out, _ = spky(capsys, *base, "--json")
    listed = orjson.loads(out)
    assert status == 0
    assert [(r["invitation_id"], r["team"], r["role"]) for r in listed] == [
        (acme, "Acme", "member"),
        (globex, "Globex", "member"),
    ]
    assert spky(capsys, *base, "accept", acme) == (
        0,
        "Joined team ten_team_acme as member.\n",
        "",
    )
    assert spky(capsys, *base, "decline", globex) == (
        0,
        "Declined the invitation to team ten_team_globex.\n",
        "",
    )
    assert spky(capsys, *base) == (0, f"No invitations for {bob}.\n", "")


def test_an_invitation_for_someone_else_cannot_be_answered(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    (acme,) = invited(data_dir, "bob@example.com", ("Acme",))
    base = ("invitations", "--data-dir", data_dir, "--user", "mallory@example.com")
    assert spky(capsys, *base, "accept", acme) == (
        1,
        "",
        f"spky: No pending invitation '{acme}' for this user. `spky mcp invitations` lists "
        "yours.\n",
    )
    assert spky(capsys, *base, "accept") == (
        1,
        "",
        "spky: Say which invitation: spky mcp invitations accept ID.\n",
    )


def test_install_reads_an_editor_config_with_comments_and_trailing_commas(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    path = Path.cwd() / ".vscode" / "mcp.json"
    path.parent.mkdir()
    path.write_text(
        '{\n  // my servers\n  "servers": {"other": {"type": "stdio", "command": "x",},},\n'
        '  /* prompts */ "inputs": [],\n}\n'
    )
    first = spky(capsys, "install", "--client", "vscode", "--token", TOKEN)
    once = path.read_bytes()
    second = spky(capsys, "install", "--client", "vscode", "--token", TOKEN)
    config = orjson.loads(path.read_bytes())
    assert (first[0], second[0]) == (0, 0)
    assert path.read_bytes() == once  # the same config again: nothing changes
    assert config["servers"]["other"] == {"type": "stdio", "command": "x"}
    assert config["servers"]["sp00ky"]["url"] == DEFAULT_URL


def test_install_claude_with_project_registers_at_project_scope_reading_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = fake_claude(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = spky(capsys, "install", "--client", "claude", "--project", "--url", URL)
    assert result == (
        0,
        "Registered 'sp00ky' with Claude Code (project scope; it reads the token from "
        "SP00KY_MCP_TOKEN). Verify with `claude mcp list`.\n",
        "",
    )
    assert argv.read_text().splitlines() == [
        "mcp",
        "add",
        "--transport",
        "http",
        "--scope",
        "project",
        "sp00ky",
        URL,
        "--header",
        "Authorization: Bearer ${SP00KY_MCP_TOKEN}",
    ]


# --- install by URL alone (OAuth sign-in) -----------------------------------------------------

SIGN_IN_NOTE = (
    "The editor signs you in to Sp00ky in your browser when it first connects (set your "
    "password with `spky mcp user passwd EMAIL` on the server).\n"
)


def test_install_cursor_with_oauth_writes_the_url_alone(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    result = spky(capsys, "install", "--client", "cursor", "--oauth", "--url", URL)
    path = home / ".cursor" / "mcp.json"
    assert result == (0, f"Registered 'sp00ky' in {path}.\n" + SIGN_IN_NOTE, "")
    assert orjson.loads(path.read_bytes()) == {"mcpServers": {"sp00ky": {"url": URL}}}


def test_install_vscode_with_oauth_asks_for_no_token(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    result = spky(capsys, "install", "--client", "vscode", "--oauth", "--url", URL)
    path = Path.cwd() / ".vscode" / "mcp.json"
    assert result == (0, f"Registered 'sp00ky' in {path}.\n" + SIGN_IN_NOTE, "")
    assert orjson.loads(path.read_bytes()) == {
        "inputs": [],
        "servers": {"sp00ky": {"type": "http", "url": URL}},
    }


def test_install_claude_with_oauth_adds_the_url_without_a_header(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = fake_claude(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    status, _, err = spky(capsys, "install", "--client", "claude", "--oauth", "--url", URL)
    assert (status, err) == (0, "")
    assert argv.read_text().splitlines() == [
        "mcp",
        "add",
        "--transport",
        "http",
        "--scope",
        "user",
        "sp00ky",
        URL,
    ]


def test_install_with_oauth_refuses_a_token_or_stdio(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    for extra in (("--token", TOKEN), ("--stdio",)):
        status, _, err = spky(capsys, "install", "--client", "cursor", "--oauth", *extra)
        assert (status, err) == (
            1,
            "spky: --oauth registers the URL alone, for the editor to sign in: drop --stdio "
            "and --token.\n",
        )
    assert not (home / ".cursor").exists()


def test_user_passwd_sets_the_password_a_user_signs_in_with(
    capsys: pytest.CaptureFixture[str], data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough password\n"))
    result = spky(
        capsys, "user", "passwd", "grace@example.com", "--data-dir", data_dir, "--password-stdin"
    )
    assert result == (
        0,
        "Password set for grace@example.com; they can now sign in from an MCP client.\n",
        "",
    )

    async def stored() -> str | None:
        store = await SqliteStore.open(data_dir)
        try:
            user = await store.reads.accounts.user_by_email("grace@example.com")
            assert user is not None
            return await store.reads.oauth.password(user.id)
        finally:
            await store.close()

    hashed = anyio.run(stored)
    assert hashed is not None and passwords.verifies("a long enough password", hashed)


def test_user_passwd_refuses_a_short_password_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    result = spky(
        capsys, "user", "passwd", "grace@example.com", "--data-dir", data_dir, "--password-stdin"
    )
    assert result == (1, "", "spky: A password needs at least 10 characters.\n")
