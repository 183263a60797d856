"""The deployments tools: status, list, deploy, finalize, rollback, restart, scale, tear down."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sp00ky_mcp.product.cloud import deployments
from sp00ky_mcp.product.cloud.base import Conflict
from sp00ky_mcp.product.cloud.deployments import TRANSITIONS, Status

from .product_support import (
    NOW,
    NOW_ISO,
    ProductEnv,
    Progress,
    assert_declared,
    decline,
    lands_before_transaction,
)

pytestmark = pytest.mark.anyio

RUNNING = "running"


async def api_id(product: ProductEnv, tenant_id: str | None = None) -> str:
    """The id of project 'api' of Ada's personal tenant (or of `tenant_id`)."""
    tenant_id = tenant_id or await product.personal(await product.user())
    project = await product.store.reads.projects.by_ref(tenant_id, "api")
    assert project is not None
    return project.id


async def statuses(product: ProductEnv, tenant_id: str | None = None) -> dict[str, str]:
    """Each deployment of project 'api' (see `api_id`) and its status."""
    found = await product.store.reads.deployments.deployments(await api_id(product, tenant_id))
    return {d.id: d.status for d in found}


async def service_states(
    product: ProductEnv, tenant_id: str | None = None
) -> list[tuple[str, str, int]]:
    """Each service of project 'api' (see `api_id`): its name, status and replicas."""
    found = await product.store.reads.projects.services(await api_id(product, tenant_id))
    return [(s.name, s.status, s.replicas) for s in found]


def svc(name: str, status: str = RUNNING, replicas: int = 1, restarted: Any = None) -> Any:
    return {"name": name, "status": status, "replicas": replicas, "restarted_at": restarted}


# --- the state machine -------------------------------------------------------------------


def test_the_state_machine_is_a_table_covering_every_status() -> None:
    assert set(TRANSITIONS) == set(Status)
    assert TRANSITIONS[Status.QUEUED] == {Status.BUILDING, Status.FAILED}
    assert TRANSITIONS[Status.LIVE] == {Status.SUPERSEDED, Status.ROLLED_BACK, Status.TORN_DOWN}
    for final in (Status.FAILED, Status.ROLLED_BACK, Status.TORN_DOWN):
        assert TRANSITIONS[final] == frozenset()


async def test_a_move_the_table_does_not_list_is_refused(product: ProductEnv) -> None:
    token, _ = await product.token_and_project()
    deployed = await product.ok(token, "deploy", {"project": "api"})
    with pytest.raises(Conflict) as raised:
        async with product.store.transaction() as tx:
            await deployments.transition(
                product.cloud, tx, deployed["deployment_id"], Status.BUILDING
            )
    assert raised.value.message == (
        f"Deployment '{deployed['deployment_id']}' is live and cannot become building."
    )
    assert await statuses(product) == {deployed["deployment_id"]: "live"}


def test_deployment_tools_declare_their_scope_and_annotations() -> None:
    expected = {
        "get_deployment_status": ("deployments:read", True, False, True),
        "list_deployments": ("deployments:read", True, False, True),
        "deploy": ("deployments:write", False, False, False),
        "finalize_deployment": ("deployments:write", False, False, True),
        "rollback_deployment": ("deployments:write", False, False, False),
        "restart_service": ("deployments:write", False, False, False),
        "scale_service": ("deployments:write", False, False, True),
        "tear_down_project": ("deployments:write", False, True, True),
    }
    assert_declared(expected)


# --- deploy ------------------------------------------------------------------------------


