"""Every `serve` setting also comes from an SP00KY_MCP_* variable and from a TOML file given
with --config; a flag wins over the environment, the environment over the file, the file over
the defaults; `--print-config` shows what is in effect, with credentials masked, and a bad
value is refused with a sentence naming where it came from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sp00ky_mcp.cli.commands import main
from sp00ky_mcp.product.store.port import user_data_dir

Run = tuple[int, str, str]


def serve(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    status = main(["mcp", "serve", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def settings_of(out: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in out.splitlines())


def test_a_flag_wins_over_the_environment_which_wins_over_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sp00ky-mcp.toml"
    config.write_text('port = 9000\nlog-level = "debug"\nrate-burst = 7\nmetrics = true\n')
    monkeypatch.setenv("SP00KY_MCP_PORT", "9100")
    monkeypatch.setenv("SP00KY_MCP_LOG_LEVEL", "warning")
    status, out, err = serve(
        capsys, "--config", str(config), "--log-level", "error", "--print-config"
    )
    shown = settings_of(out)
    assert (status, err) == (0, "")
    assert (shown["port"], shown["log-level"], shown["rate-burst"], shown["metrics"]) == (
        "9100",
        '"error"',
        "7",
        "true",
    )
    assert shown["host"] == '"127.0.0.1"'  # the default, from nowhere else


def test_the_config_file_may_also_be_named_by_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('allowed-origin = ["https://a.example", "https://b.example"]\n')
    monkeypatch.setenv("SP00KY_MCP_CONFIG", str(config))
    monkeypatch.setenv("SP00KY_MCP_ALLOWED_HOST", "mcp.example.com, other.example.com")
    _, out, _ = serve(capsys, "--print-config")
    shown = settings_of(out)
    assert shown["allowed-origin"] == '["https://a.example", "https://b.example"]'
    assert shown["allowed-host"] == '["mcp.example.com", "other.example.com"]'


def test_trusted_proxies_come_from_the_environment_as_networks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SP00KY_MCP_TRUSTED_PROXY", "10.1.2.3/8, ::1")
    _, out, _ = serve(capsys, "--print-config")
    assert settings_of(out)["trusted-proxy"] == '["10.0.0.0/8", "::1/128"]'


def test_credentials_in_urls_are_masked_when_printed(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://sp00ky:hunter22@db.internal/sp00ky"
    _, out, _ = serve(capsys, "--database-url", url, "--print-config")
    assert settings_of(out)["database-url"] == '"postgresql://sp00ky:***@db.internal/sp00ky"'
    assert "hunter22" not in out


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("SP00KY_MCP_PORT", "abc", "SP00KY_MCP_PORT: 'abc' is not a TCP port; use 0 to 65535."),
        (
            "SP00KY_MCP_LOG_FORMAT",
            "xml",
            "SP00KY_MCP_LOG_FORMAT: 'xml' is not one of text, json.",
        ),
        ("SP00KY_MCP_METRICS", "maybe", "SP00KY_MCP_METRICS: 'maybe' is not true or false."),
    ],
)
def test_a_bad_value_in_the_environment_is_refused_naming_the_variable(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    said: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert serve(capsys, "--print-config") == (1, "", f"spky: {said}\n")


def test_a_key_the_file_should_not_hold_is_refused_naming_the_settings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "sp00ky-mcp.toml"
    config.write_text("colour = 1\n")
    status, _, err = serve(capsys, "--config", str(config), "--print-config")
    assert status == 1
    assert err.startswith(f"spky: {config}: 'colour' is not a setting of serve; the settings: ")


def test_a_file_that_is_not_toml_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "sp00ky-mcp.toml"
    config.write_text("port = = 1\n")
    status, _, err = serve(capsys, "--config", str(config), "--print-config")
    assert status == 1 and err.startswith(f"spky: The config file {config} is not valid TOML: ")


@pytest.mark.parametrize(
    ("variable", "value", "oauth"),
    [("SP00KY_MCP_OAUTH", "false", "false"), ("SP00KY_MCP_OAUTH", "0", "false")],
)
def test_a_setting_a_no_flag_turns_off_is_read_as_true_or_false(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    oauth: str,
) -> None:
    """`--no-oauth`'s setting is `oauth`; "false" was once kept as a string, which is true."""
    monkeypatch.setenv(variable, value)
    _, out, _ = serve(capsys, "--print-config")
    assert settings_of(out)["oauth"] == oauth


