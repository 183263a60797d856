"""The env tools: list_env_vars, set_env_var, delete_env_var and bulk_load_env_vars, driven
through the product server; and the dotenv dialect bulk_load_env_vars reads."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sp00ky_mcp.product.cloud import env as env_rules
from sp00ky_mcp.product.cloud.base import Invalid
from sp00ky_mcp.product.tools.base import SHOWN_ONCE

from .product_support import NOW, NOW_ISO, REDACTED, ProductEnv, accept, decline

pytestmark = pytest.mark.anyio
ADA_NO_API = "No project 'api' in tenant 'ada's workspace'; list_projects shows the projects there."


async def stored(env: ProductEnv, project_id: str) -> dict[str, str]:
    """The project's variables as the store holds them, key to plaintext value."""
    return await env.store.reads.env.values(project_id)


async def seed(env: ProductEnv, project_id: str, values: dict[str, str]) -> None:
    async with env.store.transaction() as tx:
        await tx.env.put_many(project_id, values.items(), NOW)


# --- set_env_var --------------------------------------------------------------------------


async def test_set_env_var_creates_a_variable_and_returns_it_with_the_value_redacted(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    result = await env.ok(
        await env.token(ada, "env:write"),
        "set_env_var",
        {"project": "api", "key": "DATABASE_URL", "value": "postgres://db/1"},
    )
    assert result == {
        "project": "api",
        "key": "DATABASE_URL",
        "value": REDACTED,
        "updated_at": NOW_ISO,
        "created": True,
    }
    assert (await stored(env, project_id)) == {"DATABASE_URL": "postgres://db/1"}


async def test_set_env_var_shows_the_value_to_a_token_with_secrets_reveal(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    await env.make_project(ada)
    result = await env.ok(
        await env.token(ada, "env:write,secrets:reveal"),
        "set_env_var",
        {"project": "api", "key": "TOKEN", "value": "tok-123456"},
    )
    assert result["value"] == "tok-123456"


async def test_set_env_var_accepts_the_project_id_as_well_as_its_name(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    result = await env.ok(
        await env.token(ada), "set_env_var", {"project": project_id, "key": "A", "value": "1"}
    )
    assert result["project"] == "api"


async def test_set_env_var_replaces_one_value_and_keeps_the_other_variables(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"A": "old-value", "B": "kept-value"})
    result = await env.ok(
        await env.token(ada), "set_env_var", {"project": "api", "key": "A", "value": "new-value"}
    )
    assert result["created"] is False
    assert (await stored(env, project_id)) == {"A": "new-value", "B": "kept-value"}


async def test_set_env_var_accepts_an_empty_value(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await env.ok(
        await env.token(ada), "set_env_var", {"project": "api", "key": "EMPTY", "value": ""}
    )
    assert (await stored(env, project_id)) == {"EMPTY": ""}


async def test_set_env_var_logs_the_key_but_never_the_value(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada)
    await env.ok(token, "set_env_var", {"project": "api", "key": "S3_KEY", "value": "v-1-secret"})
    await env.ok(token, "set_env_var", {"project": "api", "key": "S3_KEY", "value": "v-2-secret"})
    assert await env.log_messages(project_id) == [
        "Environment variable S3_KEY created.",
        "Environment variable S3_KEY updated.",
    ]


async def test_set_env_var_rejects_a_key_that_is_not_posix_like(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada)
    for key in ("1ABC", "MY-KEY", "A B", "CAFÉ", "A.B"):
        text = await env.error_text(
            token, "set_env_var", {"project": "api", "key": key, "value": "x"}
        )
        assert text == (
            f"Key '{key}' is not valid: use letters, digits and underscores, not "
            "starting with a digit."
        )
    assert (await stored(env, project_id)) == {}


async def test_set_env_var_accepts_a_key_of_256_characters_with_underscores(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    key = "_" + "a1" * 127 + "Z"
    await env.ok(await env.token(ada), "set_env_var", {"project": "api", "key": key, "value": "x"})
    assert list(await stored(env, project_id)) == [key]


async def test_set_env_var_rejects_a_value_with_a_nul_character(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    text = await env.error_text(
        await env.token(ada), "set_env_var", {"project": "api", "key": "K", "value": "a\x00b"}
    )
    assert text == (
        "The value of 'K' contains a NUL character, which environment variables cannot hold."
    )


async def test_set_env_var_rejects_a_value_over_32_kib_of_utf8(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada)
    text = await env.error_text(
        token, "set_env_var", {"project": "api", "key": "K", "value": "é" * 16_385}
    )
    assert text == "The value of 'K' is 32770 bytes, but at most 32768 bytes (32 KiB) are allowed."
    await env.ok(token, "set_env_var", {"project": "api", "key": "K", "value": "x" * 32_768})
    assert len((await stored(env, project_id))["K"]) == 32_768


async def test_set_env_var_rejects_bad_arguments(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    assert await env.error_text(token, "set_env_var", {"project": "api", "key": "K"}) == (
        "Invalid arguments for 'set_env_var': Missing required argument 'value'."
    )
    assert await env.error_text(
        token, "set_env_var", {"project": "api", "key": "K" * 257, "value": "x"}
    ) == ("Invalid arguments for 'set_env_var': Argument 'key' must be at most 256 characters.")
    assert await env.error_text(
        token, "set_env_var", {"project": "api", "key": "K", "value": 5}
    ) == ("Invalid arguments for 'set_env_var': Argument 'value' must be of type string.")
    assert await env.error_text(
        token, "set_env_var", {"project": "api", "key": "K", "value": "x", "secret": True}
    ) == ("Invalid arguments for 'set_env_var': Unknown argument 'secret'; remove it.")


async def test_set_env_var_on_an_unknown_project_is_not_found(env: ProductEnv) -> None:
    ada = await env.user()
    assert (
        await env.error_text(
            await env.token(ada), "set_env_var", {"project": "api", "key": "K", "value": "x"}
        )
        == ADA_NO_API
    )


async def test_set_env_var_refuses_a_501st_variable_but_still_updates_existing_ones(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {f"K{i}": "v" for i in range(500)})
    token = await env.token(ada)
    assert await env.error_text(
        token, "set_env_var", {"project": "api", "key": "ONE_MORE", "value": "x"}
    ) == (
        "Project 'api' would have 501 environment variables, but at most 500 are allowed; "
        "delete some first."
    )
    await env.ok(token, "set_env_var", {"project": "api", "key": "K7", "value": "changed"})
    assert len(await stored(env, project_id)) == 500


async def test_set_env_var_with_an_idempotency_key_changes_nothing_on_retry(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada, "env:write,secrets:reveal")
    args = {"project": "api", "key": "K", "value": "first-value", "idempotency_key": "k-1"}
    first = await env.ok(token, "set_env_var", args)
    await env.ok(token, "set_env_var", {"project": "api", "key": "K", "value": "other-value"})
    assert await env.ok(token, "set_env_var", args) == {**first, "value": SHOWN_ONCE}
    assert (await stored(env, project_id)) == {"K": "other-value"}


async def test_a_team_member_may_set_variables_in_a_team_project(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await env.make_team({ada: "owner", bob: "member"})
    project_id = await env.make_project(ada, "shop", team)
    await env.ok(
        await env.token(bob),
        "set_env_var",
        {"project": "shop", "key": "K", "value": "x", "tenant_id": team},
    )
    assert (await stored(env, project_id)) == {"K": "x"}


# --- list_env_vars ------------------------------------------------------------------------


async def test_list_env_vars_lists_every_variable_by_key_with_values_redacted(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"ZETA": "zeta-value", "ALPHA": "alpha-value"})
    listing = await env.ok(await env.token(ada, "mcp:read"), "list_env_vars", {"project": "api"})
    assert listing == {
        "items": [
            {"key": "ALPHA", "value": REDACTED, "updated_at": NOW_ISO},
            {"key": "ZETA", "value": REDACTED, "updated_at": NOW_ISO},
        ],
        "next_cursor": None,
        "truncated": False,
    }


async def test_list_env_vars_shows_values_to_a_token_with_secrets_reveal(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"ALPHA": "alpha-value"})
    listing = await env.ok(
        await env.token(ada, "env:read,secrets:reveal"), "list_env_vars", {"project": "api"}
    )
    assert listing["items"] == [{"key": "ALPHA", "value": "alpha-value", "updated_at": NOW_ISO}]


async def test_list_env_vars_pages_with_a_cursor(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"A": "1", "B": "2", "C": "3"})
    token = await env.token(ada)
    first = await env.ok(token, "list_env_vars", {"project": "api", "limit": 2})
    assert [i["key"] for i in first["items"]] == ["A", "B"]
    assert (first["next_cursor"], first["truncated"]) == ("o2", True)
    second = await env.ok(
        token, "list_env_vars", {"project": "api", "limit": 2, "cursor": first["next_cursor"]}
    )
    assert [i["key"] for i in second["items"]] == ["C"]
    assert (second["next_cursor"], second["truncated"]) == (None, False)


async def test_list_env_vars_of_a_project_without_variables_is_empty(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    listing = await env.ok(await env.token(ada), "list_env_vars", {"project": "api"})
    assert listing == {"items": [], "next_cursor": None, "truncated": False}


async def test_list_env_vars_rejects_bad_arguments_and_forged_cursors(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    assert await env.error_text(token, "list_env_vars", {}) == (
        "Invalid arguments for 'list_env_vars': Missing required argument 'project'."
    )
    assert await env.error_text(token, "list_env_vars", {"project": "api", "limit": 501}) == (
        "Invalid arguments for 'list_env_vars': Argument 'limit' must be at most 500."
    )
    assert await env.error_text(token, "list_env_vars", {"project": "api", "cursor": "x"}) == (
        "Invalid cursor: pass back a next_cursor value exactly as received."
    )


async def test_list_env_vars_of_an_unknown_project_is_not_found(env: ProductEnv) -> None:
    ada = await env.user()
    assert (
        await env.error_text(await env.token(ada), "list_env_vars", {"project": "api"})
        == ADA_NO_API
    )


async def test_list_env_vars_needs_the_env_read_scope(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    assert await env.error_text(
        await env.token(ada, "vault:read"), "list_env_vars", {"project": "api"}
    ) == (
        "This tool needs the 'env:read' scope, which this token lacks. Mint a token that has it "
        "with `spky mcp token --scopes env:read` and reconnect."
    )


# --- delete_env_var -----------------------------------------------------------------------


async def test_delete_env_var_removes_one_variable_and_logs_its_key(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"A": "a-value-1", "B": "b-value-1"})
    result = await env.ok(
        await env.token(ada, "env:write"), "delete_env_var", {"project": "api", "key": "A"}
    )
    assert result == {"project": "api", "key": "A", "deleted": True}
    assert (await stored(env, project_id)) == {"B": "b-value-1"}
    assert await env.log_messages(project_id) == ["Environment variable A deleted."]


async def test_delete_env_var_of_an_unknown_key_is_not_found(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    assert await env.error_text(
        await env.token(ada), "delete_env_var", {"project": "api", "key": "NOPE"}
    ) == ("No environment variable 'NOPE' on project 'api'; list_env_vars shows its keys.")


async def test_delete_env_var_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "delete_env_var", {"project": "api"}) == (
        "Invalid arguments for 'delete_env_var': Missing required argument 'key'."
    )
    assert await env.error_text(token, "delete_env_var", {"project": "api", "key": ""}) == (
        "Invalid arguments for 'delete_env_var': Argument 'key' must be at least 1 characters."
    )


async def test_delete_env_var_declined_through_elicitation_changes_nothing(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"A": "a-value-1"})
    async with env.sdk(await env.token(ada), mode="legacy", elicitation_callback=decline) as client:
        result = await client.call_tool("delete_env_var", {"project": "api", "key": "A"})
    assert result.is_error is True
    assert result.content[0].model_dump()["text"] == (
        "Not confirmed, so nothing was changed: delete environment variable 'A' from project 'api'."
    )
    assert (await stored(env, project_id)) == {"A": "a-value-1"}


async def test_delete_env_var_confirmed_through_elicitation_deletes(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"A": "a-value-1"})
    async with env.sdk(await env.token(ada), mode="legacy", elicitation_callback=accept) as client:
        result = await client.call_tool("delete_env_var", {"project": "api", "key": "A"})
    assert result.is_error is False
    assert result.structured_content == {"project": "api", "key": "A", "deleted": True}
    assert (await stored(env, project_id)) == {}


# --- bulk_load_env_vars -------------------------------------------------------------------

DOTENV = """\
# database
export DATABASE_URL=postgres://db:5432/app
PORT = 8080   # the port
GREETING="Hello\\n\\"World\\" \\\\o/"
LITERAL='no $escapes\\n here # kept'
EMPTY=
URL=https://x.example/?a=b#frag

PEM="-----BEGIN-----
line two
-----END-----"
PORT=9090
"""


def test_parse_dotenv_reads_comments_exports_quotes_escapes_and_multiline_values() -> None:
    assert env_rules.parse_dotenv(DOTENV) == {
        "DATABASE_URL": "postgres://db:5432/app",
        "GREETING": 'Hello\n"World" \\o/',
        "LITERAL": "no $escapes\\n here # kept",
        "EMPTY": "",
        "URL": "https://x.example/?a=b#frag",
        "PEM": "-----BEGIN-----\nline two\n-----END-----",
        "PORT": "9090",
    }


def test_parse_dotenv_accepts_windows_line_endings_and_an_empty_text() -> None:
    assert env_rules.parse_dotenv("A=1\r\nB='2'\r\n") == {"A": "1", "B": "2"}
    assert env_rules.parse_dotenv("") == {}
    assert env_rules.parse_dotenv("\n  # only a comment\n\n") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "A=1\nB=2\nJUST_A_WORD\n",
            "Line 3 of the dotenv text: 'JUST_A_WORD' has no '='; write KEY=VALUE.",
        ),
        ("A=1\n=2\n", "Line 2 of the dotenv text: the key before '=' is missing; write KEY=VALUE."),
        (
            "A=1\n2FAST=x\n",
            "Line 2 of the dotenv text: key '2FAST' is not valid: use letters, "
            "digits and underscores, not starting with a digit.",
        ),
        (
            'A=1\nB="open\nC=3\n',
            "Line 2 of the dotenv text: the double-quoted value is never "
            'closed; add the closing ".',
        ),
        (
            "A='open\n",
            "Line 1 of the dotenv text: the single-quoted value is never closed; add the "
            "closing '.",
        ),
        (
            'A="x" y\n',
            "Line 1 of the dotenv text: unexpected text 'y' after the closing quote; "
            "quote the whole value.",
        ),
        (
            "A=1\nB=a\x00b\n",
            "Line 2 of the dotenv text: the value of 'B' contains a NUL "
            "character, which environment variables cannot hold.",
        ),
    ],
)
def test_parse_dotenv_names_the_line_of_a_malformed_entry(text: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        env_rules.parse_dotenv(text)
    assert caught.value.message == message


KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
VALUES = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=40)


def double_quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
    return '"' + escaped.replace("\t", "\\t").replace("\n", "\\n") + '"'


@settings(max_examples=200, deadline=None, database=None)
@given(st.dictionaries(KEYS, VALUES, max_size=8), st.booleans())
def test_any_variables_written_as_dotenv_read_back_the_same(
    variables: dict[str, str], export: bool
) -> None:
    prefix = "export " if export else ""
    text = "".join(f"{prefix}{k}={double_quoted(v)}\n# comment\n\n" for k, v in variables.items())
    assert env_rules.parse_dotenv(text) == variables


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_fails_with_a_numbered_line(text: str) -> None:
    try:
        parsed = env_rules.parse_dotenv(text)
    except Invalid as exc:
        assert exc.message.startswith("Line ")
    else:
        for key, value in parsed.items():
            assert env_rules.key_problem(key) is None
            assert env_rules.value_problem(key, value) is None


async def test_bulk_load_env_vars_from_dotenv_merges_and_reports_each_key(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"PORT": "9090", "EMPTY": "was-set", "OTHER": "kept-value"})
    result = await env.ok(
        await env.token(ada, "env:write"),
        "bulk_load_env_vars",
        {"project": "api", "dotenv": DOTENV},
    )
    assert result == {
        "project": "api",
        "replaced": False,
        "created": ["DATABASE_URL", "GREETING", "LITERAL", "PEM", "URL"],
        "updated": ["EMPTY"],
        "unchanged": ["PORT"],
        "deleted": [],
        "total": 8,
    }
    assert (await stored(env, project_id))["GREETING"] == 'Hello\n"World" \\o/'
    assert (await stored(env, project_id))["OTHER"] == "kept-value"
    assert await env.log_messages(project_id) == [
        "Environment variables bulk-loaded: 5 created (DATABASE_URL, GREETING, LITERAL, PEM, "
        "URL), 1 updated (EMPTY)."
    ]


