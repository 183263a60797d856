"""The logs tool: get_logs, bounded and non-streaming, with filters and a cursor back."""

from __future__ import annotations

from typing import Any

import pytest

from .product_support import NOW, ProductEnv, assert_declared

pytestmark = pytest.mark.anyio


async def logs(product: ProductEnv, token: str, **args: Any) -> Any:
    """get_logs' structured result, checked against its outputSchema."""
    return await product.ok(token, "get_logs", {"project": "api", **args})


async def setup(product: ProductEnv, scopes: str = "mcp:full") -> tuple[str, str]:
    """A project 'api' (services web, ssr) whose only log line is its creation, at NOW."""
    product.freeze()
    token, created = await product.token_and_project(["web", "ssr"], scopes)
    return token, str(created["id"])


async def seed(
    product: ProductEnv, project_id: str, count: int, service: str | None = "web"
) -> None:
    """`count` lines, one a second after NOW: "line 1" ... "line N"."""
    async with product.store.transaction() as tx:
        for n in range(1, count + 1):
            await tx.logs.add(project_id, service, NOW + n, "info", f"line {n}")


def messages(result: dict[str, Any]) -> list[str]:
    return [line["message"] for line in result["items"]]


def test_get_logs_declares_its_scope_and_annotations() -> None:
    assert_declared({"get_logs": ("logs:read", True, False, True)})


async def test_get_logs_returns_the_last_100_lines_newest_last(product: ProductEnv) -> None:
    token, project_id = await setup(product)
    await seed(product, project_id, 150)
    result = await logs(product, token)
    assert messages(result) == [f"line {n}" for n in range(51, 151)]
    assert result["items"][-1] == {
        "at": "2026-01-01T00:02:30.000Z",
        "service": "web",
        "level": "info",
        "message": "line 150",
    }
    assert result["truncated"] is True
    assert result["next_cursor"] is not None


async def test_the_cursor_reads_further_back_until_nothing_is_left(product: ProductEnv) -> None:
    token, project_id = await setup(product)
    await seed(product, project_id, 25)
    first = await logs(product, token, lines=10)
    second = await logs(product, token, lines=10, cursor=first["next_cursor"])
    third = await logs(product, token, lines=10, cursor=second["next_cursor"])
    assert messages(first) == [f"line {n}" for n in range(16, 26)]
    assert messages(second) == [f"line {n}" for n in range(6, 16)]
    assert messages(third) == [
        "Project 'api' created in us-east with services ssr, web.",
        *[f"line {n}" for n in range(1, 6)],
    ]
    assert (third["truncated"], third["next_cursor"]) == (False, None)


async def test_the_cursor_is_not_moved_by_lines_written_after_it(product: ProductEnv) -> None:
    token, project_id = await setup(product)
    await seed(product, project_id, 10)
    first = await logs(product, token, lines=5)
    await seed(product, project_id, 3, "ssr")
    second = await logs(product, token, lines=5, cursor=first["next_cursor"])
    assert messages(second) == [f"line {n}" for n in range(1, 6)]


async def test_get_logs_returns_at_most_1000_lines(product: ProductEnv) -> None:
    token, project_id = await setup(product)
    await seed(product, project_id, 1200)
    result = await logs(product, token, lines=1000)
    assert len(result["items"]) == 1000
    assert result["items"][0]["message"] == "line 201"
    assert result["truncated"] is True
    assert await product.error_text(token, "get_logs", {"project": "api", "lines": 1001}) == (
        "Invalid arguments for 'get_logs': Argument 'lines' must be at most 1000."
    )
    assert await product.error_text(token, "get_logs", {"project": "api", "lines": 0}) == (
        "Invalid arguments for 'get_logs': Argument 'lines' must be at least 1."
    )


async def test_get_logs_filters_by_service(product: ProductEnv) -> None:
    token, project_id = await setup(product)
    await seed(product, project_id, 3, "web")
    await seed(product, project_id, 2, "ssr")
    result = await logs(product, token, service="ssr")
    assert [(line["service"], line["message"]) for line in result["items"]] == [
        ("ssr", "line 1"),
        ("ssr", "line 2"),
    ]
    assert result["truncated"] is False
    assert await product.error_text(token, "get_logs", {"project": "api", "service": "db"}) == (
        "No service 'db' in project 'api'; its services are ssr, web."
    )


