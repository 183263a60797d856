"""The editor configs against the formats each editor documents: Claude Code's `claude mcp add`,
Cursor's `mcp.json` (`mcpServers`) and VS Code's `.vscode/mcp.json` (`servers` + `inputs`)."""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

import orjson
import pytest

from sp00ky_mcp.cli import editors
from sp00ky_mcp.cli.commands import main
from sp00ky_mcp.product import tokens

URL = "https://mcp.example.test/v1/mcp"
TOKEN = tokens.mint()


# --- Claude Code -----------------------------------------------------------------------------


def test_the_claude_command_registers_an_http_server_at_user_scope_with_the_header() -> None:
    assert editors.claude_command(URL, TOKEN) == [
        "claude",
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


def test_the_claude_command_text_is_quoted_for_a_shell() -> None:
    text = editors.claude_command_text(URL, TOKEN)
    assert text == (
        f"claude mcp add --transport http --scope user sp00ky {URL} "
        f"--header 'Authorization: Bearer {TOKEN}'"
    )
    assert shlex.split(text) == editors.claude_command(URL, TOKEN)


def test_a_url_with_shell_characters_stays_one_argument() -> None:
    url = "http://127.0.0.1:8765/v1/mcp?a=1&b=2"
    assert shlex.split(editors.claude_command_text(url, TOKEN))[8] == url


def test_the_command_from_the_environment_double_quotes_the_header_and_no_token() -> None:
    url = "http://127.0.0.1:8765/v1/mcp?a=1&b=2"
    text = editors.claude_command_from_environment(url)
    assert text == (
        "claude mcp add --transport http --scope user sp00ky "
        "'http://127.0.0.1:8765/v1/mcp?a=1&b=2' "
        '--header "Authorization: Bearer $SP00KY_MCP_TOKEN"'
    )
    # Before the shell's expansion, the words are those of the command with the variable.
    assert shlex.split(text) == editors.claude_command(url, "$SP00KY_MCP_TOKEN")


# --- Cursor ----------------------------------------------------------------------------------


def test_the_cursor_entry_has_the_documented_shape() -> None:
    assert editors.merge_cursor({}, URL, TOKEN) == {
        "mcpServers": {"sp00ky": {"url": URL, "headers": {"Authorization": f"Bearer {TOKEN}"}}}
    }


def test_merging_into_cursor_keeps_other_servers_and_keys() -> None:
    existing = {"mcpServers": {"github": {"command": "gh-mcp", "args": ["--x"]}}, "other": [1]}
    merged = editors.merge_cursor(existing, URL, TOKEN)
    assert merged == {
        "mcpServers": {
            "github": {"command": "gh-mcp", "args": ["--x"]},
            "sp00ky": {"url": URL, "headers": {"Authorization": f"Bearer {TOKEN}"}},
        },
        "other": [1],
    }
    assert existing == {
        "mcpServers": {"github": {"command": "gh-mcp", "args": ["--x"]}},
        "other": [1],
    }


def test_merging_into_cursor_replaces_a_servers_value_that_is_not_an_object() -> None:
    assert editors.merge_cursor({"mcpServers": []}, URL, TOKEN) == editors.merge_cursor(
        {}, URL, TOKEN
    )


@pytest.mark.parametrize(
    ("merge", "member", "value", "shape"),
    [
        ("cursor", "mcpServers", [1, 2], "an object"),
        ("vscode", "servers", "mine", "an object"),
        ("vscode", "inputs", 5, "a list"),
        ("vscode", "inputs", {"mine": {"id": "x"}}, "a list"),
    ],
)
def test_a_member_of_another_type_holding_something_is_refused_not_dropped(
    merge: str, member: str, value: object, shape: str
) -> None:
    with pytest.raises(editors.EditorError) as caught:
        if merge == "cursor":
            editors.merge_cursor({member: value}, URL, TOKEN)
        else:
            editors.merge_vscode({member: value}, URL)
    refusal = f'"{member}" in the config is not {shape}; fix or move the file first.'
    assert str(caught.value) == refusal


def test_cursor_configs_live_in_the_home_or_the_project() -> None:
    home, cwd = Path("/home/ada"), Path("/src/app")
    assert editors.cursor_path(False, home, cwd) == Path("/home/ada/.cursor/mcp.json")
    assert editors.cursor_path(True, home, cwd) == Path("/src/app/.cursor/mcp.json")


# --- VS Code ---------------------------------------------------------------------------------


def test_the_vscode_config_has_the_documented_shape_and_a_password_input() -> None:
    assert editors.merge_vscode({}, URL) == {
        "servers": {
            "sp00ky": {
                "type": "http",
                "url": URL,
                "headers": {"Authorization": "Bearer ${input:sp00ky-mcp-token}"},
            }
        },
        "inputs": [
            {
                "type": "promptString",
                "id": "sp00ky-mcp-token",
                "description": "Sp00ky MCP token",
                "password": True,
            }
        ],
    }


def test_the_vscode_header_refers_to_the_input_it_declares() -> None:
    config = editors.vscode_config(URL)
    header = config["servers"]["sp00ky"]["headers"]["Authorization"]
    assert header == f"Bearer ${{input:{config['inputs'][0]['id']}}}"


def test_merging_into_vscode_keeps_other_servers_and_inputs_and_replaces_its_own() -> None:
    other_input = {"type": "promptString", "id": "gh-token", "description": "GitHub"}
    existing = {
        "servers": {"github": {"type": "stdio", "command": "gh-mcp"}},
        "inputs": [
            other_input,
            {"type": "promptString", "id": "sp00ky-mcp-token", "description": "old"},
        ],
    }
    merged = editors.merge_vscode(existing, URL)
    assert list(merged["servers"]) == ["github", "sp00ky"]
    assert merged["servers"]["github"] == {"type": "stdio", "command": "gh-mcp"}
    assert merged["inputs"] == [other_input, *editors.vscode_config(URL)["inputs"]]


def test_the_vscode_config_lives_in_the_workspace() -> None:
    assert editors.vscode_path(Path("/src/app")) == Path("/src/app/.vscode/mcp.json")


# --- reading and writing ---------------------------------------------------------------------


def test_a_missing_config_reads_as_empty(tmp_path: Path) -> None:
    assert editors.read_json(tmp_path / "mcp.json") == {}


def test_invalid_json_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text('{"mcpServers": {')
    with pytest.raises(editors.EditorError) as caught:
        editors.read_json(path)
    assert str(caught.value) == f"{path} is not valid JSON; fix or move it, then run this again."


def test_a_config_starting_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_bytes(b'\xef\xbb\xbf{"servers": {}}')
    assert editors.read_json(path) == {"servers": {}}


def test_json_that_is_not_an_object_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text("[1, 2]")
    with pytest.raises(editors.EditorError) as caught:
        editors.read_json(path)
    assert str(caught.value) == f"{path} does not hold a JSON object; fix or move it first."


@pytest.mark.parametrize(
    ("client", "where"), [("cursor", ".cursor/mcp.json"), ("vscode", ".vscode/mcp.json")]
)
def test_install_over_invalid_json_fails_and_leaves_the_file_untouched(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: str,
    where: str,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / where
    path.parent.mkdir()
    path.write_bytes(b'{"servers": {,}}  // my notes')
    path.chmod(0o644)
    status = main(["mcp", "install", "--client", client, "--token", TOKEN])
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert err == f"spky: {path} is not valid JSON; fix or move it, then run this again.\n"
    assert path.read_bytes() == b'{"servers": {,}}  // my notes'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["mcp.json"]


def test_a_config_readable_by_others_is_replaced_by_one_readable_by_the_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mcp.json"
    path.write_text("{}")
    path.chmod(0o666)
    editors.write_private_json(path, {"x": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_symlinked_config_is_written_where_the_link_points_and_the_link_stays(
    tmp_path: Path,
) -> None:
    target = tmp_path / "dotfiles" / "mcp.json"
    target.parent.mkdir()
    target.write_text("{}")
    link = tmp_path / "mcp.json"
    link.symlink_to(target)
    editors.write_private_json(link, {"x": 1})
    assert link.is_symlink()
    assert orjson.loads(target.read_bytes()) == {"x": 1}


@pytest.mark.parametrize("marker", ["directory", "file"])
def test_a_path_below_a_git_entry_is_inside_that_work_tree(tmp_path: Path, marker: str) -> None:
    # A worktree or a submodule has a .git file, a plain clone a .git directory.
    if marker == "directory":
        (tmp_path / ".git").mkdir()
    else:
        (tmp_path / ".git").write_text("gitdir: /elsewhere\n")
    assert editors.git_work_tree(tmp_path / ".cursor" / "mcp.json") == tmp_path


def test_a_path_with_no_git_entry_above_it_is_in_no_work_tree(tmp_path: Path) -> None:
    assert editors.git_work_tree(tmp_path / ".cursor" / "mcp.json") is None


def test_a_written_config_is_private_indented_json_ending_in_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "mcp.json"
    editors.write_private_json(path, {"a": {"b": 1}})
    assert path.read_bytes() == b'{\n  "a": {\n    "b": 1\n  }\n}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_config_is_replaced_by_rename_so_readers_never_see_half_a_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mcp.json"
    path.write_text("{}")
    before = path.stat().st_ino
    editors.write_private_json(path, {"x": 1})
    assert path.stat().st_ino != before
    assert orjson.loads(path.read_bytes()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["mcp.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mcp.json"
    path.write_text('{"old": true}')

    def disk_full(descriptor: int) -> None:
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(editors.EditorError) as caught:
        editors.write_private_json(path, {"new": True})
    assert str(caught.value) == f"Cannot write {path}: No space left on device."
    assert path.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["mcp.json"]


def test_a_directory_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(editors.EditorError) as caught:
        editors.write_private_json(blocker / "mcp.json", {})
    assert str(caught.value) == (
        f"Cannot write {blocker / 'mcp.json'}: {blocker} is a file, not a directory."
    )


def test_a_config_nested_too_deep_to_write_back_is_refused_and_no_temporary_file_left(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mcp.json"
    deep: object = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(editors.EditorError) as caught:
        editors.write_private_json(path, {"a": deep})
    assert str(caught.value) == f"{path} nests too deep to be written back; fix or move it first."
    assert list(tmp_path.iterdir()) == []


def test_a_config_nested_too_deep_to_read_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    text = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text(text)
    with pytest.raises(editors.EditorError) as caught:
        editors.read_json(path)
    assert str(caught.value) == f"{path} nests too deep to be read; fix or move it first."
    assert path.read_text() == text


def test_the_users_own_entries_are_written_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(
        '{"mine": {"big": 123456789012345678901234567890, "exact": 0.1, "text": "h\\u00e9 \\ud800",'
        ' "nested": [1, {"x": null}]}}'
    )
    editors.write_private_json(path, editors.merge_cursor(editors.read_json(path), URL, TOKEN))
    written = editors.read_json(path)
    assert written["mine"] == {
        "big": 123456789012345678901234567890,
        "exact": 0.1,
        "text": "h\u00e9 \ud800",
        "nested": [1, {"x": None}],
    }
    assert "sp00ky" in written["mcpServers"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"a": NaN}', "is not valid JSON; fix or move it, then run this again."),
        ('{"a": -Infinity}', "is not valid JSON; fix or move it, then run this again."),
        ('{"a": 1e400}', "holds a number too large to write back (1e400); fix or move it first."),
    ],
)
def test_a_config_that_could_not_be_written_back_as_json_is_refused(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(text)
    with pytest.raises(editors.EditorError) as caught:
        editors.read_json(path)
    assert str(caught.value) == f"{path} {problem}"
    assert path.read_text() == text


def test_a_loop_of_symlinks_is_refused_by_install(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    config = tmp_path / ".cursor" / "mcp.json"
    config.parent.mkdir()
    config.symlink_to(config.parent / "other.json")
    (config.parent / "other.json").symlink_to(config)
    status = main(["mcp", "install", "--client", "cursor", "--token", TOKEN])
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert err == f"spky: {config} is a loop of symbolic links; fix or remove it.\n"
