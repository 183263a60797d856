"""What `spky` promises a new or careless user: every mistake gets one clear line on stderr and
the right exit status (2 for usage, as argparse reports it; 1 for a refused operation), never a
traceback, and a refused `spky mcp token` leaves no token (nor store) behind."""

from __future__ import annotations

import errno
import importlib.metadata
import os
import re
import select
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from sp00ky_mcp.cli import workers
from sp00ky_mcp.cli.commands import build_parser, config_from, main
from sp00ky_mcp.product import tokens

from .faults_support import PROCESS_BOUND, Served, serve_argv
from .test_cli import PYTHON_M, TOKEN, URL, USER, fake_claude, listed, mint, spky

CANCELLED = "spky: cancelled; nothing was changed."


pytestmark = pytest.mark.usefixtures("cli_environment")


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The last line argparse prints for a usage error; the status must be 2."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    assert (exited.value.code, out) == (2, "")
    return err.splitlines()[-1]


def process_environment(home: Path) -> dict[str, str]:
    environment = {**os.environ, "HOME": str(home)}
    for name in ("SP00KY_MCP_URL", "SP00KY_MCP_TOKEN", "SP00KY_MCP_DATA_DIR"):
        environment.pop(name, None)
    return environment


# --- version and help ------------------------------------------------------------------------


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr() == (f"spky {importlib.metadata.version('sp00ky-mcp')}\n", "")


@pytest.mark.parametrize(
    ("argv", "usage"),
    [([], "usage: spky [-h] [--version] {mcp} ..."), (["mcp"], "usage: spky mcp [-h]")],
)
def test_a_bare_command_prints_its_help_and_succeeds(
    capsys: pytest.CaptureFixture[str], argv: list[str], usage: str
) -> None:
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith(usage)
    assert err == ""


# --- serve -----------------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path, busy_port: int) -> None:
    argv = [*PYTHON_M, "mcp", "serve", "--port", str(busy_port), "--data-dir", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=PROCESS_BOUND)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"spky: Port {busy_port} on 127.0.0.1 is already in use; stop the other server or "
        "pass --port.\n"
    )


def test_a_metrics_port_in_use_says_so_in_one_line(tmp_path: Path, busy_port: int) -> None:
    argv = [*PYTHON_M, "mcp", "serve", "--port", "0", "--metrics-port", str(busy_port)]
    done = subprocess.run(
        [*argv, "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=PROCESS_BOUND
    )
    assert (done.returncode, done.stderr) == (
        1,
        f"spky: The metrics port {busy_port} on 127.0.0.1 is already in use; pass another "
        "--metrics-port.\n",
    )


def test_a_metrics_port_that_is_the_servers_own_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["mcp", "serve", "--port", "8800", "--metrics-port", "8800"]) == 1
    assert capsys.readouterr() == (
        "",
        "spky: --metrics-port is the port the server itself listens on; pass another.\n",
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "127.attacker.example"])
def test_the_conformance_profile_binds_only_a_loopback_address(
    capsys: pytest.CaptureFixture[str], host: str
) -> None:
    """It has no authentication; a name that merely starts with "127." once passed."""
    status = main(["mcp", "serve", "--profile", "conformance", "--host", host, "--port", "0"])
    assert status == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "spky: The conformance profile has no authentication, so it only binds a loopback "
        "address; drop --host or use 127.0.0.1."
    )


def test_with_json_logs_the_plain_http_warning_is_a_json_line(tmp_path: Path) -> None:
    argv = [*PYTHON_M, "mcp", "serve", "--host", "0.0.0.0", "--port", "0", "--log-format", "json"]
    in_the_way = tmp_path / "file"
    in_the_way.write_text("")  # a data directory that is a file: it stops at once
    done = subprocess.run(
        [*argv, "--data-dir", str(in_the_way)],
        capture_output=True,
        text=True,
        timeout=PROCESS_BOUND,
    )
    first = orjson.loads(done.stderr.splitlines()[0])
    assert (first["kind"], first["level"]) == ("log", "warning")
    assert first["message"].startswith("0.0.0.0 is reachable from other machines")