async def test_deploy_ships_the_latest_build_to_live(product: ProductEnv) -> None:
    product.freeze()
    token, project = await product.token_and_project(["web", "ssr"])
    build = project["latest_build"]
    deployed = await product.ok(token, "deploy", {"project": "api"})
    deployment_id = deployed["deployment_id"]
    assert deployed == {
        "deployment_id": deployment_id,
        "status": "live",
        "superseded_deployment_id": None,
        "deployment": {
            "id": deployment_id,
            "project_id": project["id"],
            "status": "live",
            "ref": "main",
            "build_id": build["id"],
            "commit_sha": build["commit_sha"],
            "source": "manual",
            "previous_id": None,
            "created_at": NOW_ISO,
            "updated_at": NOW_ISO,
            "live_at": NOW_ISO,
        },
        "services": [svc("ssr"), svc("web")],
    }


async def test_deploy_reports_progress_at_each_stage(product: ProductEnv) -> None:
    token, project = await product.token_and_project()
    sha = project["latest_build"]["commit_sha"][:7]
    seen = Progress()
    async with product.sdk(token, mode="legacy") as client:
        result = await client.call_tool("deploy", {"project": "api"}, progress_callback=seen)
    assert result.structured_content is not None
    dep = result.structured_content["deployment_id"]
    assert seen == [
        (1, 4, f"Deployment {dep} of main@{sha} is queued."),
        (2, 4, f"Deployment {dep} is building."),
        (3, 4, f"Deployment {dep} is ready."),
        (4, 4, f"Deployment {dep} is live."),
    ]


async def test_deploy_writes_a_log_line_per_transition_per_service(product: ProductEnv) -> None:
    token, project = await product.token_and_project(["web", "ssr"])
    deployed = await product.ok(token, "deploy", {"project": "api"})
    dep, sha = deployed["deployment_id"], project["latest_build"]["commit_sha"][:7]
    for service in ("web", "ssr"):
        logs = await product.ok(token, "get_logs", {"project": "api", "service": service})
        assert [(line["level"], line["message"]) for line in logs["items"]] == [
            ("info", f"Deployment {dep} (main@{sha}) {verb}.")
            for verb in ("queued", "building", "ready", "live")
        ]


async def test_deploy_of_a_ref_records_a_new_build(product: ProductEnv) -> None:
    token, project = await product.token_and_project()
    deployed = await product.ok(token, "deploy", {"project": "api", "ref": "release/1.2"})
    assert deployed["deployment"]["ref"] == "release/1.2"
    assert deployed["deployment"]["build_id"] != project["latest_build"]["id"]
    latest = (await product.ok(token, "get_project", {"project": "api"}))["latest_build"]
    assert (latest["id"], latest["ref"]) == (deployed["deployment"]["build_id"], "release/1.2")
    commit = "0123456789abcdef0123456789abcdef01234567"
    pinned = await product.ok(token, "deploy", {"project": "api", "ref": commit})
    assert pinned["deployment"]["commit_sha"] == commit


@pytest.mark.parametrize("ref", ["has space", "a..b", "-rf", "x.lock", "feat/", "a@{1}", "~1"])
async def test_deploy_refuses_a_ref_that_git_would_refuse(product: ProductEnv, ref: str) -> None:
    token, _ = await product.token_and_project()
    assert await product.error_text(token, "deploy", {"project": "api", "ref": ref}) == (
        f"Ref '{ref}' is not a valid git ref name: use a git branch, tag or commit such as main "
        "or release/1.2 (no spaces, '..', '~', '^', ':', '?', '*', '[', '\\\\' or '@{', not "
        "starting with '-' or '/', not ending with '/', '.' or '.lock')."
    )
    assert await statuses(product) == {}


async def test_a_new_deploy_supersedes_the_live_one(product: ProductEnv) -> None:
    token, _ = await product.token_and_project()
    first = await product.ok(token, "deploy", {"project": "api"})
    second = await product.ok(token, "deploy", {"project": "api"})
    assert second["superseded_deployment_id"] == first["deployment_id"]
    assert second["deployment"]["previous_id"] == first["deployment_id"]
    assert await statuses(product) == {
        first["deployment_id"]: "superseded",
        second["deployment_id"]: "live",
    }