async def test_bulk_load_env_vars_from_a_map_with_replace_deletes_every_other_variable(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"A": "a-value-1", "B": "b-value-1", "C": "c-value-1"})
    result = await env.ok(
        await env.token(ada),
        "bulk_load_env_vars",
        {"project": "api", "values": {"A": "a-value-2", "D": "d-value-1"}, "replace": True},
    )
    assert result == {
        "project": "api",
        "replaced": True,
        "created": ["D"],
        "updated": ["A"],
        "unchanged": [],
        "deleted": ["B", "C"],
        "total": 2,
    }
    assert (await stored(env, project_id)) == {"A": "a-value-2", "D": "d-value-1"}
    assert await env.log_messages(project_id) == [
        "Environment variables replaced: 1 created (D), 1 updated (A), 2 deleted (B, C)."
    ]


async def test_bulk_load_env_vars_with_an_empty_map_and_replace_clears_the_project(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"A": "a-value-1"})
    result = await env.ok(
        await env.token(ada),
        "bulk_load_env_vars",
        {"project": "api", "values": {}, "replace": True},
    )
    assert (result["deleted"], result["total"]) == (["A"], 0)
    assert (await stored(env, project_id)) == {}


async def test_bulk_load_env_vars_with_a_bad_dotenv_line_changes_nothing(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"A": "a-value-1"})
    text = await env.error_text(
        await env.token(ada),
        "bulk_load_env_vars",
        {"project": "api", "dotenv": "B=2\nC=3\nnot a line\n", "replace": True},
    )
    assert text == "Line 3 of the dotenv text: 'not a line' has no '='; write KEY=VALUE."
    assert (await stored(env, project_id)) == {"A": "a-value-1"}
    assert await env.log_messages(project_id) == []