def test_workers_refuse_a_port_another_server_listens_on(busy_port: int) -> None:
    """SO_REUSEPORT alone would share it with that server, connection by connection."""
    with pytest.raises(OSError) as refused:
        workers.reserve_port("127.0.0.1", busy_port)
    assert refused.value.errno == errno.EADDRINUSE


# "²" once got Python's own error text, "٣" (an Arabic-Indic digit) was port 3.
@pytest.mark.parametrize("port", ["70000", "-1", "http", "²", "٣"])
def test_serve_refuses_a_port_outside_the_tcp_range(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    assert usage_error(capsys, "mcp", "serve", f"--port={port}") == (
        f"spky mcp serve: error: argument --port: '{port}' is not a TCP port; use 0 to 65535."
    )


@pytest.mark.parametrize("url", ["mcp.example.com", "ftp://mcp.example.com", "https://", "/v1"])
def test_serve_refuses_a_public_url_that_is_not_an_absolute_http_url(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    assert usage_error(capsys, "mcp", "serve", f"--public-url={url}") == (
        f"spky mcp serve: error: argument --public-url: '{url}' is not an absolute http(s) "
        "URL, such as https://mcp.example.com."
    )


@pytest.mark.parametrize("origin", ["app.example.com", "https://app.example.com/page"])
def test_serve_refuses_an_allowed_origin_that_is_not_an_origin(
    capsys: pytest.CaptureFixture[str], origin: str
) -> None:
    assert usage_error(capsys, "mcp", "serve", f"--allowed-origin={origin}") == (
        f"spky mcp serve: error: argument --allowed-origin: '{origin}' is not an origin; use "
        "scheme://host[:port], such as https://app.example.com."
    )


@pytest.mark.parametrize("host", ["https://mcp.example.com", "mcp.example.com:443", ""])
def test_serve_refuses_an_allowed_host_that_no_host_header_could_match(
    capsys: pytest.CaptureFixture[str], host: str
) -> None:
    assert usage_error(capsys, "mcp", "serve", f"--allowed-host={host}") == (
        f"spky mcp serve: error: argument --allowed-host: '{host}' is not a host name; give "
        "the name alone, such as mcp.example.com (no scheme, port or path)."
    )


@pytest.mark.parametrize("proxy", ["proxy.internal", "10.0.0.0/33", ""])
def test_serve_refuses_a_trusted_proxy_that_is_not_an_address_or_network(
    capsys: pytest.CaptureFixture[str], proxy: str
) -> None:
    assert usage_error(capsys, "mcp", "serve", f"--trusted-proxy={proxy}") == (
        f"spky mcp serve: error: argument --trusted-proxy: '{proxy}' is not an address or "
        "network; give one such as 10.0.0.0/8 or 127.0.0.1."
    )


@pytest.mark.parametrize("given", ["https://mcp.example.com", "https://mcp.example.com/v1/mcp"])
def test_behind_a_proxy_the_first_run_notes_give_the_public_url(tmp_path: Path, given: str) -> None:
    server = Served([*serve_argv(tmp_path), "--public-url", given])
    try:
        server.listening()
        more = server.line(re.compile(r"^More tokens: spky mcp token --data-dir \S+ --url (\S+)$"))
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.close()
    assert more.group(1) == "https://mcp.example.com/v1/mcp"


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--rate-per-minute", "0", "'0' is not a number above 0."),
        ("--rate-per-minute", "nan", "'nan' is not a number above 0."),
        ("--rate-burst", "0", "'0' is not a whole number above 0."),
        ("--host", "", "an address is needed, such as 127.0.0.1 or 0.0.0.0."),
        ("--max-connections-per-peer", "-1", "'-1' is not a whole number (0 or more)."),
        # Control characters: shown escaped, never acted on by the terminal.
        (
            "--public-url",
            "https://x\x07y",
            "'https://x\\x07y' is not an absolute http(s) URL, such as https://mcp.example.com.",
        ),
        (
            "--allowed-origin",
            "https://a.example\x1b[0m",
            "'https://a.example\\x1b[0m' is not an origin; use scheme://host[:port], such as "
            "https://app.example.com.",
        ),
    ],
)
def test_serve_refuses_values_it_cannot_run_with(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, expected: str
) -> None:
    line = usage_error(capsys, "mcp", "serve", f"{flag}={value}")
    assert line == f"spky mcp serve: error: argument {flag}: {expected}"