async def test_deploy_without_promote_stops_at_ready(product: ProductEnv) -> None:
    token, _ = await product.token_and_project()
    live = await product.ok(token, "deploy", {"project": "api"})
    ready = await product.ok(token, "deploy", {"project": "api", "promote": False})
    assert (ready["status"], ready["superseded_deployment_id"]) == ("ready", None)
    assert await statuses(product) == {
        live["deployment_id"]: "live",
        ready["deployment_id"]: "ready",
    }


async def test_deploy_refuses_bad_arguments(product: ProductEnv) -> None:
    token, _ = await product.token_and_project()
    prefix = "Invalid arguments for 'deploy': "
    assert await product.error_text(token, "deploy", {}) == (
        prefix + "Missing required argument 'project'."
    )
    assert await product.error_text(token, "deploy", {"project": "api", "promote": "yes"}) == (
        prefix + "Argument 'promote' must be of type boolean."
    )
    assert await product.error_text(token, "deploy", {"project": "nope"}) == (
        "No project 'nope' in tenant 'ada's workspace'; list_projects shows the projects there."
    )
    assert await statuses(product) == {}


async def test_an_interrupted_deploy_ends_failed(product: ProductEnv) -> None:
    token, project = await product.token_and_project()
    cloud = product.cloud
    row = await cloud.project(await cloud.tenant((await product.user()).id, None), "api")

    async def hang_up(progress: float, total: float, message: str) -> None:
        if progress == 2:
            raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await deployments.deploy(product.cloud, row, None, True, hang_up)
    [(dep, status)] = (await statuses(product)).items()
    assert status == "failed"
    logs = await product.ok(token, "get_logs", {"project": "api", "lines": 1})
    sha = project["latest_build"]["commit_sha"][:7]
    assert logs["items"][0]["message"] == f"Deployment {dep} (main@{sha}) failed (interrupted)."
    assert logs["items"][0]["level"] == "error"


async def test_a_deployment_whose_pipeline_was_cut_off_is_failed_when_next_read(
    product: ProductEnv,
) -> None:
    product.freeze()
    token, _ = await product.token_and_project()
    cloud = product.cloud
    row = await cloud.project(await cloud.tenant((await product.user()).id, None), "api")
    async with product.store.transaction() as tx:
        build = await deployments.build_to_deploy(cloud, tx, row, None)
        dep = await deployments.queue(cloud, tx, row.id, build, "manual")
    product.freeze(NOW + deployments.STALE_SECONDS)
    status = await product.ok(token, "get_deployment_status", {"project": "api"})
    assert status["deployment"]["status"] == "queued"
    product.freeze(NOW + deployments.STALE_SECONDS + 1)
    status = await product.ok(token, "get_deployment_status", {"project": "api"})
    assert (status["deployment"]["id"], status["deployment"]["status"]) == (dep, "failed")
    logs = await product.ok(token, "get_logs", {"project": "api", "lines": 1})
    assert logs["items"][0]["message"].endswith(") failed (abandoned: its pipeline stopped).")
    assert await statuses(product) == {dep: "failed"}


async def test_deploy_replays_its_first_result_for_a_repeated_idempotency_key(
    product: ProductEnv,
) -> None:
    token, _ = await product.token_and_project()
    args = {"project": "api", "idempotency_key": "deploy-1"}
    first = await product.ok(token, "deploy", args)
    assert await product.ok(token, "deploy", args) == first
    assert len(await statuses(product)) == 1


# --- finalize ----------------------------------------------------------------------------


