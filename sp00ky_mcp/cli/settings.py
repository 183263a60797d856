"""`serve`'s settings from three places besides its flags: every option also from an
environment variable (`SP00KY_MCP_` and its name: `--log-level` is SP00KY_MCP_LOG_LEVEL) and
from a TOML file (`--config sp00ky-mcp.toml`, or SP00KY_MCP_CONFIG; keys are the option names,
`log-level = "debug"`).  A flag wins over the environment, the environment over the file, the
file over the defaults.  Each value is checked as its flag would be, and a bad one is refused
with a sentence naming where it came from.
"""

from __future__ import annotations

import argparse
import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ..product.credentials import HIDDEN, shown_url

PREFIX = "SP00KY_MCP_"
CONFIG_ENV = "SP00KY_MCP_CONFIG"
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# Settings never read from the environment or a file: they say where the file is, or are the
# supervisor's own.
NOT_LAYERED = frozenset({"help", "config", "print_config", "worker"})


class SettingsError(Exception):
    """A setting from the environment or a file is wrong; the message says which and why."""


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's options by name (`log_level`), those that may be layered."""
    return {
        action.dest: action
        for action in parser._actions
        if action.option_strings and action.dest not in NOT_LAYERED
    }


def explicit(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The options `argv` gives on the command line."""
    given: set[str] = set()
    for action in options(parser).values():
        if any(arg.split("=", 1)[0] in action.option_strings for arg in argv):
            given.add(action.dest)
    return given


def layered(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    argv: list[str],
    environ: Mapping[str, str],
) -> argparse.Namespace:
    """`args` with every option its flags left out taken from the environment, else from the
    config file, else left at its default."""
    actions = options(parser)
    from_file = _file(args.config or environ.get(CONFIG_ENV), actions)
    given = explicit(parser, argv)
    for dest, action in actions.items():
        if dest in given:
            continue
        variable = PREFIX + dest.upper()
        if variable in environ:
            setattr(args, dest, _checked(action, environ[variable], variable, from_env=True))
        elif dest in from_file:
            setattr(args, dest, from_file[dest])
    return args


def _file(path: str | None, actions: Mapping[str, argparse.Action]) -> dict[str, Any]:
    if not path:
        return {}
    try:
        # A named pipe would be waited on for ever, a device read without end.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise SettingsError(f"The config file {path} is not a regular file; pass a file.")
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"Cannot read the config file {path}: {exc.strerror}.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"The config file {path} is not valid TOML: {exc}.") from None
    values: dict[str, Any] = {}
    for key, value in table.items():
        dest = key.replace("-", "_")
        if dest not in actions:
            known = ", ".join(sorted(a.replace("_", "-") for a in actions))
            raise SettingsError(
                f"{path}: '{key}' is not a setting of serve; the settings: {known}."
            )
        values[dest] = _checked(actions[dest], value, f"{path}: {key}", from_env=False)
    return values


def _checked(action: argparse.Action, value: Any, where: str, from_env: bool) -> Any:
    """The value as its flag would take it, or SettingsError naming `where`."""
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        return _flag(value, where)  # the setting's own value: `oauth = false` for --no-oauth
    if isinstance(action, argparse._AppendAction):
        items = value.split(",") if from_env and isinstance(value, str) else value
        items = [items] if isinstance(items, str) else items
        if not isinstance(items, list):
            raise SettingsError(f"{where}: give a list of strings.")
        return [_one(action, str(item).strip(), where) for item in items if str(item).strip()]
    if isinstance(value, bool | list | dict):
        flag = action.dest.replace("_", "-")
        raise SettingsError(f"{where}: give a single value, as --{flag} takes.")
    return _one(action, str(value), where)


def _one(action: argparse.Action, text: str, where: str) -> Any:
    convert: Callable[[str], Any] = action.type if callable(action.type) else str
    try:
        value = convert(text)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise SettingsError(f"{where}: {exc}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise SettingsError(f"{where}: '{text}' is not one of {choices}.")
    return value


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise SettingsError(f"{where}: '{value}' is not true or false.")


def printed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The settings in effect, as a config file would give them; credentials in URLs masked."""
    lines = []
    for dest in sorted(options(parser)):
        value = getattr(args, dest, None)
        if value is None:
            continue
        lines.append(f"{dest.replace('_', '-')} = {_toml(_masked(value))}")
    return "\n".join(lines)


def _masked(value: Any) -> Any:
    if isinstance(value, str) and "://" in value:
        return shown_url(value, mask=HIDDEN)
    return value


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    # A JSON string is a TOML basic string: quotes, backslashes and control characters
    # escaped, so no value can break its line or act on the terminal.
    return orjson.dumps(str(value)).decode()


__all__ = ["SettingsError", "layered", "printed"]
