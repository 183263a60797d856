"""The backups tools: list_backups, get_restore_status, create_backup, restore_backup,
delete_backup, configure_backups and reset_backup_config, driven through the product server."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sp00ky_mcp.product.cloud import backups as backup_rules
from sp00ky_mcp.product.cloud.base import Invalid

from .product_support import NOW, NOW_ISO, ProductEnv, Progress, decline

pytestmark = pytest.mark.anyio
DEFAULTS = {
    "project": "api",
    "schedule": "daily",
    "retention_days": 7,
    "is_default": True,
    "updated_at": None,
}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(product: ProductEnv) -> Clock:
    clock = Clock()
    product.cloud.clock = clock
    return clock


@pytest.fixture
def env(product: ProductEnv, clock: Clock) -> ProductEnv:
    """The product profile on `clock` (this module's, which tests move), not a stopped one."""
    return product


def at(seconds: float) -> str:
    """NOW + seconds as the tools show it."""
    whole, fraction = divmod(seconds, 1)
    minutes, secs = divmod(int(whole), 60)
    return f"2026-01-01T00:{minutes:02d}:{secs:02d}.{round(fraction * 1000):03d}Z"


async def backup_of(env: ProductEnv, token: str, project: str = "api", **more: str) -> str:
    created = await env.ok(token, "create_backup", {"project": project, **more})
    backup_id: str = created["backup_id"]
    return backup_id


# --- create_backup ------------------------------------------------------------------------


async def test_create_backup_completes_at_once_with_the_size_of_the_projects_data(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    async with env.store.transaction() as tx:
        await tx.env.put(project_id, "KEY", "value", NOW)
        await tx.logs.add(project_id, "web", NOW, "info", "héllo")
    created = await env.ok(
        await env.token(ada, "backups:write"), "create_backup", {"project": "api"}
    )
    backup_id = created["backup_id"]
    assert backup_id.startswith("bkp_")
    # 16 KiB of metadata + 'KEY' and 'value' (8 bytes) + 'héllo' (6 bytes) + 256 per service.
    assert created == {
        "backup_id": backup_id,
        "project": "api",
        "status": "completed",
        "trigger": "manual",
        "size_bytes": 16384 + 8 + 6 + 256,
        "created_at": NOW_ISO,
        "completed_at": NOW_ISO,
    }
    assert (await env.log_messages(project_id))[1:] == [
        f"Backup {backup_id} started.",
        f"Backup {backup_id} completed (16654 bytes).",
    ]


async def test_create_backup_reports_progress_at_each_stage(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    seen = Progress()
    async with env.sdk(await env.token(ada)) as client:
        result = await client.call_tool("create_backup", {"project": "api"}, progress_callback=seen)
    assert result.structured_content is not None
    backup_id = result.structured_content["backup_id"]
    assert seen == [
        (0, 3, "Snapshotting project 'api'"),
        (1, 3, f"Writing backup {backup_id}"),
        (2, 3, f"Verifying backup {backup_id} (16640 bytes)"),
        (3, 3, f"Backup {backup_id} completed"),
    ]


async def test_create_backup_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "create_backup", {}) == (
        "Invalid arguments for 'create_backup': Missing required argument 'project'."
    )
    assert await env.error_text(token, "create_backup", {"project": "api", "name": "x"}) == (
        "Invalid arguments for 'create_backup': Unknown argument 'name'; remove it."
    )


async def test_create_backup_of_an_unknown_project_is_not_found(env: ProductEnv) -> None:
    assert await env.error_text(
        await env.token(await env.user()), "create_backup", {"project": "api"}
    ) == ("No project 'api' in tenant 'ada's workspace'; list_projects shows the projects there.")


async def test_a_team_member_may_create_a_backup(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await env.make_team({ada: "owner", bob: "member"})
    await env.make_project(ada, "shop", team)
    created = await env.ok(
        await env.token(bob), "create_backup", {"project": "shop", "tenant_id": team}
    )
    assert created["status"] == "completed"


# --- list_backups -------------------------------------------------------------------------


async def test_list_backups_lists_newest_first_and_pages(env: ProductEnv, clock: Clock) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    first = await backup_of(env, token)
    clock.now += 60
    second = await backup_of(env, token)
    reader = await env.token(ada, "backups:read")
    listing = await env.ok(reader, "list_backups", {"project": "api"})
    assert [b["backup_id"] for b in listing["items"]] == [second, first]
    assert listing["items"][0]["created_at"] == at(60)
    page = await env.ok(reader, "list_backups", {"project": "api", "limit": 1})
    assert ([b["backup_id"] for b in page["items"]], page["next_cursor"], page["truncated"]) == (
        [second],
        "o1",
        True,
    )
    rest = await env.ok(reader, "list_backups", {"project": "api", "cursor": "o1"})
    assert [b["backup_id"] for b in rest["items"]] == [first]


async def test_list_backups_of_a_project_without_backups_is_empty(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    assert await env.ok(await env.token(ada), "list_backups", {"project": "api"}) == {
        "items": [],
        "next_cursor": None,
        "truncated": False,
    }


async def test_list_backups_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "list_backups", {"project": "api", "limit": 0}) == (
        "Invalid arguments for 'list_backups': Argument 'limit' must be at least 1."
    )


# --- restore_backup and get_restore_status ------------------------------------------------


async def test_a_restore_advances_from_pending_to_restoring_to_completed_with_the_clock(
    env: ProductEnv,
    clock: Clock,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada)
    backup_id = await backup_of(env, token)
    clock.now += 100
    restore = await env.ok(token, "restore_backup", {"project": "api", "backup_id": backup_id})
    restore_id = restore["restore_id"]
    assert restore_id.startswith("rst_")
    expected = {
        "restore_id": restore_id,
        "backup_id": backup_id,
        "project": "api",
        "status": "pending",
        "created_at": at(100),
        "updated_at": at(100),
        "completes_at": at(135),
    }
    assert restore == expected
    args = {"project": "api", "restore_id": restore_id}
    reader = await env.token(ada, "backups:read")
    clock.now += 4.999
    assert await env.ok(reader, "get_restore_status", args) == expected
    clock.now = NOW + 105
    assert await env.ok(reader, "get_restore_status", args) == {
        **expected,
        "status": "restoring",
        "updated_at": at(105),
    }
    clock.now = NOW + 135
    completed = {**expected, "status": "completed", "updated_at": at(135)}
    assert await env.ok(reader, "get_restore_status", args) == completed
    clock.now = NOW + 10  # a clock that goes back never undoes progress
    assert await env.ok(reader, "get_restore_status", args) == completed
    stored = await env.store.reads.backups.restore(project_id, restore_id)
    assert stored is not None
    assert (stored.status, stored.updated_at) == ("completed", NOW + 135)
    assert (await env.log_messages(project_id))[-3:] == [
        f"Restore {restore_id} of backup {backup_id} requested; the project's data will be "
        "replaced.",
        f"Restore {restore_id} is restoring backup {backup_id}.",
        f"Restore {restore_id} completed; the project was restored from backup {backup_id}.",
    ]


async def test_a_restore_read_late_passes_every_state_and_persists_the_last(
    env: ProductEnv,
    clock: Clock,
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada)
    backup_id = await backup_of(env, token)
    restore = await env.ok(token, "restore_backup", {"project": "api", "backup_id": backup_id})
    clock.now += 3600
    status = await env.ok(
        token, "get_restore_status", {"project": "api", "restore_id": restore["restore_id"]}
    )
    assert (status["status"], status["updated_at"]) == ("completed", at(35))
    assert (await env.log_messages(project_id))[-2:] == [
        f"Restore {restore['restore_id']} is restoring backup {backup_id}.",
        f"Restore {restore['restore_id']} completed; the project was restored from backup "
        f"{backup_id}.",
    ]


async def test_restore_backup_reports_progress(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    backup_id = await backup_of(env, token)
    seen = Progress()
    async with env.sdk(token) as client:
        result = await client.call_tool(
            "restore_backup",
            {"project": "api", "backup_id": backup_id},
            progress_callback=seen,
        )
    assert result.structured_content is not None
    restore_id = result.structured_content["restore_id"]
    assert seen == [
        (0, 2, f"Checking backup {backup_id}"),
        (1, 2, f"Restore {restore_id} queued"),
        (2, 2, f"Restore {restore_id} is pending; get_restore_status follows it"),
    ]


async def test_only_one_restore_per_project_runs_at_a_time(env: ProductEnv, clock: Clock) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    backup_id = await backup_of(env, token)
    args = {"project": "api", "backup_id": backup_id}
    first = await env.ok(token, "restore_backup", args)
    clock.now += 20
    assert await env.error_text(token, "restore_backup", args) == (
        f"Restore {first['restore_id']} of project 'api' is still in progress; wait until "
        "get_restore_status reports completed."
    )
    assert await env.count("restores") == 1
    clock.now += 15
    second = await env.ok(token, "restore_backup", args)
    assert second["restore_id"] != first["restore_id"]
    status = await env.ok(
        token, "get_restore_status", {"project": "api", "restore_id": first["restore_id"]}
    )
    assert status["status"] == "completed"


async def test_restore_backup_of_an_unknown_backup_is_not_found(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    assert await env.error_text(
        await env.token(ada), "restore_backup", {"project": "api", "backup_id": "bkp_nope"}
    ) == ("No backup 'bkp_nope' of project 'api'; list_backups shows its backups.")


async def test_restore_backup_of_another_projects_backup_is_not_found(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada, "api")
    await env.make_project(ada, "web")
    token = await env.token(ada)
    backup_id = await backup_of(env, token, "web")
    assert await env.error_text(
        token, "restore_backup", {"project": "api", "backup_id": backup_id}
    ) == (f"No backup '{backup_id}' of project 'api'; list_backups shows its backups.")


async def test_restore_backup_declined_through_elicitation_starts_nothing(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    backup_id = await backup_of(env, token)
    async with env.sdk(token, mode="legacy", elicitation_callback=decline) as client:
        result = await client.call_tool(
            "restore_backup", {"project": "api", "backup_id": backup_id}
        )
    assert result.is_error is True
    assert result.content[0].model_dump()["text"] == (
        f"Not confirmed, so nothing was changed: restore project 'api' from backup {backup_id} "
        f"(taken {NOW_ISO}), replacing its current data."
    )
    assert await env.count("restores") == 0


async def test_restore_backup_in_a_team_needs_an_admin(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await env.make_team({ada: "owner", bob: "member"})
    await env.make_project(ada, "shop", team)
    backup_id = await backup_of(env, await env.token(ada), "shop", tenant_id=team)
    assert await env.error_text(
        await env.token(bob),
        "restore_backup",
        {"project": "shop", "backup_id": backup_id, "tenant_id": team},
    ) == ("Only a team admin or above may restore backups; your role in 'Acme' is member.")
    assert await env.count("restores") == 0


async def test_restore_backup_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "restore_backup", {"project": "api"}) == (
        "Invalid arguments for 'restore_backup': Missing required argument 'backup_id'."
    )


async def test_get_restore_status_of_an_unknown_restore_is_not_found(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    assert await env.error_text(
        await env.token(ada), "get_restore_status", {"project": "api", "restore_id": "rst_nope"}
    ) == ("No restore 'rst_nope' of project 'api'; restore_backup returns the restore_id to pass.")


async def test_get_restore_status_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "get_restore_status", {"project": "api"}) == (
        "Invalid arguments for 'get_restore_status': Missing required argument 'restore_id'."
    )


# --- delete_backup ------------------------------------------------------------------------


async def test_delete_backup_deletes_it_and_logs_it(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada)
    backup_id = await backup_of(env, token)
    result = await env.ok(token, "delete_backup", {"project": "api", "backup_id": backup_id})
    assert result == {"backup_id": backup_id, "project": "api", "deleted": True}
    assert await env.count("backups") == 0
    assert (await env.log_messages(project_id))[-1] == f"Backup {backup_id} deleted."


async def test_delete_backup_of_an_unknown_backup_is_not_found(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    assert await env.error_text(
        await env.token(ada), "delete_backup", {"project": "api", "backup_id": "bkp_nope"}
    ) == ("No backup 'bkp_nope' of project 'api'; list_backups shows its backups.")


async def test_delete_backup_waits_for_a_restore_of_it_to_complete(
    env: ProductEnv,
    clock: Clock,
) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    backup_id = await backup_of(env, token)
    args = {"project": "api", "backup_id": backup_id}
    restore = await env.ok(token, "restore_backup", args)
    assert await env.error_text(token, "delete_backup", args) == (
        f"Backup '{backup_id}' is being restored by {restore['restore_id']}; delete it after "
        "get_restore_status reports completed."
    )
    assert await env.count("backups") == 1
    clock.now += 35
    await env.ok(token, "delete_backup", args)
    assert await env.count("backups") == 0


async def test_delete_backup_declined_through_elicitation_keeps_it(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    backup_id = await backup_of(env, token)
    async with env.sdk(token, mode="legacy", elicitation_callback=decline) as client:
        result = await client.call_tool("delete_backup", {"project": "api", "backup_id": backup_id})
    assert result.is_error is True
    assert result.content[0].model_dump()["text"] == (
        f"Not confirmed, so nothing was changed: delete backup {backup_id} of project 'api' "
        f"(taken {NOW_ISO}, 16640 bytes)."
    )
    assert await env.count("backups") == 1


async def test_delete_backup_in_a_team_needs_an_admin(env: ProductEnv) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await env.make_team({ada: "owner", bob: "member"})
    await env.make_project(ada, "shop", team)
    backup_id = await backup_of(env, await env.token(ada), "shop", tenant_id=team)
    assert await env.error_text(
        await env.token(bob),
        "delete_backup",
        {"project": "shop", "backup_id": backup_id, "tenant_id": team},
    ) == ("Only a team admin or above may delete backups; your role in 'Acme' is member.")
    assert await env.count("backups") == 1


async def test_delete_backup_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(token, "delete_backup", {"project": "api", "backup_id": ""}) == (
        "Invalid arguments for 'delete_backup': Argument 'backup_id' must be at least 1 characters."
    )


# --- configure_backups and reset_backup_config --------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("Hourly", "hourly"),
        ("daily", "daily"),
        ("WEEKLY", "weekly"),
        ("30 2 * * *", "30 2 * * *"),
        ("  0   */6 * * 1-5 ", "0 */6 * * 1-5"),
        ("0,15,30,45 0-23/2 1,15 jan-jun sun", "0,15,30,45 0-23/2 1,15 jan-jun sun"),
        ("5 4 * DEC 7", "5 4 * DEC 7"),
    ],
)
def test_schedules_are_named_or_five_field_cron_expressions(given: str, kept: str) -> None:
    assert backup_rules.normalize_schedule(given) == kept


async def test_configure_backups_sets_schedule_and_retention(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    result = await env.ok(
        await env.token(ada),
        "configure_backups",
        {"project": "api", "schedule": " 30  2 * * * ", "retention_days": 30},
    )
    assert result == {
        "project": "api",
        "schedule": "30 2 * * *",
        "retention_days": 30,
        "is_default": False,
        "updated_at": NOW_ISO,
    }


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            "monthly",
            "The schedule 'monthly' must be hourly, daily, weekly or a cron expression of "
            "5 fields (minute hour day-of-month month day-of-week); it has 1 field.",
        ),
        (
            "0 0 * *",
            "The schedule '0 0 * *' must be hourly, daily, weekly or a cron expression of "
            "5 fields (minute hour day-of-month month day-of-week); it has 4 fields.",
        ),
        (
            "60 0 * * *",
            "Field 1 (minute) of the cron schedule '60 0 * * *' is not valid: use *, a "
            "value from 0 to 59, a range a-b, a step /n, or a comma-separated list of "
            "these.",
        ),
        (
            "0 24 * * *",
            "Field 2 (hour) of the cron schedule '0 24 * * *' is not valid: use *, a "
            "value from 0 to 23, a range a-b, a step /n, or a comma-separated list of "
            "these.",
        ),
        (
            "0 0 0 * *",
            "Field 3 (day-of-month) of the cron schedule '0 0 0 * *' is not valid: use "
            "*, a value from 1 to 31, a range a-b, a step /n, or a comma-separated list "
            "of these.",
        ),
        (
            "0 0 * foo *",
            "Field 4 (month) of the cron schedule '0 0 * foo *' is not valid: use *, "
            "a value from 1 to 12 or JAN-DEC, a range a-b, a step /n, or a "
            "comma-separated list of these.",
        ),
        (
            "0 0 * * 5-1",
            "Field 5 (day-of-week) of the cron schedule '0 0 * * 5-1' is not valid: "
            "use *, a value from 0 to 7 or SUN-SAT, a range a-b, a step /n, or a "
            "comma-separated list of these.",
        ),
        (
            "*/0 * * * *",
            "Field 1 (minute) of the cron schedule '*/0 * * * *' is not valid: use *, "
            "a value from 0 to 59, a range a-b, a step /n, or a comma-separated list "
            "of these.",
        ),
        (
            "0 1,,2 * * *",
            "Field 2 (hour) of the cron schedule '0 1,,2 * * *' is not valid: use *, "
            "a value from 0 to 23, a range a-b, a step /n, or a comma-separated list "
            "of these.",
        ),
    ],
)
def test_invalid_schedules_are_refused_naming_the_field(schedule: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        backup_rules.normalize_schedule(schedule)
    assert caught.value.message == message


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.lists(
            st.text("0123456789*/-,janJAN", min_size=1, max_size=6), min_size=5, max_size=5
        ).map(" ".join),
    )
)
def test_any_schedule_is_normalised_or_refused_with_a_reason(schedule: str) -> None:
    try:
        normalized = backup_rules.normalize_schedule(schedule)
    except Invalid as exc:
        assert exc.message.startswith(("The schedule", "Field "))
    else:
        assert backup_rules.normalize_schedule(normalized) == normalized


async def test_configure_backups_refuses_an_invalid_schedule_and_changes_nothing(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    await env.make_project(ada)
    assert await env.error_text(
        await env.token(ada),
        "configure_backups",
        {"project": "api", "schedule": "0 24 * * *", "retention_days": 9},
    ) == (
        "Field 2 (hour) of the cron schedule '0 24 * * *' is not valid: use *, a value from 0 "
        "to 23, a range a-b, a step /n, or a comma-separated list of these."
    )
    assert await env.count("backup_configs") == 0


async def test_configure_backups_changes_only_what_it_is_given(
    env: ProductEnv, clock: Clock
) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada)
    assert await env.ok(token, "configure_backups", {"project": "api", "retention_days": 30}) == {
        "project": "api",
        "schedule": "daily",
        "retention_days": 30,
        "is_default": False,
        "updated_at": NOW_ISO,
    }
    clock.now += 1
    assert await env.ok(token, "configure_backups", {"project": "api", "schedule": "hourly"}) == {
        "project": "api",
        "schedule": "hourly",
        "retention_days": 30,
        "is_default": False,
        "updated_at": at(1),
    }
    assert await env.log_messages(project_id) == [
        "Backup schedule set to 'daily', keeping backups 30 days.",
        "Backup schedule set to 'hourly', keeping backups 30 days.",
    ]


async def test_configure_backups_needs_schedule_or_retention(env: ProductEnv) -> None:
    ada = await env.user()
    await env.make_project(ada)
    assert await env.error_text(await env.token(ada), "configure_backups", {"project": "api"}) == (
        "Pass schedule, retention_days or both to change the backup configuration."
    )


async def test_configure_backups_rejects_retention_outside_1_to_365_days(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    assert await env.error_text(
        token, "configure_backups", {"project": "api", "retention_days": 0}
    ) == (
        "Invalid arguments for 'configure_backups': Argument 'retention_days' must be at least 1."
    )
    assert await env.error_text(
        token, "configure_backups", {"project": "api", "retention_days": 366}
    ) == (
        "Invalid arguments for 'configure_backups': Argument 'retention_days' must be at most 365."
    )
    assert await env.error_text(
        token, "configure_backups", {"project": "api", "retention_days": 1.5}
    ) == (
        "Invalid arguments for 'configure_backups': Argument 'retention_days' must be of type "
        "integer."
    )
    one = await env.ok(token, "configure_backups", {"project": "api", "retention_days": 1})
    assert one["retention_days"] == 1


async def test_reset_backup_config_returns_to_daily_kept_seven_days(env: ProductEnv) -> None:
    ada = await env.user()
    project_id = await env.make_project(ada)
    token = await env.token(ada)
    await env.ok(
        token,
        "configure_backups",
        {"project": "api", "schedule": "hourly", "retention_days": 90},
    )
    assert await env.ok(token, "reset_backup_config", {"project": "api"}) == DEFAULTS
    assert await env.count("backup_configs") == 0
    assert (await env.log_messages(project_id))[-1] == (
        "Backup configuration reset to 'daily', keeping backups 7 days."
    )
    assert await env.ok(token, "reset_backup_config", {"project": "api"}) == DEFAULTS


async def test_reset_backup_config_declined_through_elicitation_keeps_the_settings(
    env: ProductEnv,
) -> None:
    ada = await env.user()
    await env.make_project(ada)
    token = await env.token(ada)
    await env.ok(token, "configure_backups", {"project": "api", "schedule": "hourly"})
    async with env.sdk(token, mode="legacy", elicitation_callback=decline) as client:
        result = await client.call_tool("reset_backup_config", {"project": "api"})
    assert result.is_error is True
    assert result.content[0].model_dump()["text"] == (
        "Not confirmed, so nothing was changed: reset the backup configuration of project "
        "'api' to daily backups kept 7 days."
    )
    assert await env.count("backup_configs") == 1


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("configure_backups", {"schedule": "hourly"}),
        ("reset_backup_config", {}),
    ],
)
async def test_backup_settings_in_a_team_need_an_admin(
    env: ProductEnv, tool: str, arguments: dict[str, Any]
) -> None:
    ada, bob = await env.user("ada@example.com"), await env.user("bob@example.com")
    team = await env.make_team({ada: "owner", bob: "member"})
    await env.make_project(ada, "shop", team)
    assert await env.error_text(
        await env.token(bob), tool, {"project": "shop", "tenant_id": team, **arguments}
    ) == ("Only a team admin or above may change backup settings; your role in 'Acme' is member.")


async def test_reset_backup_config_rejects_bad_arguments(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    assert await env.error_text(
        token, "reset_backup_config", {"project": "api", "schedule": "daily"}
    ) == ("Invalid arguments for 'reset_backup_config': Unknown argument 'schedule'; remove it.")


# --- tenancy ------------------------------------------------------------------------------


async def test_another_users_token_cannot_see_or_touch_the_backups(env: ProductEnv) -> None:
    ada, eve = await env.user("ada@example.com"), await env.user("eve@example.com")
    project_id = await env.make_project(ada)
    ada_token = await env.token(ada)
    backup_id = await backup_of(env, ada_token)
    restore = await env.ok(ada_token, "restore_backup", {"project": "api", "backup_id": backup_id})
    eve_token = await env.token(eve, "mcp:full,secrets:reveal")
    missing = (
        f"No project '{project_id}' in tenant 'eve's workspace'; list_projects shows the "
        "projects there."
    )
    calls: list[tuple[str, dict[str, Any]]] = [
        ("list_backups", {}),
        ("get_restore_status", {"restore_id": restore["restore_id"]}),
        ("create_backup", {}),
        ("restore_backup", {"backup_id": backup_id}),
        ("delete_backup", {"backup_id": backup_id}),
        ("configure_backups", {"schedule": "hourly"}),
        ("reset_backup_config", {}),
    ]
    for tool, arguments in calls:
        assert await env.error_text(eve_token, tool, {"project": project_id, **arguments}) == (
            missing
        )
    assert (
        await env.count("backups"),
        await env.count("restores"),
        await env.count("backup_configs"),
    ) == (
        1,
        1,
        0,
    )