async def test_finalize_promotes_a_ready_deployment(product: ProductEnv) -> None:
    token, _ = await product.token_and_project()
    live = await product.ok(token, "deploy", {"project": "api"})
    ready = await product.ok(token, "deploy", {"project": "api", "promote": False})
    args = {"project": "api", "deployment_id": ready["deployment_id"]}
    done = await product.ok(token, "finalize_deployment", args)
    assert (done["status"], done["superseded_deployment_id"]) == ("live", live["deployment_id"])
    assert await statuses(product) == {
        live["deployment_id"]: "superseded",
        ready["deployment_id"]: "live",
    }
    again = await product.ok(token, "finalize_deployment", args)
    assert (again["status"], again["superseded_deployment_id"]) == ("live", None)
    assert again["deployment"] == done["deployment"]


async def test_finalize_refuses_a_deployment_that_is_not_ready(product: ProductEnv) -> None:
    token, _ = await product.token_and_project()
    old = await product.ok(token, "deploy", {"project": "api"})
    await product.ok(token, "deploy", {"project": "api"})
    args = {"project": "api", "deployment_id": old["deployment_id"]}
    assert await product.error_text(token, "finalize_deployment", args) == (
        f"Deployment '{old['deployment_id']}' is superseded, and only a ready deployment can be "
        "finalized; deploy its ref again to ship it."
    )
    assert (
        await product.error_text(
            token, "finalize_deployment", {"project": "api", "deployment_id": "dep_nope"}
        )
        == "No deployment 'dep_nope' in project 'api'; list_deployments shows its deployments."
    )
    assert await product.error_text(token, "finalize_deployment", {"project": "api"}) == (
        "Invalid arguments for 'finalize_deployment': Missing required argument 'deployment_id'."
    )


# --- rollback ----------------------------------------------------------------------------


async def test_rollback_returns_to_the_previous_live_deployment(product: ProductEnv) -> None:
    token, _ = await product.token_and_project(["web", "ssr"])
    one = (await product.ok(token, "deploy", {"project": "api"}))["deployment_id"]
    two = (await product.ok(token, "deploy", {"project": "api"}))["deployment_id"]
    three = (await product.ok(token, "deploy", {"project": "api"}))["deployment_id"]
    back = await product.ok(token, "rollback_deployment", {"project": "api"})
    assert (back["deployment_id"], back["rolled_back_deployment_id"]) == (two, three)
    assert back["deployment"]["status"] == "live"
    assert back["services"] == [svc("ssr"), svc("web")]
    assert await statuses(product) == {one: "superseded", two: "live", three: "rolled_back"}
    further = await product.ok(token, "rollback_deployment", {"project": "api"})
    assert (further["deployment_id"], further["rolled_back_deployment_id"]) == (one, two)
    assert await statuses(product) == {one: "live", two: "rolled_back", three: "rolled_back"}
    logs = await product.ok(token, "get_logs", {"project": "api", "service": "web", "lines": 2})
    assert [line["message"].split(") ", 1)[1] for line in logs["items"]] == [
        "rolled back.",
        f"live again, replacing {two}.",
    ]
    assert await product.error_text(token, "rollback_deployment", {"project": "api"}) == (
        f"Deployment '{one}' has no earlier live deployment to return to; deploy the ref you "
        "want instead."
    )


async def test_rollback_needs_a_live_deployment(product: ProductEnv) -> None:
    token, _ = await product.token_and_project()
    assert await product.error_text(token, "rollback_deployment", {"project": "api"}) == (
        "Project 'api' has no live deployment to roll back; deploy first."
    )


# --- restart -----------------------------------------------------------------------------


async def test_restart_service_restarts_one_service(product: ProductEnv) -> None:
    product.freeze()
    token, _ = await product.token_and_project(["web", "ssr"])
    dep = (await product.ok(token, "deploy", {"project": "api"}))["deployment_id"]
    product.freeze(NOW + 60)
    done = await product.ok(token, "restart_service", {"project": "api", "service": "web"})
    later = "2026-01-01T00:01:00.000Z"
    assert done == {
        "project": "api",
        "deployment_id": dep,
        "restarted": ["web"],
        "restarted_at": later,
        "services": [svc("ssr"), svc("web", restarted=later)],
    }
    logs = await product.ok(token, "get_logs", {"project": "api", "service": "web", "lines": 2})
    assert [line["message"] for line in logs["items"]] == [
        f"Restarting 1 replica(s) of web on deployment {dep}.",
        "Service web restarted.",
    ]