def served_stderr(argv: list[str]) -> str:
    """What a server started with `argv` printed on stderr by the time it was stopped."""
    server = Served(argv)
    try:
        server.listening()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.close()
    return server.stderr


def test_binding_a_non_loopback_address_warns_that_the_server_speaks_plain_http(
    tmp_path: Path,
) -> None:
    stderr = served_stderr([*serve_argv(tmp_path), "--host", "0.0.0.0"])
    assert stderr == (
        "spky: warning: 0.0.0.0 is reachable from other machines and this server speaks plain "
        "HTTP; put it behind a TLS proxy and pass --public-url https://….\n"
    )


@pytest.mark.parametrize(
    "extra",
    [(), ("--host", "0.0.0.0", "--public-url", "https://mcp.example.com")],
)
def test_loopback_or_a_tls_public_url_gives_no_warning(
    tmp_path: Path, extra: tuple[str, ...]
) -> None:
    assert served_stderr([*serve_argv(tmp_path), *extra]) == ""


# --- token: refused before anything is minted ------------------------------------------------


def refused_mint(
    capsys: pytest.CaptureFixture[str], data_dir: str, *flags: str
) -> tuple[int, str, str]:
    return spky(capsys, "token", "--data-dir", data_dir, "--user", USER, "--yes", *flags)


@pytest.mark.parametrize(
    ("given", "writes"),
    [
        ("mcp:full", "scope mcp:full"),
        ("env:read,env:write,billing:write", "scopes env:write, billing:write"),
    ],
)
def test_read_only_with_write_scopes_is_refused_and_mints_nothing(
    capsys: pytest.CaptureFixture[str], data_dir: str, given: str, writes: str
) -> None:
    assert refused_mint(capsys, data_dir, "--read-only", "--scopes", given) == (
        1,
        "",
        f"spky: --read-only contradicts the write {writes} in --scopes; drop one or the other.\n",
    )
    assert not Path(data_dir).exists()


