"""The `mcp_live_` token format, how tokens are kept, and the scope catalogue of the product
page (parse, expand, the instructions a token's model is given, the missing-scope message)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sp00ky_mcp.product import scopes, tokens
from sp00ky_mcp.product.accounts import AccountError, Accounts, arguments_digest
from sp00ky_mcp.product.store import Store
from sp00ky_mcp.product.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

BASE62 = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
CATALOGUE = (
    "projects:read",
    "deployments:read",
    "logs:read",
    "env:read",
    "vault:read",
    "backups:read",
    "domains:read",
    "links:read",
    "tenants:read",
    "billing:read",
    "projects:write",
    "deployments:write",
    "env:write",
    "vault:write",
    "backups:write",
    "domains:write",
    "links:write",
    "tenants:write",
    "billing:write",
    "mcp:read",
    "mcp:full",
    "secrets:reveal",
)
READS = frozenset(s for s in CATALOGUE if s.endswith(":read") and not s.startswith("mcp:"))
WRITES = frozenset(s for s in CATALOGUE if s.endswith(":write"))


@pytest.fixture
def accounts(store: Store) -> Accounts:
    """Accounts on a fresh store of each backend."""
    return Accounts(store)


# --- the token format ------------------------------------------------------------------------


def test_a_minted_token_is_the_prefix_then_38_base62_characters() -> None:
    token = tokens.mint()
    assert token.startswith("mcp_live_")
    assert len(token) == len("mcp_live_") + 32 + 6 == tokens.TOKEN_LENGTH
    assert set(token[len("mcp_live_") :]) <= BASE62


def test_two_minted_tokens_differ() -> None:
    assert len({tokens.mint() for _ in range(50)}) == 50


def test_a_minted_token_is_well_formed() -> None:
    assert tokens.well_formed(tokens.mint()) is True


def test_the_last_six_characters_are_the_checksum_of_the_random_part() -> None:
    token = tokens.mint()
    random_part, check = token[9:41], token[41:]
    assert tokens.checksum(random_part) == check


def test_changing_any_one_character_after_the_prefix_breaks_the_checksum() -> None:
    token = tokens.mint()
    for position in range(len(tokens.PREFIX), len(token)):
        replacement = "a" if token[position] != "a" else "b"
        changed = token[:position] + replacement + token[position + 1 :]
        assert tokens.well_formed(changed) is False, position


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mcp_live_",
        "spk_live_" + "A" * 38,
        "mcp_test_" + "A" * 38,
        "MCP_LIVE_" + "A" * 38,
    ],
)
def test_text_without_the_exact_prefix_is_not_a_token(text: str) -> None:
    assert tokens.well_formed(text) is False


def test_a_token_cut_short_or_extended_is_not_well_formed() -> None:
    token = tokens.mint()
    assert tokens.well_formed(token[:-1]) is False
    assert tokens.well_formed(token + "A") is False


def test_a_token_with_a_non_base62_character_is_not_well_formed() -> None:
    token = tokens.mint()
    assert tokens.well_formed(token[:20] + "-" + token[21:]) is False


def test_the_digest_is_the_sha256_hex_of_the_token() -> None:
    token = tokens.mint()
    assert tokens.digest(token) == hashlib.sha256(token.encode()).hexdigest()
    assert len(tokens.digest(token)) == 64


def test_the_hint_is_the_prefix_and_four_characters_and_the_mask_hides_the_rest() -> None:
    token = "mcp_live_Abcd" + "x" * 34
    assert tokens.hint(token) == "mcp_live_Abcd"
    assert tokens.masked(tokens.hint(token)) == "mcp_live_Abcd••••••"


# --- how tokens are kept ---------------------------------------------------------------------


async def test_only_the_hash_of_a_token_is_stored(accounts: Accounts) -> None:
    user = await accounts.ensure_user("ada@example.com")
    record, secret = await accounts.mint(user, "ci", ("mcp:read",), 90)
    found = await accounts.store.reads.accounts.token_by_digest(tokens.digest(secret))
    shot = await accounts.store.reads.support.snapshot((), {})
    held = [value for rows in shot.values() for row in rows for value in row]
    assert found == record
    assert record.hint == secret[:13]
    assert [value for value in held if secret in str(value)] == []


def files_holding(directory: Path, secret: str) -> tuple[int, list[str]]:
    """How many files the directory holds, and the names of those that contain `secret`."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    return len(files), [p.name for p in files if secret.encode() in p.read_bytes()]