async def test_restart_service_without_a_service_restarts_every_service(
    product: ProductEnv,
) -> None:
    token, _ = await product.token_and_project(["web", "ssr", "worker"])
    await product.ok(token, "deploy", {"project": "api"})
    done = await product.ok(token, "restart_service", {"project": "api"})
    assert done["restarted"] == ["ssr", "web", "worker"]
    logs = await product.ok(token, "get_logs", {"project": "api", "contains": "restarted"})
    assert [line["service"] for line in logs["items"]] == ["ssr", "web", "worker"]


async def test_restart_service_reports_an_unknown_service_or_nothing_running(
    product: ProductEnv,
) -> None:
    token, _ = await product.token_and_project(["web", "ssr"])
    assert await product.error_text(token, "restart_service", {"project": "api"}) == (
        "Project 'api' has no live deployment, so nothing is running to restart; deploy first."
    )
    assert (
        await product.error_text(token, "restart_service", {"project": "api", "service": "db"})
        == "No service 'db' in project 'api'; its services are ssr, web."
    )
    assert await product.error_text(
        token, "restart_service", {"project": "api", "service": ""}
    ) == (
        "Invalid arguments for 'restart_service': Argument 'service' must be at least 1 characters."
    )


# --- scale -------------------------------------------------------------------------------


async def test_scale_service_sets_replicas_within_the_plan(product: ProductEnv) -> None:
    token, _ = await product.token_and_project(["web", "ssr"])
    args = {"project": "api", "service": "web", "replicas": 3}
    assert await product.ok(token, "scale_service", args) == {
        "project": "api",
        "service": "web",
        "replicas": 3,
        "previous_replicas": 1,
        "plan": "hobby",
        "min_replicas": 1,
        "max_replicas": 3,
    }
    assert await service_states(product) == [("ssr", "stopped", 1), ("web", "stopped", 3)]
    again = await product.ok(token, "scale_service", args)
    assert (again["replicas"], again["previous_replicas"]) == (3, 3)
    logs = await product.ok(token, "get_logs", {"project": "api", "contains": "scaled"})
    assert [line["message"] for line in logs["items"]] == ["Scaled web from 1 to 3 replica(s)."]


@pytest.mark.parametrize(
    ("plan", "low", "high"), [("hobby", 1, 3), ("pro", 1, 20), ("team", 1, 100)]
)
async def test_scale_service_refuses_counts_outside_the_plan_bounds(
    product: ProductEnv, plan: str, low: int, high: int
) -> None:
    ada = await product.user()
    tenant_id = await product.make_team({ada: "owner"}, plan=plan)
    token = await product.token(ada)
    await product.ok(token, "create_project", {"name": "api", "tenant_id": tenant_id})
    for replicas in (low - 1, high + 1):
        args = {"project": "api", "service": "web", "replicas": replicas, "tenant_id": tenant_id}
        assert await product.error_text(token, "scale_service", args) == (
            f"Replicas must be between {low} and {high} on the {plan} plan; choose a value in "
            "that range or change the plan."
        )
    assert await service_states(product, tenant_id) == [("web", "stopped", 1)]
    top = await product.ok(
        token,
        "scale_service",
        {"project": "api", "service": "web", "replicas": high, "tenant_id": tenant_id},
    )
    assert (top["replicas"], top["plan"]) == (high, plan)