def test_what_print_config_prints_is_a_config_file_that_gives_the_same(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, printed, _ = serve(capsys, "--no-oauth", "--port", "9001", "--metrics", "--print-config")
    config = tmp_path / "printed.toml"
    config.write_text(printed)
    status, again, err = serve(capsys, "--config", str(config), "--print-config")
    assert (status, err, again) == (0, "", printed)


def test_an_abbreviated_flag_is_refused_rather_than_lose_to_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SP00KY_MCP_LOG_LEVEL", "error")
    with pytest.raises(SystemExit) as exited:
        serve(capsys, "--log-l", "debug", "--print-config")
    assert exited.value.code == 2
    assert "unrecognized arguments: --log-l debug" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        (
            "postgresql://u@db/x?password=S3CRET&sslmode=require",
            '"postgresql://u@db/x?password=***&sslmode=require"',
        ),
        ("redis://h:6379/0?password=R3DIS", '"redis://h:6379/0?password=***"'),
        ("redis://:R3DIS@[::1/0", '"redis://***"'),  # cannot be split: nothing of it shown
        ("postgresql://u:S3CRET@127.0.0.1:99999/x", '"postgresql://***"'),
    ],
)
def test_passwords_anywhere_in_a_url_are_masked_when_printed(
    capsys: pytest.CaptureFixture[str], given: str, shown: str
) -> None:
    setting = "database-url" if given.startswith("postgresql") else "redis-url"
    _, out, _ = serve(capsys, f"--{setting}", given, "--print-config")
    assert f"{setting} = {shown}" in out.splitlines()
    assert "S3CRET" not in out and "R3DIS" not in out


def test_control_characters_in_a_printed_setting_are_escaped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SP00KY_MCP_USER", "x\nport = 1\x1b[2J")
    _, out, _ = serve(capsys, "--print-config")
    assert settings_of(out)["user"] == '"x\\nport = 1\\u001b[2J"'
    assert "port = 1\n" not in out


@pytest.mark.parametrize("kind", ["fifo", "not utf-8"])
def test_a_config_file_that_cannot_be_read_as_toml_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    config = tmp_path / "sp00ky-mcp.toml"
    if kind == "fifo":
        os.mkfifo(config)  # once waited on for ever
        said = f"spky: The config file {config} is not a regular file; pass a file.\n"
    else:
        config.write_bytes(b"port = 1\n\xff = 2\n")
        said = f"spky: The config file {config} is not valid TOML: "
    status, out, err = serve(capsys, "--config", str(config), "--print-config")
    assert (status, out) == (1, "") and err.startswith(said)


@pytest.mark.parametrize(
    ("platform", "environ", "expected"),
    [
        ("linux", {}, "/home/ada/.local/share/sp00ky-mcp"),
        ("linux", {"XDG_DATA_HOME": "/data"}, "/data/sp00ky-mcp"),
        ("linux", {"XDG_DATA_HOME": "relative/dir"}, "/home/ada/.local/share/sp00ky-mcp"),
        ("freebsd14", {}, "/home/ada/.local/share/sp00ky-mcp"),
        ("darwin", {"XDG_DATA_HOME": "/data"}, "/home/ada/Library/Application Support/sp00ky-mcp"),
        (
            "win32",
            {"LOCALAPPDATA": "/c/Users/ada/AppData/Local"},
            "/c/Users/ada/AppData/Local/sp00ky-mcp",
        ),
        ("win32", {}, "/home/ada/AppData/Local/sp00ky-mcp"),
    ],
)
def test_the_data_directory_follows_each_platforms_rules(
    platform: str, environ: dict[str, str], expected: str
) -> None:
    assert user_data_dir(platform, environ, Path("/home/ada")) == Path(expected)