async def test_bulk_load_env_vars_with_a_bad_key_in_the_map_changes_nothing(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    text = await env.error_text(
        await env.token(ada),
        "bulk_load_env_vars",
        {"project": "api", "values": {"GOOD": "1", "BAD-KEY": "2"}},
    )
    assert text == (
        "In values, key 'BAD-KEY' is not valid: use letters, digits and "
        "underscores, not starting with a digit."
    )
    assert (await stored(env, project_id)) == {}


async def test_bulk_load_env_vars_over_the_limit_is_all_or_nothing(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    await seed(env, project_id, {f"K{i}": "v" for i in range(499)})
    values = {"K0": "changed", "NEW_1": "x", "NEW_2": "y"}
    assert await env.error_text(
        await env.token(ada), "bulk_load_env_vars", {"project": "api", "values": values}
    ) == (
        "Project 'api' would have 501 environment variables, but at most 500 are allowed; "
        "delete some first."
    )
    assert (await stored(env, project_id))["K0"] == "v"
    assert len(await stored(env, project_id)) == 499


async def test_bulk_load_env_vars_takes_dotenv_or_values_but_not_both(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    assert await env.error_text(
        token, "bulk_load_env_vars", {"project": "api", "dotenv": "A=1", "values": {"A": "1"}}
    ) == ("Pass the variables either as dotenv text or as a values map, not both.")
    assert await env.error_text(token, "bulk_load_env_vars", {"project": "api"}) == (
        "Pass the variables as dotenv text (dotenv) or as a map (values); neither was given."
    )


async def test_bulk_load_env_vars_rejects_bad_arguments(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    assert await env.error_text(
        token, "bulk_load_env_vars", {"project": "api", "values": {"A": 1}}
    ) == ("Invalid arguments for 'bulk_load_env_vars': Argument 'values.A' must be of type string.")
    assert await env.error_text(
        token, "bulk_load_env_vars", {"project": "api", "dotenv": "A=1", "replace": "yes"}
    ) == ("Invalid arguments for 'bulk_load_env_vars': Argument 'replace' must be of type boolean.")


# --- tenancy ------------------------------------------------------------------------------


async def test_another_users_token_cannot_read_or_change_the_variables(env: ProductEnv) -> None:
    ada, eve = await env.user("ada@example.com"), await env.user("eve@example.com")
    project_id = await env.make_project(ada)
    await seed(env, project_id, {"A": "a-value-1"})
    eve_token = await env.token(eve, "mcp:full,secrets:reveal")
    missing = (
        f"No project '{project_id}' in tenant 'eve's workspace'; list_projects shows the "
        "projects there."
    )
    calls: list[tuple[str, dict[str, Any]]] = [
        ("list_env_vars", {"project": project_id}),
        ("set_env_var", {"project": project_id, "key": "A", "value": "pwned"}),
        ("delete_env_var", {"project": project_id, "key": "A"}),
        ("bulk_load_env_vars", {"project": project_id, "values": {}, "replace": True}),
    ]
    for tool, arguments in calls:
        assert await env.error_text(eve_token, tool, arguments) == missing
    ada_tenant = await env.personal(ada)
    for tool, arguments in calls:
        assert await env.error_text(eve_token, tool, {**arguments, "tenant_id": ada_tenant}) == (
            f"No tenant '{ada_tenant}' is reachable by this token; list_teams shows the tenants "
            "you belong to."
        )
    assert (await stored(env, project_id)) == {"A": "a-value-1"}