async def test_scale_service_refuses_bad_arguments(product: ProductEnv) -> None:
    token, _ = await product.token_and_project()
    prefix = "Invalid arguments for 'scale_service': "
    assert (
        await product.error_text(
            token, "scale_service", {"project": "api", "service": "web", "replicas": "2"}
        )
        == prefix + "Argument 'replicas' must be of type integer."
    )
    assert await product.error_text(
        token, "scale_service", {"project": "api", "service": "web"}
    ) == (prefix + "Missing required argument 'replicas'.")
    assert (
        await product.error_text(
            token, "scale_service", {"project": "api", "service": "db", "replicas": 2}
        )
        == "No service 'db' in project 'api'; its services are web."
    )


# --- tear down ---------------------------------------------------------------------------


async def test_tear_down_stops_every_service_and_the_live_deployment(
    product: ProductEnv,
) -> None:
    token, project = await product.token_and_project(["web", "ssr"])
    sha = project["latest_build"]["commit_sha"][:7]
    dep = (await product.ok(token, "deploy", {"project": "api"}))["deployment_id"]
    assert await product.ok(token, "tear_down_project", {"project": "api"}) == {
        "project": "api",
        "torn_down_deployment_id": dep,
        "stopped_services": ["ssr", "web"],
        "services": [svc("ssr", "stopped"), svc("web", "stopped")],
    }
    assert await statuses(product) == {dep: "torn_down"}
    assert await product.ok(token, "tear_down_project", {"project": "api"}) == {
        "project": "api",
        "torn_down_deployment_id": None,
        "stopped_services": [],
        "services": [svc("ssr", "stopped"), svc("web", "stopped")],
    }
    logs = await product.ok(token, "get_logs", {"project": "api", "service": "web", "lines": 2})
    assert [(line["level"], line["message"]) for line in logs["items"]] == [
        ("warning", f"Deployment {dep} (main@{sha}) torn down; services stopped."),
        ("warning", "Service web stopped."),
    ]
    back = await product.ok(token, "deploy", {"project": "api"})
    assert (back["status"], back["superseded_deployment_id"]) == ("live", None)


async def test_tear_down_does_nothing_when_the_user_declines(product: ProductEnv) -> None:
    token, _ = await product.token_and_project(["web", "ssr"])
    dep = (await product.ok(token, "deploy", {"project": "api"}))["deployment_id"]
    async with product.sdk(token, mode="legacy", elicitation_callback=decline) as client:
        result = await client.call_tool("tear_down_project", {"project": "api"})
    assert result.is_error is True
    assert result.content[0].model_dump()["text"] == (
        "Not confirmed, so nothing was changed: tear down project 'api': stop services ssr, web "
        f"and take deployment {dep} offline."
    )
    assert await statuses(product) == {dep: "live"}
    assert await service_states(product) == [("ssr", RUNNING, 1), ("web", RUNNING, 1)]


async def test_tearing_down_a_team_project_needs_an_admin(product: ProductEnv) -> None:
    ada, bob = await product.user(), await product.user("bob@example.com")
    tenant_id = await product.make_team({ada: "owner", bob: "member"}, plan="team")
    bob_token = await product.token(bob)
    args = {"project": "api", "tenant_id": tenant_id}
    await product.ok(bob_token, "create_project", {"name": "api", "tenant_id": tenant_id})
    dep = (await product.ok(bob_token, "deploy", args))["deployment_id"]
    assert await product.error_text(bob_token, "tear_down_project", args) == (
        "Only a team admin or above may tear down a project; your role in 'Acme' is member."
    )
    assert await statuses(product, tenant_id) == {dep: "live"}
    scaled = await product.ok(
        bob_token, "scale_service", {**args, "service": "web", "replicas": 50}
    )
    assert scaled["max_replicas"] == 100
    done = await product.ok(await product.token(ada), "tear_down_project", args)
    assert done["torn_down_deployment_id"] == dep


# --- status and list ---------------------------------------------------------------------


async def test_deployment_status_before_any_deploy(product: ProductEnv) -> None:
    token, project = await product.token_and_project()
    assert await product.ok(token, "get_deployment_status", {"project": "api"}) == {
        "project": "api",
        "project_id": project["id"],
        "live_deployment_id": None,
        "deployment": None,
        "services": [svc("web", "stopped")],
    }


