"""The README's synopsis of the command line matches what `--help` offers: every command, and
every option of each command that the synopsis spells out."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from sp00ky_mcp.cli.commands import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def synopsis() -> str:
    text = README.read_text()
    start = text.index("## The command line")
    block = text[start:]
    return block[block.index("```sh") : block.index("```", block.index("```sh") + 5)]


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    mcp = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    inner = mcp.choices["mcp"]
    chosen = next(a for a in inner._actions if isinstance(a, argparse._SubParsersAction))
    return dict(chosen.choices)


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        flag
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    }


@pytest.mark.parametrize("name", sorted(commands()))
def test_the_synopsis_names_every_command(name: str) -> None:
    assert f"spky mcp {name}" in synopsis()


def test_the_synopsis_gives_every_option_of_serve() -> None:
    text = synopsis()
    serve = text[text.index("spky mcp serve") : text.index("spky mcp token")]
    missing = sorted(o for o in options(commands()["serve"]) if not re.search(rf"{o}\b", serve))
    assert missing == []
