"""A connection may ask for fewer tools than its token allows, never more: read-only, some of
the ten areas (toolsets), or named tools, in the URL (`/v1/mcp?read_only=true&toolsets=env,logs`,
`tools=list_env_vars`) or in headers (`X-MCP-Readonly`, `X-MCP-Toolsets`, `X-MCP-Tools`).  When
both say something, both hold.  Pure.

The narrowing becomes the principal's tool list: tools/list shows only those (of the ones the
token's scopes allow), a call to another is refused with a sentence, and the instructions say
how the connection was narrowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from ..engine.context import Principal
from ..engine.errors import INVALID_REQUEST, HttpError
from . import scopes

# The ten areas, by the names a user knows them by ("teams" is the tenants area).
TOOLSETS: dict[str, str] = {area: area for area, _, _ in scopes.AREAS} | {"teams": "tenants"}
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


@dataclass(frozen=True, slots=True)
class Narrowing:
    read_only: bool = False
    toolsets: frozenset[str] | None = None
    tools: frozenset[str] | None = None

    def __bool__(self) -> bool:
        return self.read_only or self.toolsets is not None or self.tools is not None

    def describe(self) -> str:
        parts = ["read-only"] if self.read_only else []
        if self.toolsets is not None:
            parts.append("toolsets " + ", ".join(sorted(self.toolsets)))
        if self.tools is not None:
            parts.append("tools " + ", ".join(sorted(self.tools)))
        return "; ".join(parts)


def requested(query: str, headers: Mapping[str, str], known: Mapping[str, str | None]) -> Narrowing:
    """What the URL and headers ask for; HttpError 400 naming what to fix for a name the
    server does not know.  `known`: every tool's name and scope."""
    asked = parse_qs(query, keep_blank_values=True) if query else {}
    read_only = _flag(asked.get("read_only"), "read_only") or _flag(
        _header(headers, "x-mcp-readonly"), "X-MCP-Readonly"
    )
    toolsets = _both(
        _names(asked.get("toolsets"), "toolsets", TOOLSETS),
        _names(_header(headers, "x-mcp-toolsets"), "X-MCP-Toolsets", TOOLSETS),
    )
    tools = _both(
        _names(asked.get("tools"), "tools", known),
        _names(_header(headers, "x-mcp-tools"), "X-MCP-Tools", known),
    )
    areas = None if toolsets is None else frozenset(TOOLSETS[name] for name in toolsets)
    return Narrowing(read_only, areas, tools)


def narrow(
    principal: Principal, narrowing: Narrowing, known: Mapping[str, str | None]
) -> Principal:
    """The principal with the tools the narrowing leaves (its scopes still decide the rest)."""
    left = frozenset(name for name, scope in known.items() if _kept(narrowing, name, scope))
    if principal.tools is not None:
        left &= principal.tools
    return dataclasses.replace(principal, tools=left, narrowed=narrowing.describe())


def _kept(narrowing: Narrowing, name: str, scope: str | None) -> bool:
    area, _, access = (scope or ":").partition(":")
    if narrowing.read_only and access != "read":
        return False
    if narrowing.toolsets is not None and area not in narrowing.toolsets:
        return False
    return narrowing.tools is None or name in narrowing.tools


def _header(headers: Mapping[str, str], name: str) -> list[str] | None:
    value = headers.get(name)
    return None if value is None else [value]


def _flag(values: list[str] | None, where: str) -> bool:
    if not values:
        return False
    value = values[-1].strip().lower()
    if value in TRUE or value in FALSE:
        return value in TRUE
    raise HttpError(
        400,
        f"Bad Request: {where} must be true or false, not '{values[-1][:40]}'.",
        rpc_code=INVALID_REQUEST,
    )


def _names(
    values: list[str] | None, where: str, known: Mapping[str, object]
) -> frozenset[str] | None:
    if values is None:
        return None
    names = frozenset(n.strip() for value in values for n in value.split(",") if n.strip())
    unknown = sorted(names - known.keys())
    if unknown:
        listed = ", ".join(sorted(known)) if len(known) <= 12 else "see tools/list"
        raise HttpError(
            400,
            f"Bad Request: unknown name{'s' if len(unknown) > 1 else ''} in {where}: "
            f"{', '.join(n[:40] for n in unknown[:5])}; the known ones: {listed}.",
            rpc_code=INVALID_REQUEST,
        )
    return names


def _both(one: frozenset[str] | None, other: frozenset[str] | None) -> frozenset[str] | None:
    if one is None or other is None:
        return one if other is None else other
    return one & other