async def test_deployment_status_shows_the_live_one_or_else_the_latest(
    product: ProductEnv,
) -> None:
    token, project = await product.token_and_project()
    live = await product.ok(token, "deploy", {"project": "api"})
    ready = await product.ok(token, "deploy", {"project": "api", "promote": False})
    status = await product.ok(token, "get_deployment_status", {"project": "api"})
    assert status == {
        "project": "api",
        "project_id": project["id"],
        "live_deployment_id": live["deployment_id"],
        "deployment": live["deployment"],
        "services": [svc("web")],
    }
    picked = await product.ok(
        token,
        "get_deployment_status",
        {"project": "api", "deployment_id": ready["deployment_id"]},
    )
    assert picked["deployment"] == ready["deployment"]
    await product.ok(token, "tear_down_project", {"project": "api"})
    latest = await product.ok(token, "get_deployment_status", {"project": "api"})
    assert (latest["live_deployment_id"], latest["deployment"]["id"]) == (
        None,
        ready["deployment_id"],
    )
    assert (
        await product.error_text(
            token, "get_deployment_status", {"project": "api", "deployment_id": "dep_x"}
        )
        == "No deployment 'dep_x' in project 'api'; list_deployments shows its deployments."
    )


async def test_list_deployments_pages_newest_first(product: ProductEnv) -> None:
    token, _ = await product.token_and_project()
    ids = [
        (await product.ok(token, "deploy", {"project": "api"}))["deployment_id"] for _ in range(3)
    ]
    first = await product.ok(token, "list_deployments", {"project": "api", "limit": 2})
    assert [d["id"] for d in first["items"]] == [ids[2], ids[1]]
    assert [d["status"] for d in first["items"]] == ["live", "superseded"]
    assert (first["next_cursor"], first["truncated"]) == ("o2", True)
    rest = await product.ok(
        token, "list_deployments", {"project": "api", "limit": 2, "cursor": "o2"}
    )
    assert ([d["id"] for d in rest["items"]], rest["next_cursor"], rest["truncated"]) == (
        [ids[0]],
        None,
        False,
    )
    assert (
        await product.error_text(token, "list_deployments", {"project": "api", "limit": 101})
        == "Invalid arguments for 'list_deployments': Argument 'limit' must be at most 100."
    )


# --- isolation ---------------------------------------------------------------------------


async def test_another_users_token_cannot_see_or_change_deployments(
    product: ProductEnv,
) -> None:
    token, project = await product.token_and_project()
    dep = (await product.ok(token, "deploy", {"project": "api"}))["deployment_id"]
    before = (await statuses(product), await service_states(product))
    bob = await product.token(await product.user("bob@example.com"), "mcp:full,secrets:reveal")
    not_found = (
        f"No project '{project['id']}' in tenant 'bob's workspace'; list_projects shows the "
        "projects there."
    )
    pid = project["id"]
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_deployment_status", {"project": pid}),
        ("list_deployments", {"project": pid}),
        ("deploy", {"project": pid}),
        ("finalize_deployment", {"project": pid, "deployment_id": dep}),
        ("rollback_deployment", {"project": pid}),
        ("restart_service", {"project": pid}),
        ("scale_service", {"project": pid, "service": "web", "replicas": 2}),
        ("tear_down_project", {"project": pid}),
    ]
    for tool, args in calls:
        assert await product.error_text(bob, tool, args) == not_found, tool
    assert (await statuses(product), await service_states(product)) == before


# --- two calls at once: what a call acts on is read inside its write --------------------------


