"""Schema-driven fuzz of every product tool's arguments, through the real server.

For each tool of the catalogue, Hypothesis draws a recipe: per property of the tool's
inputSchema, a known-good value (from a world that a user built through the tools), a mutant of
one (an adversarial fragment spliced in), a hostile string (SQL metacharacters, path traversal,
control characters, CRLF, NUL, RTL override, Unicode digits, 100k characters), a value of
another JSON type, a boundary drawn from the schema (minLength - 1, maxLength + 1, minimum - 1,
maximum + 1, 64-bit edges, enormous numbers), or nothing at all; plus, sometimes, properties the
schema does not have.  Most recipes spoil one property and keep the rest good, so that the
spoiled value reaches the handler rather than stopping at the first schema check.

Every call must end in a result that matches the tool's outputSchema or in an `isError` result,
never in a JSON-RPC error (so never -32603); and a rejected call must leave every row of every
table as it was (the audit log, which records every call, and tokens.last_used_at aside).  A
call that succeeds may change rows: the world is then restored, so that each example starts
from the same state and replays deterministically.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sp00ky_mcp.product.secretbox import SecretBox
from sp00ky_mcp.product.tools import all_specs

from .product_support import ProductEnv

pytestmark = pytest.mark.anyio

SPECS = {spec.name: spec for spec in all_specs()}
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a fixed clock keeps every example replayable
SECRET = "postgres://ada:hunter2-very-secret@db.internal/api"
HOSTNAME = "api.ada-example.com"
SETTINGS = settings(
    max_examples=20,
    derandomize=True,
    database=None,
    deadline=None,
    # One server and one world serve every example of a tool, on purpose: building them per
    # example would cost a second each.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
MAX_PROPERTIES = max(len(spec.input_schema()["properties"]) for spec in SPECS.values())
LONG = 100_000


# --- the world the fuzzed calls act on -------------------------------------------------------


@dataclass
class World:
    token: str
    good: dict[str, list[Any]]
    # Every row of the store as the world left it, secret values sealed under `secrets`.
    baseline: dict[str, list[dict[str, Any]]]
    secrets: SecretBox


async def build_world(env: ProductEnv) -> World:
    """Ada's personal tenant with a project "api" that has every kind of child object, and
    a team with a project and a pending invitation; all made through the tools."""
    env.cloud.clock = lambda: NOW
    ada = await env.user("ada@example.com")
    token = await env.token(ada, "mcp:full")

    async def make(tool: str, arguments: dict[str, Any]) -> Any:
        return await env.structured(token, tool, arguments)

    project = await make("create_project", {"name": "api", "services": ["web", "api", "worker"]})
    await make("set_env_var", {"project": "api", "key": "DATABASE_URL", "value": SECRET})
    await make("set_env_var", {"project": "api", "key": "LOG_LEVEL", "value": "debug"})
    await make("init_vault", {"project": "api"})
    await make("set_up_repo_link", {"project": "api", "repo_url": "https://github.com/ada/api"})
    await make("trigger_build", {"project": "api"})
    deployment = await make("deploy", {"project": "api"})
    await make("configure_backups", {"project": "api", "schedule": "daily", "retention_days": 14})
    backup = await make("create_backup", {"project": "api"})
    restore = await make("restore_backup", {"project": "api", "backup_id": backup["backup_id"]})
    await make("add_domain", {"project": "api", "hostname": HOSTNAME})
    team = (await make("create_team", {"name": "Acme"}))["tenant_id"]
    await make("create_project", {"tenant_id": team, "name": "site"})
    invited = await make("invite_team_member", {"tenant_id": team, "email": "new@example.com"})
    personal = await env.personal(ada)
    good: dict[str, list[Any]] = {
        "project": ["api", project["id"], "site"],
        "tenant_id": [personal, team],
        "deployment_id": [deployment["deployment_id"]],
        "backup_id": [backup["backup_id"]],
        "restore_id": [restore["restore_id"]],
        "invitation_id": [invited["invitation_id"]],
        "hostname": [HOSTNAME, "www.example.org", "bücher.example"],
        "member": [ada.email, ada.id, "new@example.com"],
        **GOOD,
    }
    baseline = await env.store.reads.support.dump()
    return World(token, good, baseline, env.store.secrets)


GOOD: dict[str, list[Any]] = {
    "name": ["new-app", "api", "acme-2"],
    "services": [["web"], ["web", "worker"]],
    "cursor": ["o1", "o0", "b1"],
    "limit": [2, 1, 50],
    "ref": ["main", "v1.2.3", "0123456789abcdef0123456789abcdef01234567"],
    "promote": [True, False],
    "service": ["web", "api", "worker"],
    "replicas": [2, 1, 3],
    "lines": [10, 1, 1000],
    "since": ["15m", "2025-01-31T12:00:00Z", "1w"],
    "contains": ["deploy", "web"],
    "key": ["DATABASE_URL", "NEW_VAR"],
    "value": ["hello world", "postgres://u:p@h/db"],
    "dotenv": ["A=1\nexport B='two'\n# a comment\n"],
    "values": [{"A": "1"}, {"NEW_VAR": "x", "LOG_LEVEL": "info"}],
    "replace": [False, True],
    "schedule": ["daily", "30 2 * * *", "*/15 * * * mon-fri"],
    "retention_days": [7, 1, 365],
    "repo_url": ["https://github.com/ada/api", "git@gitlab.com:ada/api.git"],
    "branch": ["main", "release/2025"],
    "auto_deploy": [True, False],
    "email": ["new2@example.com", "ada@example.com"],
    "idempotency_key": ["key-1", "key-2"],
}


async def restore(env: ProductEnv, world: World) -> None:
    """Back to the world as built, in one transaction (the server's caches drop what they
    kept, as after any commit)."""
    # The world's secret values are sealed under its own key, which comes along.
    env.store.secrets = world.secrets
    async with env.store.transaction() as tx:
        await tx.support.load(world.baseline)


# The world is built through the tools once per run and backend, and copied into each test's
# fresh store: building it costs a third of a second, and there is one test per tool.
_BUILT: dict[str, World] = {}


@pytest.fixture
async def world(product: ProductEnv) -> AsyncIterator[World]:
    product.cloud.clock = lambda: NOW
    backend = type(product.store).__name__
    if backend not in _BUILT:
        _BUILT[backend] = await build_world(product)
    else:
        await restore(product, _BUILT[backend])
    yield _BUILT[backend]


# --- recipes ---------------------------------------------------------------------------------

HOSTILE = [
    "'; DROP TABLE projects;--",
    "api'; DELETE FROM env_vars WHERE '1'='1",
    "' OR '1'='1",
    '" OR 1=1 --',
    "%",
    "_",
    "api%",
    "*",
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "/etc/passwd",
    "file:///etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "\x00",
    "api\x00",
    "\x01\x02\x1b[31m\x1f\x7f",
    "\t",
    "\r\n",
    "api\r\nX-Injected: 1",
    "line one\nline two",
    "\u2028\u2029",
    "\u202eipa",
    "api\u202e",
    "\u200bapi",
    "\ufeffapi",
    "\u00a0api",
    " api ",
    "a\u0301",
    "İstanbul",
    "ﬁle",
    "²",
    "o²",
    "b²",
    "o\u0661\u0662",
    "*/² * * * *",
    "\U0001d7e0",
    "🎃",
    "%s%s%n",
    "{0}{project}",
    "${jndi:ldap://example.invalid/a}",
    "<script>alert(1)</script>",
    "***REDACTED",
    "mcp_live_00000000000000000000000000000000",
    "1e400",
    "-1",
    "NaN",
    "0x10",
    "null",
    "a" * LONG,
    "é" * LONG,
    "\x00" * 1000,
    ("A=1\r\n" * 20_000),
]
FRAGMENTS = [
    "'",
    "';--",
    "\x00",
    "\r\n",
    "\n",
    "../",
    "²",
    "\u0661",
    "\u202e",
    " ",
    "%",
    "_",
    "*",
    "\\",
    '"',
    "🎃",
    "\u0301",
    "/",
    "..",
    "$(id)",
    "{}",
    "=",
    "#",
    "\t",
]


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


# Deeper than a JSON encoder's usual recursion bound (orjson's is 254 levels).
DEEP = nested(300)
WRONG: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    1e308,
    -1e308,
    "",
    "x",
    [],
    [None],
    ["a", 1],
    {},
    {"a": "b"},
    {"$secret": "x"},
    DEEP,
]
EDGES = [
    "empty",
    "below-min",
    "at-max",
    "over-max",
    "huge",
    "min-1",
    "max+1",
    "min",
    "max",
    "negative",
    "int64",
    "uint64+1",
    "float",
    "big-float",
    "case",
    "padded",
    "nul",
    "many",
]
EXTRA_KEYS = [
    "extra",
    "",
    "'; DROP TABLE tokens;--",
    "../../etc/passwd",
    "__proto__",
    "constructor",
    "\x00",
    "\u202e",
    "k" * 1000,
    "_meta",
]

Slot = tuple[str, Any]
# (focus: the one property spoiled when `focused`; focused; slots; extra properties)
Recipe = tuple[int, bool, list[Slot], dict[str, Any]]

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.text(
        st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Nd", "No", "Mn"]), max_size=20
    ),
)
good_slot = st.tuples(st.just("good"), st.integers(0, 2))
mutant_slot = st.tuples(
    st.just("mutant"), st.tuples(st.integers(0, 2), st.integers(0, 2), st.sampled_from(FRAGMENTS))
)
hostile_slot = st.tuples(st.just("hostile"), hostile_text)
# What a spoiled property gets: mostly strings that pass the schema's type and length checks
# and so reach the tool's own rules, then values the schema itself must refuse.
spoilers = st.one_of(
    mutant_slot,
    hostile_slot,
    mutant_slot,
    hostile_slot,
    st.tuples(st.just("wrong"), st.one_of(st.sampled_from(WRONG), json_values)),
    st.tuples(st.just("edge"), st.sampled_from(EDGES)),
    st.tuples(st.just("omit"), st.none()),
)
slots = st.one_of(good_slot, good_slot, spoilers)
extras = st.one_of(
    st.just({}),
    st.just({}),
    st.just({}),
    st.dictionaries(
        st.sampled_from(EXTRA_KEYS),
        st.one_of(st.sampled_from(WRONG), json_values),
        min_size=1,
        max_size=2,
    ),
)
recipes: st.SearchStrategy[Recipe] = st.tuples(
    st.integers(0, MAX_PROPERTIES - 1),
    # Three recipes in four spoil one property only.
    st.integers(0, 3).map(lambda n: n > 0),
    st.lists(slots, min_size=MAX_PROPERTIES, max_size=MAX_PROPERTIES),
    extras,
).flatmap(
    lambda r: (
        spoilers.map(lambda s: (r[0], r[1], _put(r[2], r[0], s), r[3])) if r[1] else st.just(r)
    )
)


def _put(items: list[Slot], index: int, slot: Slot) -> list[Slot]:
    return [slot if i == index else item for i, item in enumerate(items)]


def realise(recipe: Recipe, schema: dict[str, Any], good: dict[str, list[Any]]) -> dict[str, Any]:
    focus, focused, drawn, extra = recipe
    properties: dict[str, Any] = schema["properties"]
    focus %= len(properties) if properties else 1
    arguments: dict[str, Any] = {}
    for index, (name, prop) in enumerate(properties.items()):
        kind, payload = drawn[index]
        if focused and index != focus:
            # The other properties keep good values; optional ones are left out when their
            # slot says so, as a client may.
            if kind == "omit" and name not in schema["required"]:
                continue
            kind, payload = "good", 0
        if kind == "omit":
            continue
        arguments[name] = value(kind, payload, name, prop, good)
    for name, item in extra.items():
        arguments.setdefault(name, item)
    return arguments


def value(kind: str, payload: Any, name: str, prop: dict[str, Any], good: dict[str, Any]) -> Any:
    if kind == "good":
        return good_value(name, prop, good, payload)
    if kind == "mutant":
        index, where, fragment = payload
        base = good_value(name, prop, good, index)
        if not isinstance(base, str):
            return fragment
        at = (0, len(base) // 2, len(base))[where]
        return base[:at] + fragment + base[at:]
    if kind == "edge":
        return edge(payload, prop)
    return payload  # hostile text or a wrong-typed value, as drawn


def good_value(name: str, prop: dict[str, Any], good: dict[str, Any], index: int) -> Any:
    if "enum" in prop:
        return prop["enum"][index % len(prop["enum"])]
    choices = good.get(name)
    if choices:
        return choices[index % len(choices)]
    return {"string": "x", "integer": 1, "boolean": True, "array": [], "object": {}}[prop["type"]]


def edge(which: str, prop: dict[str, Any]) -> Any:
    kind = prop.get("type")
    if "enum" in prop:
        first = str(prop["enum"][0])
        table: dict[str, Any] = {"case": first.upper(), "padded": f" {first} ", "nul": first + "\0"}
        return table.get(which, "")
    if kind == "string":
        return string_edge(which, prop.get("minLength", 0), prop.get("maxLength", LONG))
    if kind == "integer":
        return integer_edge(which, prop.get("minimum", 1), prop.get("maximum", 1_000))
    if kind == "boolean":
        return {"case": "true", "padded": 1, "nul": 0, "empty": ""}.get(which)
    if kind == "array":
        most = prop.get("maxItems", 50)
        table = {"empty": [], "many": ["web"] * (most + 1), "nul": ["\0"], "over-max": ["a" * 64]}
        return table.get(which, [None])
    return {
        "empty": {"": ""},
        "many": {f"K{i}": "v" for i in range(1_000)},
        "nul": {"A": "\0"},
        "over-max": {"A" * 300: "v"},
        "huge": {"A": "v" * 40_000},
    }.get(which, {"A": 1})


def string_edge(which: str, shortest: int, longest: int) -> str:
    return {
        "empty": "",
        "below-min": "x" * max(shortest - 1, 0),
        "min": "x" * shortest,
        "at-max": "x" * longest,
        "max": "a" * longest,
        "over-max": "x" * (longest + 1),
        "huge": "x" * max(LONG, longest + 1),
        "nul": "\0" * max(shortest, 1),
        "padded": " " * max(shortest, 1),
        "case": "X" * max(shortest, 1),
        "many": "é" * (longest + 1),
    }.get(which, "x" * max(shortest, 1))


def integer_edge(which: str, lowest: int, highest: int) -> Any:
    return {
        "min-1": lowest - 1,
        "max+1": highest + 1,
        "min": lowest,
        "max": highest,
        "negative": -1,
        "int64": 2**63 - 1,
        "uint64+1": 2**64,
        "float": float(lowest) + 0.5,
        "big-float": 1e308,
        "huge": 10**30,
        "empty": 0,
        "case": float(highest),
    }.get(which, -(2**63))


# --- the property ----------------------------------------------------------------------------


async def call(env: ProductEnv, token: str, tool: str, arguments: dict[str, Any]) -> Any:
    response = await env.rpc(token, "tools/call", {"name": tool, "arguments": arguments})
    assert response.status_code == 200, (tool, arguments, response.text)
    payload = response.json()
    assert "error" not in payload, (tool, arguments, payload)
    return payload["result"]


def outcome(result: dict[str, Any]) -> str:
    if result["isError"] is False:
        return "a result"
    if result["content"][0]["text"].startswith("Invalid arguments for"):
        return "refused by the inputSchema"
    return "refused by the tool"


@pytest.mark.parametrize("tool", sorted(SPECS))
@SETTINGS
@given(recipe=recipes)
async def test_any_arguments_end_in_a_valid_result_or_an_error_result_that_changes_nothing(
    product: ProductEnv, world: World, tool: str, recipe: Recipe
) -> None:
    spec = SPECS[tool]
    arguments = realise(recipe, spec.input_schema(), world.good)
    before = await product.snapshot()
    result = await call(product, world.token, tool, arguments)
    after = await product.snapshot()
    # Seen with --hypothesis-show-statistics: how far the drawn arguments got.
    event("outcome", outcome(result))
    if result["isError"] is True:
        text = result["content"][0]["text"]
        assert isinstance(text, str) and text, result
        assert "Traceback" not in text, text
        assert after == before, (tool, arguments, text)
        return
    assert result["isError"] is False, result
    jsonschema.Draft202012Validator(spec.output).validate(result["structuredContent"])
    if after != before:
        await restore(product, world)
        assert await product.snapshot() == before


# --- what the fuzz rests on, spelled out ------------------------------------------------------
# Unicode digits pass str.isdigit() but not always int(): "²" is a digit to the one and not to
# the other, and Arabic-Indic one (U+0661) is a digit to both; neither is in any cursor or
# schedule the server hands out or documents.

CURSOR_RULE = "Invalid cursor: pass back a next_cursor value exactly as received."
PAGED = sorted(
    name for name, spec in SPECS.items() if "cursor" in spec.input_schema()["properties"]
)


def required_good(tool: str, good: dict[str, list[Any]]) -> dict[str, Any]:
    """Good values of the required arguments; a required tenant is the team (those tools
    manage a team)."""
    schema = SPECS[tool].input_schema()
    return {
        name: good_value(name, schema["properties"][name], good, int(name == "tenant_id"))
        for name in schema["required"]
    }


@pytest.mark.parametrize("digit", ["²", "\u0661"])
@pytest.mark.parametrize("tool", PAGED)
async def test_a_cursor_with_a_unicode_digit_is_refused_as_invalid_and_changes_nothing(
    product: ProductEnv, world: World, tool: str, digit: str
) -> None:
    prefix = "b" if tool == "get_logs" else "o"
    arguments = {**required_good(tool, world.good), "cursor": f"{prefix}1{digit}"}
    before = await product.snapshot()
    result = await call(product, world.token, tool, arguments)
    assert (result["isError"], result["content"][0]["text"]) == (True, CURSOR_RULE)
    assert await product.snapshot() == before


@pytest.mark.parametrize("schedule", ["*/² * * * *", "*/\u0661 * * * *"])
async def test_a_cron_step_with_a_unicode_digit_is_refused_as_invalid_and_changes_nothing(
    product: ProductEnv, world: World, schedule: str
) -> None:
    before = await product.snapshot()
    result = await call(
        product, world.token, "configure_backups", {"project": "api", "schedule": schedule}
    )
    assert result["isError"] is True
    assert result["content"][0]["text"] == (
        f"Field 1 (minute) of the cron schedule '{schedule}' is not valid: use *, a value from "
        "0 to 59, a range a-b, a step /n, or a comma-separated list of these."
    )
    assert await product.snapshot() == before


async def test_arguments_nested_300_deep_are_refused_before_any_tool_runs(
    product: ProductEnv, world: World
) -> None:
    """Deeper than orjson writes back (the audit record's digest of such arguments once failed,
    and the call ended in -32603): the request is refused as it is read, and no tool runs."""
    before = await product.snapshot()
    audited = len(await product.audit_log())
    arguments = {"extra": nested(300)}
    reply = await product.rpc(
        world.token, "tools/call", {"name": "list_projects", "arguments": arguments}
    )
    assert (reply.status_code, reply.json()["error"]) == (
        400,
        {
            "code": -32600,
            "message": "Invalid Request: arrays and objects may nest at most 128 levels deep; "
            "send a flatter body.",
        },
    )
    assert await product.snapshot() == before
    assert len(await product.audit_log()) == audited
