"""The domains tools: list_domains, add_domain and remove_domain, driven through the product
server; and the hostname rules (IDNA, lengths, platform-wide uniqueness)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sp00ky_mcp.product.cloud import domains as domain_rules
from sp00ky_mcp.product.cloud.base import Invalid

from .product_support import NOW, NOW_ISO, ProductEnv, decline

pytestmark = pytest.mark.anyio


async def token_of(env: ProductEnv, hostname: str) -> str:
    found = await env.store.reads.domains.by_hostname(hostname)
    assert found is not None
    return found.verification_token


async def hostnames(env: ProductEnv) -> list[str]:
    return await env.store.reads.domains.hostnames()


async def expected_domain(
    env: ProductEnv,
    hostname: str,
    record: dict[str, str],
    project: str = "api",
    unicode: str | None = None,
) -> dict[str, Any]:
    token = await token_of(env, hostname)
    return {
        "hostname": hostname,
        "unicode_hostname": unicode or hostname,
        "project": project,
        "status": "pending",
        "created_at": NOW_ISO,
        "verified_at": None,
        "dns_records": [
            record,
            {
                "type": "TXT",
                "name": f"_sp00ky-challenge.{hostname}",
                "value": f"sp00ky-verification={token}",
                "purpose": "Proves you control the domain; keep it while the domain is attached.",
            },
        ],
    }


def cname(hostname: str, target: str = "api.us-east.sp00ky.app") -> dict[str, str]:
    return {
        "type": "CNAME",
        "name": hostname,
        "value": target,
        "purpose": "Routes the hostname to the project.",
    }


def alias(hostname: str, target: str = "api.us-east.sp00ky.app") -> dict[str, str]:
    return {
        "type": "ALIAS",
        "name": hostname,
        "value": target,
        "purpose": "Routes the apex domain to the project; use your DNS provider's ALIAS, "
        "ANAME or CNAME-flattening record.",
    }


# --- hostname rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "ascii_name", "unicode_name"),
    [
        ("WWW.Example.COM.", "www.example.com", "www.example.com"),
        ("  shop.example.org ", "shop.example.org", "shop.example.org"),
        ("Bücher.example", "xn--bcher-kva.example", "bücher.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example", "bücher.example"),
        ("a-b.c0.example.com", "a-b.c0.example.com", "a-b.c0.example.com"),
        ("münchen.DE", "xn--mnchen-3ya.de", "münchen.de"),
    ],
)
def test_hostnames_are_lower_cased_idna_encoded_and_lose_a_trailing_dot(
    given: str, ascii_name: str, unicode_name: str
) -> None:
    host = domain_rules.parse_hostname(given)
    assert (host.ascii, host.unicode) == (ascii_name, unicode_name)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (".", "The hostname is empty; pass a domain name such as www.example.com."),
        (
            "192.168.0.1",
            "'192.168.0.1' is an IP address; a custom domain needs a hostname such as "
            "www.example.com.",
        ),
        (
            "2001:db8::1",
            "'2001:db8::1' is an IP address; a custom domain needs a hostname such as "
            "www.example.com.",
        ),
        (
            "[::1]",
            "'[::1]' is an IP address; a custom domain needs a hostname such as www.example.com.",
        ),
        (
            "localhost",
            "'localhost' is a single label; pass a full domain name such as localhost.example.com.",
        ),
        (
            "my_app.example.com",
            "'my_app.example.com' contains an underscore, which hostnames "
            "cannot hold; use a hyphen instead.",
        ),
        ("www..example.com", "'www..example.com' has an empty label; remove the extra dot."),
        ("example.com..", "'example.com.' has an empty label; remove the extra dot."),
        (
            "-bad.example.com",
            "'-bad.example.com' has a label, '-bad', with characters a hostname "
            "cannot hold; use letters, digits and inner hyphens.",
        ),
        (
            "exa mple.com",
            "'exa mple.com' has a label, 'exa mple', with characters a hostname "
            "cannot hold; use letters, digits and inner hyphens.",
        ),
        (
            "a⒈b.example.com",
            "'a⒈b.example.com' has a label, 'a⒈b', with characters a hostname "
            "cannot hold; use letters, digits and inner hyphens.",
        ),
        (
            "xn--zz.example.com",
            "'xn--zz.example.com' has a label, 'xn--zz', that is not a valid "
            "internationalised domain label; check its spelling.",
        ),
        (
            "example.123",
            "'example.123' ends in a numeric label, which no top-level domain is; pass "
            "a domain name such as www.example.com.",
        ),
        (
            "app.sp00ky.app",
            "'app.sp00ky.app' is under a domain of the Sp00ky platform itself; add a "
            "domain you control.",
        ),
        (
            "sp00ky.cloud",
            "'sp00ky.cloud' is under a domain of the Sp00ky platform itself; add a "
            "domain you control.",
        ),
    ],
)
def test_hostnames_that_cannot_be_custom_domains_are_refused(given: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        domain_rules.parse_hostname(given)
    assert caught.value.message == message


def test_labels_may_have_63_characters_but_not_64() -> None:
    assert domain_rules.parse_hostname("a" * 63 + ".example.com").ascii == "a" * 63 + ".example.com"
    with pytest.raises(Invalid) as caught:
        domain_rules.parse_hostname("a" * 64 + ".example.com")
    assert caught.value.message == (
        f"'{('a' * 64 + '.example.com')[:70]}…' has a label, '{'a' * 64}', longer than 63 "
        "characters once encoded; shorten it."
    )


def test_an_internationalised_label_counts_its_encoded_length() -> None:
    label = "ü" * 60
    with pytest.raises(Invalid) as caught:
        domain_rules.parse_hostname(label + ".example.com")
    assert caught.value.message.endswith("longer than 63 characters once encoded; shorten it.")


def test_a_hostname_must_leave_room_for_its_challenge_record() -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 39, "com"])
    assert len(longest) == 235
    assert domain_rules.parse_hostname(longest).ascii == longest
    with pytest.raises(Invalid) as caught:
        domain_rules.parse_hostname(longest.replace("d" * 39, "d" * 40))
    assert caught.value.message.endswith(
        "is 236 characters once encoded; at most 235 fit, so that its _sp00ky-challenge record "
        "stays within DNS's 253."
    )


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.lists(st.text("abcxyz-_.09äß⒈", min_size=0, max_size=12), min_size=1, max_size=5).map(
            ".".join
        ),
    )
)
def test_any_text_is_a_valid_hostname_or_refused_with_a_reason(text: str) -> None:
    try:
        host = domain_rules.parse_hostname(text)
    except Invalid as exc:
        assert exc.message.endswith(".")
    else:
        labels = host.ascii.split(".")
        assert len(labels) >= 2
        assert all(1 <= len(label) <= 63 for label in labels)
        assert len(host.ascii) <= 235
        assert host.ascii == host.ascii.lower() and host.ascii.isascii()
        assert "_" not in host.ascii
        assert domain_rules.parse_hostname(host.ascii) == host
        assert domain_rules.parse_hostname(host.unicode) == host


# --- add_domain ---------------------------------------------------------------------------


async def test_add_domain_for_a_subdomain_returns_a_cname_and_a_txt_challenge(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    result = await env.ok(
        await env.token(ada, "domains:write"),
        "add_domain",
        {"project": "api", "hostname": "WWW.Example.com."},
    )
    assert result == await expected_domain(env, "www.example.com", cname("www.example.com"))
    assert len(await token_of(env, "www.example.com")) == 32
    assert await env.log_messages(project_id) == [
        "Domain www.example.com added; pending verification of its _sp00ky-challenge TXT record."
    ]


@pytest.mark.parametrize("hostname", ["example.com", "example.co.uk"])
async def test_add_domain_for_an_apex_returns_an_alias_record(
    env: ProductEnv, hostname: str
) -> None:
    ada = await env.user()
    await env.make_project(ada, "shop", region="eu-west")
    result = await env.ok(
        await env.token(ada), "add_domain", {"project": "shop", "hostname": hostname}
    )
    assert result == await expected_domain(
        env, hostname, alias(hostname, "shop.eu-west.sp00ky.app"), project="shop"
    )


async def test_add_domain_stores_an_internationalised_name_in_punycode(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    result = await env.ok(
        await env.token(ada), "add_domain", {"project": "api", "hostname": "shop.Bücher.example"}
    )
    assert result == await expected_domain(
        env,
        "shop.xn--bcher-kva.example",
        cname("shop.xn--bcher-kva.example"),
        unicode="shop.bücher.example",
    )


async def test_each_domain_gets_its_own_random_challenge_token(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    await env.ok(token, "add_domain", {"project": "api", "hostname": "a.example.com"})
    await env.ok(token, "add_domain", {"project": "api", "hostname": "b.example.com"})
    assert await token_of(env, "a.example.com") != await token_of(env, "b.example.com")


async def test_add_domain_twice_on_the_same_project_is_a_conflict(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    await env.ok(token, "add_domain", {"project": "api", "hostname": "www.example.com"})
    assert await env.error_text(
        token, "add_domain", {"project": "api", "hostname": "WWW.EXAMPLE.COM."}
    ) == (
        "'www.example.com' is already attached to project 'api'; list_domains shows its DNS "
        "records."
    )
    assert await hostnames(env) == ["www.example.com"]


async def test_add_domain_held_by_another_project_of_the_tenant_names_that_project(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    await env.make_project(ada, "api")
    await env.make_project(ada, "web")
    token = await env.token(ada)
    await env.ok(token, "add_domain", {"project": "web", "hostname": "www.example.com"})
    assert await env.error_text(
        token, "add_domain", {"project": "api", "hostname": "www.example.com"}
    ) == (
        "'www.example.com' is already attached to project 'web'; remove it there first with "
        "remove_domain."
    )


async def test_a_hostname_held_by_another_tenant_is_a_conflict_that_does_not_name_it(
    env: ProductEnv,
) -> None:
    ada, eve = await env.user("ada@example.com"), await env.user("eve@example.com")
    await env.make_project(ada, "secret-project")
    await env.make_project(eve, "api")
    await env.ok(
        await env.token(ada),
        "add_domain",
        {"project": "secret-project", "hostname": "www.example.com"},
    )
    text = await env.error_text(
        await env.token(eve, "mcp:full,secrets:reveal"),
        "add_domain",
        {"project": "api", "hostname": "www.example.com"},
    )
    assert text == (
        "'www.example.com' is already in use on Sp00ky Cloud by another account; if "
        "you own the domain, ask its current holder to remove it or contact support."
    )
    assert "secret-project" not in text and "ada" not in text
    assert await hostnames(env) == ["www.example.com"]


async def test_a_removed_hostname_can_be_added_by_another_tenant(env: ProductEnv) -> None:
    ada, eve = await env.user("ada@example.com"), await env.user("eve@example.com")
    await env.make_project(ada)
    await env.make_project(eve)
    ada_token, eve_token = await env.token(ada), await env.token(eve)
    await env.ok(ada_token, "add_domain", {"project": "api", "hostname": "www.example.com"})
    await env.ok(ada_token, "remove_domain", {"project": "api", "hostname": "www.example.com"})
    await env.ok(eve_token, "add_domain", {"project": "api", "hostname": "www.example.com"})


async def test_add_domain_refuses_an_invalid_hostname_with_its_reason(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    assert await env.error_text(
        await env.token(ada), "add_domain", {"project": "api", "hostname": "10.0.0.1"}
    ) == ("'10.0.0.1' is an IP address; a custom domain needs a hostname such as www.example.com.")
    assert await hostnames(env) == []


async def test_add_domain_rejects_bad_arguments(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    assert await env.error_text(token, "add_domain", {"project": "api"}) == (
        "Invalid arguments for 'add_domain': Missing required argument 'hostname'."
    )
    assert await env.error_text(token, "add_domain", {"project": "api", "hostname": ""}) == (
        "Invalid arguments for 'add_domain': Argument 'hostname' must be at least 1 characters."
    )
    assert await env.error_text(token, "add_domain", {"project": "api", "hostname": "x" * 301}) == (
        "Invalid arguments for 'add_domain': Argument 'hostname' must be at most 300 characters."
    )


async def test_a_team_member_may_add_a_domain(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await env.make_team({ada: "owner", bob: "member"})
    await env.make_project(ada, "shop", team)
    await env.ok(
        await env.token(bob),
        "add_domain",
        {"project": "shop", "hostname": "shop.example.com", "tenant_id": team},
    )
    assert await hostnames(env) == ["shop.example.com"]


# --- list_domains -------------------------------------------------------------------------


async def test_list_domains_shows_a_projects_domains_pending_verification(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    await env.ok(token, "add_domain", {"project": "api", "hostname": "www.example.com"})
    await env.ok(token, "add_domain", {"project": "api", "hostname": "example.com"})
    listing = await env.ok(await env.token(ada, "domains:read"), "list_domains", {"project": "api"})
    assert listing == {
        "items": [
            await expected_domain(env, "example.com", alias("example.com")),
            await expected_domain(env, "www.example.com", cname("www.example.com")),
        ],
        "next_cursor": None,
        "truncated": False,
    }


async def test_list_domains_without_a_project_lists_the_whole_tenant(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada, "api")
    await env.make_project(ada, "web")
    token = await env.token(ada)
    await env.ok(token, "add_domain", {"project": "web", "hostname": "b.example.com"})
    await env.ok(token, "add_domain", {"project": "api", "hostname": "a.example.com"})
    listing = await env.ok(token, "list_domains", {})
    assert [(d["hostname"], d["project"]) for d in listing["items"]] == [
        ("a.example.com", "api"),
        ("b.example.com", "web"),
    ]
    assert listing["items"][1]["dns_records"][0] == cname("b.example.com", "web.us-east.sp00ky.app")
    page = await env.ok(token, "list_domains", {"limit": 1})
    assert ([d["hostname"] for d in page["items"]], page["next_cursor"]) == (
        ["a.example.com"],
        "o1",
    )


async def test_list_domains_shows_a_verified_domain_with_its_time(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    await env.ok(token, "add_domain", {"project": "api", "hostname": "www.example.com"})
    async with env.store.transaction() as tx:  # what the hosted platform's DNS check would do
        await tx.domains.mark_verified("www.example.com", NOW + 60)
    listing = await env.ok(token, "list_domains", {"project": "api"})
    assert (listing["items"][0]["status"], listing["items"][0]["verified_at"]) == (
        "verified",
        "2026-01-01T00:01:00.000Z",
    )


async def test_list_domains_rejects_bad_arguments_and_unknown_projects(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "list_domains", {"limit": 201}) == (
        "Invalid arguments for 'list_domains': Argument 'limit' must be at most 200."
    )
    assert await env.error_text(token, "list_domains", {"project": "api"}) == (
        "No project 'api' in tenant 'ada's workspace'; list_projects shows the projects there."
    )


# --- remove_domain ------------------------------------------------------------------------


async def test_remove_domain_detaches_it_and_logs_it(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada)
    await env.ok(token, "add_domain", {"project": "api", "hostname": "www.example.com"})
    result = await env.ok(
        token, "remove_domain", {"project": "api", "hostname": "WWW.example.com."}
    )
    assert result == {"hostname": "www.example.com", "project": "api", "removed": True}
    assert await hostnames(env) == []
    assert (await env.log_messages(project_id))[-1] == "Domain www.example.com removed."


async def test_remove_domain_of_an_unknown_hostname_is_not_found(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    assert await env.error_text(
        await env.token(ada), "remove_domain", {"project": "api", "hostname": "www.example.com"}
    ) == ("No domain 'www.example.com' on project 'api'; list_domains shows its domains.")


async def test_remove_domain_declined_through_elicitation_keeps_it(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    await env.ok(token, "add_domain", {"project": "api", "hostname": "www.example.com"})
    async with env.sdk(token, mode="legacy", elicitation_callback=decline) as client:
        result = await client.call_tool(
            "remove_domain", {"project": "api", "hostname": "www.example.com"}
        )
    assert result.is_error is True
    assert result.content[0].model_dump()["text"] == (
        "Not confirmed, so nothing was changed: remove domain 'www.example.com' from project "
        "'api', so its traffic no longer reaches Sp00ky."
    )
    assert await hostnames(env) == ["www.example.com"]


async def test_remove_domain_in_a_team_needs_an_admin(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await env.make_team({ada: "owner", bob: "member"})
    await env.make_project(ada, "shop", team)
    args = {"project": "shop", "hostname": "shop.example.com", "tenant_id": team}
    await env.ok(await env.token(ada), "add_domain", args)
    assert await env.error_text(await env.token(bob), "remove_domain", args) == (
        "Only a team admin or above may remove domains; your role in 'Acme' is member."
    )
    assert await hostnames(env) == ["shop.example.com"]


async def test_remove_domain_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "remove_domain", {"hostname": "www.example.com"}) == (
        "Invalid arguments for 'remove_domain': Missing required argument 'project'."
    )


# --- tenancy ------------------------------------------------------------------------------


async def test_another_users_token_cannot_see_or_change_the_domains(env: ProductEnv) -> None:
    ada, eve = await env.user("ada@example.com"), await env.user("eve@example.com")
    project_id = await env.make_project(ada)
    await env.ok(
        await env.token(ada), "add_domain", {"project": "api", "hostname": "www.example.com"}
    )
    eve_token = await env.token(eve, "mcp:full,secrets:reveal")
    missing = (
        f"No project '{project_id}' in tenant 'eve's workspace'; list_projects shows the "
        "projects there."
    )
    assert await env.error_text(eve_token, "list_domains", {"project": project_id}) == missing
    assert (
        await env.error_text(
            eve_token, "add_domain", {"project": project_id, "hostname": "x.example.com"}
        )
        == missing
    )
    assert (
        await env.error_text(
            eve_token, "remove_domain", {"project": project_id, "hostname": "www.example.com"}
        )
        == missing
    )
    assert await env.ok(eve_token, "list_domains", {}) == {
        "items": [],
        "next_cursor": None,
        "truncated": False,
    }
    assert await hostnames(env) == ["www.example.com"]
