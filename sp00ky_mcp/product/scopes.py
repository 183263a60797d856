"""The scope catalogue, exactly as the product page lists it.  Pure.

Each tool requires exactly one scope.  `mcp:read` and `mcp:full` are conveniences that expand
to concrete scopes when a token is minted; `mcp:full` deliberately excludes `secrets:reveal`.
"""

from __future__ import annotations

from collections.abc import Iterable

AREAS: tuple[tuple[str, str, str | None], ...] = (
    ("projects", "list and inspect projects", "create and destroy projects"),
    ("deployments", "see deployment status", "deploy, roll back, restart, scale and tear down"),
    ("logs", "read recent project logs", None),
    ("env", "list environment variables", "set, delete and bulk-load environment variables"),
    ("vault", "see vault status", "initialise the vault and manage CI access"),
    ("backups", "list and inspect backups", "create, restore, delete and configure backups"),
    ("domains", "list custom domains", "add and remove custom domains"),
    ("links", "see repo link status and runs", "set up, trigger and unlink repo links"),
    ("tenants", "list teams and members", "create teams, invite and manage members"),
    ("billing", "see usage", "check out, change plan and open the billing portal"),
)
READ_SCOPES = tuple(f"{area}:read" for area, _, _ in AREAS)
WRITE_SCOPES = tuple(f"{area}:write" for area, _, write in AREAS if write is not None)
REVEAL = "secrets:reveal"
MCP_READ = "mcp:read"
MCP_FULL = "mcp:full"
CONCRETE = READ_SCOPES + WRITE_SCOPES + (REVEAL,)
CONVENIENCE = {MCP_READ: READ_SCOPES, MCP_FULL: READ_SCOPES + WRITE_SCOPES}
VALID = (*CONCRETE[:-1], MCP_READ, MCP_FULL, REVEAL)
DEFAULT = (MCP_READ,)
GRANTS = (
    {f"{area}:read": read for area, read, _ in AREAS}
    | {f"{area}:write": write for area, _, write in AREAS if write is not None}
    | {REVEAL: "see secret values unmasked"}
)


class UnknownScope(ValueError):
    def __init__(self, unknown: list[str]) -> None:
        self.unknown = unknown
        super().__init__(
            f"Unknown scope{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
            f"Valid scopes: {', '.join(VALID)}."
        )


def parse(text: str | Iterable[str]) -> tuple[str, ...]:
    """Comma-separated (or listed) scopes, validated and de-duplicated in the given order."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [s.strip() for s in items if s.strip()]
    unknown = [s for s in names if s not in VALID]
    if unknown:
        raise UnknownScope(unknown)
    return tuple(dict.fromkeys(names)) or DEFAULT


def expand(scopes: Iterable[str]) -> frozenset[str]:
    granted: set[str] = set()
    for scope in scopes:
        granted.update(CONVENIENCE.get(scope, (scope,)))
    return frozenset(granted)


def mint_command(scope: str) -> str:
    return f"spky mcp token --scopes {scope}"


def missing_scope_message(scope: str) -> str:
    return (
        f"This tool needs the '{scope}' scope, which this token lacks. Mint a token that "
        f"has it with `{mint_command(scope)}` and reconnect."
    )


def instructions(
    granted: frozenset[str] | None,
    narrowed: str | None = None,
    tools: frozenset[str] | None = None,
) -> str:
    """A few lines for the model: what this token can do, and what would unlock the rest; for
    a connection that asked for fewer tools, which ones it has."""
    text = _token_instructions(granted)
    if narrowed is None or tools is None:
        return text
    listed = ", ".join(sorted(tools)) if tools else "none"
    return (
        f"{text}\nThis connection asked for fewer tools ({narrowed}); of those the token "
        f"allows, it has only: {listed}."
    )


def _token_instructions(granted: frozenset[str] | None) -> str:
    if granted is None:
        return "This server runs without authentication; every tool is available."
    can = [GRANTS[s] for s in CONCRETE if s in granted and s != REVEAL]
    cannot = [(s, GRANTS[s]) for s in CONCRETE if s not in granted]
    lines = [
        "Sp00ky Cloud MCP server. Tools act in your personal tenant unless you pass tenant_id."
    ]
    lines.append("This token can: " + ("; ".join(can) if can else "nothing yet") + ".")
    if REVEAL not in granted:
        lines.append("Secret values (env values, vault material) are shown as ***REDACTED.")
    if cannot:
        unlocks = "; ".join(f"{scope} would let you {what}" for scope, what in cannot[:6])
        more = f" (and {len(cannot) - 6} more)" if len(cannot) > 6 else ""
        lines.append(
            f"Not granted: {unlocks}{more}. Ask the user to mint a token with the "
            "scope (`spky mcp token --scopes ...`)."
        )
    return "\n".join(lines)