async def test_a_deploy_whose_project_is_destroyed_midway_says_so(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, project = await product.token_and_project()
    tenant = await product.personal(await product.user())

    async def destroy() -> None:
        async with product.store.transaction() as tx:
            await tx.projects.delete(project["id"], tenant)

    # After the deployment is queued, before its first stage.
    lands_before_transaction(monkeypatch, product.cloud, destroy, nth=2)
    reply = await product.call(token, "deploy", {"project": "api"})
    [text] = [part["text"] for part in reply["content"]]
    assert reply["isError"] is True
    assert re.fullmatch(
        r"Deployment 'dep_\w+' no longer exists: its project was destroyed while this call ran\.",
        text,
    )
    assert await product.count("deployments") == 0


async def test_two_finalizes_at_once_promote_once_and_keep_what_a_rollback_returns_to(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _ = await product.token_and_project()
    live = (await product.ok(token, "deploy", {"project": "api"}))["deployment_id"]
    ready = (await product.ok(token, "deploy", {"project": "api", "promote": False}))[
        "deployment_id"
    ]
    args = {"project": "api", "deployment_id": ready}
    first: list[Any] = []

    async def the_other_finalize() -> None:
        first.append(await product.ok(token, "finalize_deployment", args))

    lands_before_transaction(monkeypatch, product.cloud, the_other_finalize)
    second = await product.ok(token, "finalize_deployment", args)
    assert first[0]["superseded_deployment_id"] == live
    assert (second["status"], second["superseded_deployment_id"]) == ("live", None)
    assert second["deployment"]["previous_id"] == live
    assert await statuses(product) == {live: "superseded", ready: "live"}
    back = await product.ok(token, "rollback_deployment", {"project": "api"})
    assert (back["deployment_id"], back["rolled_back_deployment_id"]) == (live, ready)


async def test_a_rollback_that_a_deploy_lands_before_rolls_back_the_new_live_one(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _ = await product.token_and_project()
    one = (await product.ok(token, "deploy", {"project": "api"}))["deployment_id"]
    two = (await product.ok(token, "deploy", {"project": "api"}))["deployment_id"]
    three: list[str] = []

    async def deploy() -> None:
        three.append((await product.ok(token, "deploy", {"project": "api"}))["deployment_id"])

    lands_before_transaction(monkeypatch, product.cloud, deploy)
    back = await product.ok(token, "rollback_deployment", {"project": "api"})
    assert (back["deployment_id"], back["rolled_back_deployment_id"]) == (two, three[0])
    assert await statuses(product) == {one: "superseded", two: "live", three[0]: "rolled_back"}


async def test_a_restart_that_a_tear_down_lands_before_is_refused(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _ = await product.token_and_project(["web", "ssr"])
    await product.ok(token, "deploy", {"project": "api"})

    async def tear_down() -> None:
        await product.ok(token, "tear_down_project", {"project": "api"})

    lands_before_transaction(monkeypatch, product.cloud, tear_down)
    assert await product.error_text(token, "restart_service", {"project": "api"}) == (
        "Project 'api' has no live deployment, so nothing is running to restart; deploy first."
    )
    assert await service_states(product) == [("ssr", "stopped", 1), ("web", "stopped", 1)]


async def test_a_scale_that_a_downgrade_lands_before_is_bounded_by_the_new_plan(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = await product.user()
    tenant_id = await product.make_team({ada: "owner"}, plan="team")
    token = await product.token(ada)
    await product.ok(token, "create_project", {"name": "api", "tenant_id": tenant_id})

    async def downgrade() -> None:
        await product.ok(token, "change_plan", {"plan": "hobby", "tenant_id": tenant_id})

    lands_before_transaction(monkeypatch, product.cloud, downgrade)
    args = {"project": "api", "service": "web", "replicas": 50, "tenant_id": tenant_id}
    assert await product.error_text(token, "scale_service", args) == (
        "Replicas must be between 1 and 3 on the hobby plan; choose a value in that range or "
        "change the plan."
    )
    assert await service_states(product, tenant_id) == [("web", "stopped", 1)]
