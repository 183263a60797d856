"""Matching a concrete URI against an RFC 6570 level-1 template (`res://items/{id}`).  Pure."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote

_VARIABLE = re.compile(r"\{([A-Za-z0-9_]+)\}")


@lru_cache(maxsize=128)
def _compile(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    for match in _VARIABLE.finditer(template):
        parts.append(re.escape(template[position : match.start()]))
        parts.append(f"(?P<{match.group(1)}>[^/?#]+)")
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts) + r"\Z")


def match_template(template: str, uri: str) -> dict[str, str] | None:
    match = _compile(template).match(uri)
    if match is None:
        return None
    return {name: unquote(value) for name, value in match.groupdict().items()}