@pytest.mark.parametrize(
    ("since", "first"),
    [
        ("2026-01-01T00:00:08Z", 8),
        ("2026-01-01T00:00:08", 8),
        ("2026-01-01T01:00:08+01:00", 8),
        ("3s", 8),
        ("1m", 1),
    ],
)
async def test_get_logs_filters_by_since(product: ProductEnv, since: str, first: int) -> None:
    token, project_id = await setup(product)
    await seed(product, project_id, 10)
    product.freeze(NOW + 11)
    result = await logs(product, token, since=since, service="web")
    assert messages(result) == [f"line {n}" for n in range(first, 11)]


async def test_get_logs_accepts_hours_days_and_weeks_and_refuses_other_times(
    product: ProductEnv,
) -> None:
    token, project_id = await setup(product)
    await seed(product, project_id, 2)
    product.freeze(NOW + 2 * 86400)
    assert messages(await logs(product, token, since="47h")) == []
    assert len((await logs(product, token, since="2d"))["items"]) == 3
    assert len((await logs(product, token, since="1w"))["items"]) == 3
    for since in ("yesterday", "15 minutes", "5y", "2026-13-01"):
        assert await product.error_text(token, "get_logs", {"project": "api", "since": since}) == (
            "since must be an ISO-8601 timestamp such as 2025-01-31T12:00:00Z or a relative time "
            "such as 30s, 15m, 2h or 1d."
        )


async def test_get_logs_filters_by_text_ignoring_case(product: ProductEnv) -> None:
    token, project_id = await setup(product)
    await seed(product, project_id, 12)
    result = await logs(product, token, contains="LINE 1")
    assert messages(result) == ["line 1", "line 10", "line 11", "line 12"]
    paged = await logs(product, token, contains="line 1", lines=3)
    assert messages(paged) == ["line 10", "line 11", "line 12"]
    rest = await logs(product, token, contains="line 1", lines=3, cursor=paged["next_cursor"])
    assert (messages(rest), rest["truncated"]) == (["line 1"], False)


async def test_secret_values_are_masked_in_log_lines_and_cannot_be_searched(
    product: ProductEnv,
) -> None:
    token, project_id = await setup(product)
    async with product.store.transaction() as tx:
        await tx.env.put(project_id, "API_KEY", "sk-live-4242", 0.0)
    product.freeze(NOW + 1)
    async with product.store.transaction() as tx:
        await product.cloud.log(tx, project_id, "web", "warning", "retrying with key sk-live-4242")
    masked = await logs(product, token, service="web")
    assert messages(masked) == ["retrying with key ***REDACTED"]
    assert (await logs(product, token, contains="sk-live"))["items"] == []
    assert messages(await logs(product, token, contains="redacted")) == [
        "retrying with key ***REDACTED"
    ]
    revealing = await product.token(await product.user(), "logs:read,secrets:reveal")
    assert messages(await logs(product, revealing, contains="sk-live")) == [
        "retrying with key sk-live-4242"
    ]


async def test_get_logs_refuses_a_cursor_it_did_not_issue(product: ProductEnv) -> None:
    token, _ = await setup(product)
    for cursor in ("o2", "b", "bx1", "b" + "9" * 30):
        assert await product.error_text(
            token, "get_logs", {"project": "api", "cursor": cursor}
        ) == ("Invalid cursor: pass back a next_cursor value exactly as received.")


async def test_get_logs_refuses_bad_arguments(product: ProductEnv) -> None:
    token, _ = await setup(product)
    prefix = "Invalid arguments for 'get_logs': "
    assert await product.error_text(token, "get_logs", {}) == (
        prefix + "Missing required argument 'project'."
    )
    assert await product.error_text(token, "get_logs", {"project": "api", "lines": "200"}) == (
        prefix + "Argument 'lines' must be of type integer."
    )
    assert await product.error_text(token, "get_logs", {"project": "api", "follow": True}) == (
        prefix + "Unknown argument 'follow'; remove it."
    )
    assert await product.error_text(token, "get_logs", {"project": "nope"}) == (
        "No project 'nope' in tenant 'ada's workspace'; list_projects shows the projects there."
    )


async def test_get_logs_needs_the_logs_read_scope(product: ProductEnv) -> None:
    token, _ = await setup(product, "projects:read,projects:write")
    assert "logs:read" in await product.error_text(token, "get_logs", {"project": "api"})


async def test_another_users_token_cannot_read_the_logs(product: ProductEnv) -> None:
    _, project_id = await setup(product)
    await seed(product, project_id, 3)
    bob = await product.token(await product.user("bob@example.com"), "mcp:full,secrets:reveal")
    assert await product.error_text(bob, "get_logs", {"project": project_id}) == (
        f"No project '{project_id}' in tenant 'bob's workspace'; list_projects shows the "
        "projects there."
    )