def test_read_only_with_read_scopes_grants_exactly_those(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    minted = mint(capsys, data_dir, "--read-only", "--scopes", "logs:read,secrets:reveal")
    assert minted["scopes"] == ["logs:read", "secrets:reveal"]


@pytest.mark.parametrize("name", ["", "   "])
def test_a_blank_name_is_refused(
    capsys: pytest.CaptureFixture[str], data_dir: str, name: str
) -> None:
    assert refused_mint(capsys, data_dir, f"--name={name}") == (
        1,
        "",
        "spky: --name is blank; give the token a label, or leave --name out.\n",
    )
    assert not Path(data_dir).exists()


def test_a_name_with_a_line_break_is_refused(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    assert refused_mint(capsys, data_dir, "--name", "ci\nlaptop") == (
        1,
        "",
        "spky: --name holds a line break or a control character; use plain text.\n",
    )


def test_the_name_of_a_live_token_is_refused_and_nothing_is_minted(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    first = mint(capsys, data_dir, "--name", "ci")
    assert refused_mint(capsys, data_dir, "--name", " ci ") == (
        1,
        "",
        f"spky: {USER} already has a token named 'ci' ({first['id']}); pick another --name, "
        f"or revoke that one first (spky mcp revoke {first['id']}).\n",
    )
    assert [row["id"] for row in listed(capsys, data_dir)] == [first["id"]]


def test_the_name_of_a_revoked_token_may_be_used_again(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    mint(capsys, data_dir, "--name", "ci")
    spky(capsys, "revoke", "ci", "--data-dir", data_dir, "--user", USER)
    mint(capsys, data_dir, "--name", "ci")
    assert [row["status"] for row in listed(capsys, data_dir)] == ["revoked", "active"]


def test_the_same_name_for_another_user_is_no_duplicate(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    mint(capsys, data_dir, "--name", "ci")
    status, _, err = spky(
        capsys, "token", "--data-dir", data_dir, "--user", "bob@example.com", "--name", "ci"
    )
    assert (status, err) == (0, "")


def test_tokens_minted_in_the_same_second_without_a_name_get_distinct_names(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    names = [mint(capsys, data_dir)["name"] for _ in range(3)]
    assert len(set(names)) == 3
    assert all(re.fullmatch(r"token-\d{8}-\d{6}(-\d)?", name) for name in names)


def test_empty_scopes_are_refused(capsys: pytest.CaptureFixture[str], data_dir: str) -> None:
    assert refused_mint(capsys, data_dir, "--scopes", " , ") == (
        1,
        "",
        "spky: --scopes is empty; name at least one scope, e.g. --scopes mcp:read.\n",
    )
    assert not Path(data_dir).exists()


@pytest.mark.parametrize("given", ["3651d", "522w", "99999999999999999999999d"])
def test_an_expiry_beyond_ten_years_is_refused_and_mints_nothing(
    capsys: pytest.CaptureFixture[str], data_dir: str, given: str
) -> None:
    assert refused_mint(capsys, data_dir, f"--expires-in={given}") == (
        1,
        "",
        f"spky: --expires-in '{given}' is more than 3650 days; use never for a token that "
        "does not expire.\n",
    )
    assert not Path(data_dir).exists()


@pytest.mark.parametrize("url", ["localhost:8765", "mcp.example.com/v1/mcp"])
def test_token_refuses_a_url_that_is_not_absolute(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    assert usage_error(capsys, "mcp", "token", "--url", url) == (
        f"spky mcp token: error: argument --url: '{url}' is not an absolute http(s) URL, "
        "such as https://mcp.example.com/v1/mcp."
    )


def test_a_url_from_the_environment_that_is_not_absolute_is_refused(
    capsys: pytest.CaptureFixture[str], data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SP00KY_MCP_URL", "localhost:8765")
    assert refused_mint(capsys, data_dir) == (
        1,
        "",
        "spky: SP00KY_MCP_URL: 'localhost:8765' is not an absolute http(s) URL, such as "
        "https://mcp.example.com/v1/mcp.\n",
    )
    assert not Path(data_dir).exists()


# --- token: --client and --install ------------------------------------------------------------


def test_client_implies_install_and_says_so_in_the_help(
    capsys: pytest.CaptureFixture[str], data_dir: str, home: Path
) -> None:
    minted = mint(capsys, data_dir, "--client", "cursor", "--url", URL)
    config = orjson.loads((home / ".cursor" / "mcp.json").read_bytes())
    assert config["mcpServers"]["sp00ky"] == {
        "url": URL,
        "headers": {"Authorization": f"Bearer {minted['token']}"},
    }
    with pytest.raises(SystemExit):
        main(["mcp", "token", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--client {claude,cursor,vscode} which editor to register with (implies --install)" in (
        help_text
    )


@pytest.mark.parametrize("flags", [("--yes",), ("--json",), ()])
def test_install_without_a_client_where_nothing_can_be_asked_is_refused_before_minting(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: tuple[str, ...],
) -> None:
    # Even with the claude CLI on the PATH, a script is not registered with it unasked.
    argv = fake_claude(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    data_dir = str(tmp_path / "data")
    result = spky(capsys, "token", "--data-dir", data_dir, "--user", USER, "--install", *flags)
    assert result == (
        1,
        "",
        "spky: --install needs --client claude|cursor|vscode when nothing can be asked (no "
        "terminal, --yes or --json); nothing was minted.\n",
    )
    assert not Path(data_dir).exists()
    assert not argv.exists()


# --- token at a terminal: "cancelled" only when nothing was minted ---------------------------


class Terminal:
    """`spky mcp token` with a pseudo-terminal for its standard streams, so that it asks its
    questions as it does for a person (Python writes an input() prompt on a terminal to
    stderr).  No claude CLI is on its PATH."""

    def __init__(self, argv: list[str], home: Path) -> None:
        self.master, slave = os.openpty()
        environment = {**process_environment(home), "PATH": str(home / "no-bin")}
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=environment
        )
        os.close(slave)
        self.seen = ""
        # How far `expect` has matched: each prompt is looked for after the one before.
        self.matched = 0

    def expect(self, prompt: str) -> None:
        deadline = time.monotonic() + PROCESS_BOUND
        while (found := self.seen.find(prompt, self.matched)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"no prompt {prompt!r} in {self.seen!r}"
            assert self.read(left), f"no prompt {prompt!r} in {self.seen!r}"
        self.matched = found + len(prompt)

    def read(self, bound: float) -> bool:
        """Reads what is there within `bound`; False once the process has closed its end."""
        ready, _, _ = select.select([self.master], [], [], bound)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: no process holds the terminal any more
            return False
        self.seen += chunk.decode()
        return bool(chunk)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def finish(self) -> tuple[int, list[str]]:
        """The exit status, and the lines shown after the last thing typed."""
        mark = len(self.seen)
        status = self.process.wait(timeout=PROCESS_BOUND)
        while self.read(PROCESS_BOUND):
            pass
        return status, self.seen[mark:].replace("\r\n", "\n").strip("\n").splitlines()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=PROCESS_BOUND)
        os.close(self.master)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    """`spky mcp token --name desk` at a terminal, with HOME in tmp_path."""
    argv = [*PYTHON_M, "mcp", "token", "--data-dir", str(tmp_path / "data"), "--user", USER]
    session = Terminal([*argv, "--name", "desk"], tmp_path)
    yield session
    session.close()


def test_end_of_input_at_the_scope_picker_cancels_and_mints_nothing(
    terminal: Terminal, tmp_path: Path
) -> None:
    terminal.expect("Scopes [mcp:read]: ")
    terminal.type("\x04")
    assert terminal.finish() == (1, [CANCELLED])
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("typed", ["\u00b2", "\u0663", "\uff13"])
def test_a_number_at_the_scope_picker_is_ascii_digits(
    terminal: Terminal, tmp_path: Path, typed: str
) -> None:
    terminal.expect("Scopes [mcp:read]: ")
    terminal.type(f"{typed}\n")
    status, lines = terminal.finish()
    assert (status, lines[-1].split(". ")[0]) == (1, f"spky: Unknown scope: {typed}")
    assert not (tmp_path / "data").exists()


def listed_in(tmp_path: Path) -> list[str]:
    done = subprocess.run(
        [*PYTHON_M, "mcp", "tokens", "--data-dir", str(tmp_path / "data"), "--user", USER],
        capture_output=True,
        text=True,
        timeout=PROCESS_BOUND,
        env=process_environment(tmp_path),
    )
    return [line.split()[1] for line in done.stdout.splitlines()[1:]]


def test_end_of_input_after_minting_says_the_token_exists(
    terminal: Terminal, tmp_path: Path
) -> None:
    terminal.expect("Scopes [mcp:read]: ")
    terminal.type("\n")
    terminal.expect("[Y/n] ")
    terminal.type("\x04")
    status, lines = terminal.finish()
    assert (status, listed_in(tmp_path)) == (1, ["desk"])
    token_id = re.search(r"\((tok_\w+)\)", lines[-1])
    assert token_id
    assert lines[-1] == (
        "spky: Stopped before registering an editor; the token 'desk' "
        f"({token_id.group(1)}) was minted all the same; register it with `spky mcp install`, "
        "or revoke it with `spky mcp revoke`."
    )
    assert CANCELLED not in terminal.seen


def test_a_wrong_editor_name_is_asked_again(terminal: Terminal, tmp_path: Path) -> None:
    terminal.expect("Scopes [mcp:read]: ")
    terminal.type("\n")
    terminal.expect("[Y/n] ")
    terminal.type("y\n")
    terminal.expect("Which editor? [claude/cursor/vscode] ")
    terminal.type("emacs\n")
    terminal.expect("'emacs' is not one of claude, cursor or vscode.")
    terminal.expect("Which editor? [claude/cursor/vscode] ")
    terminal.type("cursor\n")
    assert terminal.finish() == (
        0,
        ["cursor", f"Registered 'sp00ky' in {tmp_path / '.cursor' / 'mcp.json'}."],
    )
    config = orjson.loads((tmp_path / ".cursor" / "mcp.json").read_bytes())
    assert config["mcpServers"]["sp00ky"]["headers"]["Authorization"].startswith("Bearer mcp_live_")


# --- tokens and revoke on a store that does not exist ----------------------------------------


@pytest.mark.parametrize("command", [("tokens",), ("revoke", "ci")])
def test_listing_or_revoking_where_there_is_no_store_is_refused_and_creates_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "typo"
    assert spky(capsys, *command, "--data-dir", str(missing), "--user", USER) == (
        1,
        "",
        f"spky: There is no token store in {missing}; pass the --data-dir that "
        "`spky mcp token` and `spky mcp serve` use.\n",
    )
    assert not missing.exists()


def test_listing_in_a_directory_without_a_store_creates_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, _ = spky(capsys, "tokens", "--data-dir", str(tmp_path), "--user", USER)
    assert status == 1
    assert list(tmp_path.iterdir()) == []


# --- a reader that goes away -----------------------------------------------------------------


def into_a_closed_pipe(*argv: str) -> subprocess.CompletedProcess[str]:
    """`spky mcp …` with its standard output a pipe whose reader has gone."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(
            [*PYTHON_M, "mcp", *argv],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=PROCESS_BOUND,
        )
    finally:
        os.close(writer)


def test_tokens_into_a_closed_pipe_stops_quietly_with_the_sigpipe_status(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    for number in range(3):
        mint(capsys, data_dir, "--name", f"t{number}")
    done = into_a_closed_pipe("tokens", "--data-dir", data_dir, "--user", USER)
    assert (done.returncode, done.stderr) == (141, "")


def test_serve_whose_output_nobody_reads_stops_gracefully_with_the_sigpipe_status(
    data_dir: str,
) -> None:
    """As a worker does whose supervisor was killed before it said it listens."""
    done = into_a_closed_pipe("serve", "--port", "0", "--data-dir", data_dir)
    assert done.returncode == 141
    assert "Traceback" not in done.stderr


def test_tokens_piped_into_head_prints_the_first_line_only(
    capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    for number in range(3):
        mint(capsys, data_dir, "--name", f"t{number}")
    spky_tokens = f"{' '.join(PYTHON_M)} mcp tokens --data-dir {data_dir} --user {USER}"
    command = f"set -o pipefail; {spky_tokens} | head -1"
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=PROCESS_BOUND
    )
    assert done.stdout.split() == [
        "ID",
        "NAME",
        "TOKEN",
        "STATUS",
        "EXPIRES",
        "LAST",
        "USED",
        "SCOPES",
    ]
    assert done.returncode in (0, 141)
    assert done.stderr == ""


# --- install ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (
            "spk_live_" + "a" * 40,
            "This is a Sp00ky API key (spk_live_…); MCP needs an mcp_live_ token.",
        ),
        (
            TOKEN[:-3],
            "The token is malformed (wrong length or checksum); it was probably cut short.",
        ),
        (
            "mcp_live_…",
            "The token holds characters no token has (such as …); copy the whole token again.",
        ),
    ],
)
def test_install_refuses_a_token_that_cannot_work_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], home: Path, token: str, problem: str
) -> None:
    result = spky(capsys, "install", "--client", "cursor", "--token", token)
    assert result == (1, "", f"spky: {problem}\n")
    assert not (home / ".cursor").exists()


def test_install_takes_a_pasted_token_without_its_trailing_newline(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    assert spky(capsys, "install", "--client", "cursor", "--token", f"{TOKEN}\n")[0] == 0
    config = orjson.loads((home / ".cursor" / "mcp.json").read_bytes())
    assert config["mcpServers"]["sp00ky"]["headers"] == {"Authorization": f"Bearer {TOKEN}"}


def test_install_where_the_config_dir_is_a_file_says_what_is_in_the_way(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    (home / ".cursor").write_text("")
    path = home / ".cursor" / "mcp.json"
    assert spky(capsys, "install", "--client", "cursor", "--token", TOKEN) == (
        1,
        "",
        f"spky: Cannot write {path}: {home / '.cursor'} is a file, not a directory.\n",
    )


def test_install_where_the_config_is_a_directory_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    path = home / ".cursor" / "mcp.json"
    path.mkdir(parents=True)
    assert spky(capsys, "install", "--client", "cursor", "--token", TOKEN) == (
        1,
        "",
        f"spky: Cannot read {path}: Is a directory; fix or move it first.\n",
    )


def test_install_into_a_home_inside_a_git_work_tree_writes_the_environment_reference(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    (home / ".git").mkdir()
    path = home / ".cursor" / "mcp.json"
    assert spky(capsys, "install", "--client", "cursor", "--token", TOKEN, "--url", URL) == (
        0,
        f"Cursor reads the token from SP00KY_MCP_TOKEN ({path} is inside the git work tree "
        f"{home}): export SP00KY_MCP_TOKEN=mcp_live_… where Cursor starts.\n"
        f"Registered 'sp00ky' in {path}.\n",
        "",
    )
    assert orjson.loads(path.read_bytes())["mcpServers"]["sp00ky"] == {
        "url": URL,
        "headers": {"Authorization": "Bearer ${env:SP00KY_MCP_TOKEN}"},
    }
    assert TOKEN not in path.read_text()


def test_install_tightens_a_config_readable_by_others_to_the_owner_only(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    path = home / ".cursor" / "mcp.json"
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o644)
    assert spky(capsys, "install", "--client", "cursor", "--token", TOKEN)[0] == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TOKEN in path.read_text()


# --- doctor ----------------------------------------------------------------------------------


class WebPage(BaseHTTPRequestHandler):
    """A web server that is not an MCP server: every POST gets an HTML page."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        body = b"<html><body>Welcome</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web_page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), WebPage)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_doctor_against_a_server_that_is_not_mcp_says_so(
    capsys: pytest.CaptureFixture[str], web_page: str
) -> None:
    status = main(["mcp", "doctor", "--url", web_page, "--token", tokens.mint()])
    out, err = capsys.readouterr()
    assert (status, err) == (1, "")
    assert out.splitlines()[0] == (
        "✗ The server answered initialize with HTTP 200 (text/html) but no MCP result; check "
        "that the URL is the MCP endpoint (it ends in /v1/mcp)."
    )


def test_doctor_refuses_a_url_that_is_not_absolute(capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_error(capsys, "mcp", "doctor", "--url", "foo") == (
        "spky mcp doctor: error: argument --url: 'foo' is not an absolute http(s) URL, such "
        "as https://mcp.example.com/v1/mcp."
    )


def test_a_url_holding_control_characters_is_refused_and_shown_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Such a URL would be written into an editor's config; quoted bare, it would act on the
    terminal that shows the refusal."""
    assert usage_error(
        capsys, "mcp", "install", "--client", "cursor", "--url", "http://x/\x1b[2J\rZ"
    ) == (
        "spky mcp install: error: argument --url: 'http://x/\\x1b[2J\\rZ' is not an absolute "
        "http(s) URL, such as https://mcp.example.com/v1/mcp."
    )


def test_doctor_with_the_placeholder_token_diagnoses_it_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1/mcp"
    status = main(["mcp", "doctor", "--url", url, "--token", "mcp_live_…"])
    out, err = capsys.readouterr()
    assert (status, err) == (1, "")
    assert out.splitlines()[0] == (
        "✗ The token holds characters no token has (such as …); copy the whole token again."
    )


@pytest.mark.parametrize(("given", "bound"), [([], 256), (["--max-connections-per-peer=0"], 0)])
def test_serve_takes_the_bound_on_connections_per_client_address(
    given: list[str], bound: int
) -> None:
    args = build_parser().parse_args(["mcp", "serve", *given])
    assert config_from(args).limits.max_connections_per_peer == bound