async def test_no_file_of_the_data_directory_contains_the_secret(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    accounts = Accounts(store)
    user = await accounts.ensure_user("ada@example.com")
    _, secret = await accounts.mint(user, "ci", ("mcp:read",), 90)
    await store.close()
    count, holding = files_holding(tmp_path, secret)
    assert count > 0
    assert holding == []


async def test_a_token_record_holds_what_the_issue_lists(accounts: Accounts) -> None:
    clock_accounts = Accounts(accounts.store, clock=lambda: 1_700_000_000.0)
    user = await clock_accounts.ensure_user("ada@example.com")
    record, secret = await clock_accounts.mint(user, " ci ", ("logs:read", "env:read"), 30)
    assert record.id.startswith("tok_")
    assert (record.user_id, record.name, record.scopes) == (
        user.id,
        "ci",
        ("logs:read", "env:read"),
    )
    assert record.created_at == 1_700_000_000.0
    assert record.expires_at == 1_700_000_000.0 + 30 * 86400
    assert (record.last_used_at, record.revoked_at) == (None, None)
    assert await clock_accounts.find(secret) == record


async def test_a_token_that_never_expires_has_no_expiry(accounts: Accounts) -> None:
    user = await accounts.ensure_user("ada@example.com")
    record, _ = await accounts.mint(user, "forever", ("mcp:read",), None)
    assert record.expires_at is None
    assert record.status(10**12) == "active"


async def test_a_token_is_expired_from_its_expiry_on_and_revoked_wins(accounts: Accounts) -> None:
    clock_accounts = Accounts(accounts.store, clock=lambda: 1000.0)
    user = await clock_accounts.ensure_user("ada@example.com")
    record, _ = await clock_accounts.mint(user, "short", ("mcp:read",), 1)
    assert record.status(1000.0 + 86399) == "active"
    assert record.status(1000.0 + 86400) == "expired"
    revoked = await clock_accounts.revoke(user, "short")
    assert (await clock_accounts.list_tokens(user))[0].status(0) == "revoked"
    assert revoked.id == record.id


async def test_minting_with_a_blank_name_is_refused(accounts: Accounts) -> None:
    user = await accounts.ensure_user("ada@example.com")
    with pytest.raises(AccountError) as caught:
        await accounts.mint(user, "  ", ("mcp:read",), 90)
    assert str(caught.value) == "A token needs a name; pass --name."


async def test_a_name_longer_than_a_list_can_show_is_refused_and_nothing_is_stored(
    accounts: Accounts,
) -> None:
    user = await accounts.ensure_user("ada@example.com")
    await accounts.mint(user, "n" * 100, ("mcp:read",), 90)
    with pytest.raises(AccountError) as caught:
        await accounts.mint(user, "n" * 101, ("mcp:read",), 90)
    assert str(caught.value) == "A token's name is at most 100 characters; pass a shorter --name."
    assert [t.name for t in await accounts.list_tokens(user)] == ["n" * 100]


async def test_minting_with_an_unknown_scope_is_refused_and_nothing_is_stored(
    accounts: Accounts,
) -> None:
    user = await accounts.ensure_user("ada@example.com")
    with pytest.raises(scopes.UnknownScope):
        await accounts.mint(user, "bad", ("projects:delete",), 90)
    assert await accounts.list_tokens(user) == []


async def test_an_unknown_secret_finds_no_token(accounts: Accounts) -> None:
    assert await accounts.find(tokens.mint()) is None


async def test_revoking_by_name_when_two_active_tokens_share_it_asks_for_the_id(
    accounts: Accounts,
) -> None:
    user = await accounts.ensure_user("ada@example.com")
    await accounts.mint(user, "ci", ("mcp:read",), 90)
    await accounts.mint(user, "ci", ("mcp:read",), 90)
    with pytest.raises(AccountError) as caught:
        await accounts.revoke(user, "ci")
    assert str(caught.value) == "Several active tokens are named 'ci'; revoke by id."


async def test_a_user_cannot_revoke_another_users_token(accounts: Accounts) -> None:
    ada = await accounts.ensure_user("ada@example.com")
    bob = await accounts.ensure_user("bob@example.com")
    record, _ = await accounts.mint(ada, "ci", ("mcp:read",), 90)
    with pytest.raises(AccountError) as caught:
        await accounts.revoke(bob, record.id)
    assert str(caught.value) == f"No active token '{record.id}'; `spky mcp tokens` lists them."


async def test_revoking_changes_the_store_version_that_caches_watch(accounts: Accounts) -> None:
    user = await accounts.ensure_user("ada@example.com")
    await accounts.mint(user, "ci", ("mcp:read",), 90)
    before = await accounts.store.version()
    await accounts.revoke(user, "ci")
    assert await accounts.store.version() != before


# --- the scope catalogue ---------------------------------------------------------------------


def test_the_valid_scopes_are_exactly_the_product_pages_catalogue() -> None:
    assert scopes.VALID == CATALOGUE


def test_parse_without_scopes_gives_the_read_only_default() -> None:
    assert scopes.parse("") == ("mcp:read",)
    assert scopes.parse(" , ") == ("mcp:read",)
    assert scopes.parse([]) == ("mcp:read",)


def test_parse_strips_and_deduplicates_in_the_given_order() -> None:
    assert scopes.parse(" logs:read, env:read ,logs:read") == ("logs:read", "env:read")


def test_parse_accepts_a_list() -> None:
    assert scopes.parse(["mcp:full", "secrets:reveal"]) == ("mcp:full", "secrets:reveal")


def test_parse_rejects_an_unknown_scope_listing_the_valid_ones() -> None:
    with pytest.raises(scopes.UnknownScope) as caught:
        scopes.parse("logs:read,logs:write")
    assert caught.value.unknown == ["logs:write"]
    assert str(caught.value) == "Unknown scope: logs:write. Valid scopes: " + (
        ", ".join(CATALOGUE) + "."
    )


def test_parse_names_every_unknown_scope() -> None:
    with pytest.raises(scopes.UnknownScope) as caught:
        scopes.parse("admin, mcp:everything")
    assert str(caught.value).startswith("Unknown scopes: admin, mcp:everything. Valid scopes: ")


def test_mcp_read_expands_to_every_read_scope() -> None:
    assert scopes.expand(["mcp:read"]) == READS
    assert len(READS) == 10


def test_mcp_full_expands_to_every_read_and_write_scope_but_not_secrets_reveal() -> None:
    granted = scopes.expand(["mcp:full"])
    assert granted == READS | WRITES
    assert "secrets:reveal" not in granted


def test_secrets_reveal_is_granted_only_when_asked_for() -> None:
    assert scopes.expand(["mcp:full", "secrets:reveal"]) == READS | WRITES | {"secrets:reveal"}


def test_concrete_scopes_expand_to_themselves() -> None:
    assert scopes.expand(["logs:read", "env:write"]) == {"logs:read", "env:write"}


def test_the_missing_scope_message_names_the_scope_and_the_command() -> None:
    assert scopes.missing_scope_message("env:write") == (
        "This tool needs the 'env:write' scope, which this token lacks. Mint a token that has "
        "it with `spky mcp token --scopes env:write` and reconnect."
    )


def test_instructions_for_a_logs_only_token_say_what_it_can_and_what_would_unlock_more() -> None:
    assert scopes.instructions(scopes.expand(["logs:read"])) == (
        "Sp00ky Cloud MCP server. Tools act in your personal tenant unless you pass tenant_id.\n"
        "This token can: read recent project logs.\n"
        "Secret values (env values, vault material) are shown as ***REDACTED.\n"
        "Not granted: projects:read would let you list and inspect projects; "
        "deployments:read would let you see deployment status; "
        "env:read would let you list environment variables; "
        "vault:read would let you see vault status; "
        "backups:read would let you list and inspect backups; "
        "domains:read would let you list custom domains (and 13 more). "
        "Ask the user to mint a token with the scope (`spky mcp token --scopes ...`)."
    )


def test_instructions_for_a_token_with_every_scope_have_nothing_left_to_unlock() -> None:
    text = scopes.instructions(scopes.expand(["mcp:full", "secrets:reveal"]))
    lines = text.split("\n")
    assert len(lines) == 2
    assert lines[1].startswith("This token can: list and inspect projects; ")
    assert "REDACTED" not in text
    assert "Not granted" not in text


def test_instructions_for_a_read_only_token_point_at_the_write_scopes() -> None:
    text = scopes.instructions(scopes.expand(["mcp:read"]))
    assert "projects:write would let you create and destroy projects" in text
    assert "(and 4 more)" in text
    assert "Secret values (env values, vault material) are shown as ***REDACTED." in text


def test_instructions_without_authentication_say_every_tool_is_available() -> None:
    assert scopes.instructions(None) == (
        "This server runs without authentication; every tool is available."
    )


def test_every_concrete_scope_has_a_description_of_what_it_grants() -> None:
    assert set(scopes.GRANTS) == set(CATALOGUE) - {"mcp:read", "mcp:full"}
    assert all(scopes.GRANTS.values())


def test_the_audit_digest_is_the_sha256_of_the_sorted_arguments() -> None:
    expected = hashlib.sha256(b'{"a":2,"b":{"c":"x"}}').hexdigest()
    assert arguments_digest({"b": {"c": "x"}, "a": 2}) == expected
