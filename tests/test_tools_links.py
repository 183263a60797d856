"""The repo link tools: get_repo_link, list_repo_link_runs, set_up_repo_link,
update_repo_link, trigger_build, unlink_repo."""

from __future__ import annotations

from typing import Any

import pytest

from sp00ky_mcp.product.cloud import deployments
from sp00ky_mcp.product.store.repos.links import Run

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

REPO = "https://github.com/acme/api"
URL_PROBLEM = (
    "is not supported: use https://github.com/owner/repo, https://gitlab.com/group/repo or "
    "git@host:owner/repo.git."
)


async def setup(
    product: ProductEnv, link: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """Ada's project 'api' (services web, ssr), linked to REPO when `link` is given."""
    product.freeze()
    token, project = await product.token_and_project(["web", "ssr"])
    if link is not None:
        await product.ok(token, "set_up_repo_link", {"project": "api", "repo_url": REPO, **link})
    return token, project


async def link_row(product: ProductEnv, tenant_id: str | None = None) -> tuple[Any, ...] | None:
    """The link of project 'api' (in Ada's personal tenant unless `tenant_id` is given) as
    (repo_url, branch, auto_deploy 0/1), or None."""
    cloud = product.cloud
    tenant = await cloud.tenant((await product.user()).id, tenant_id)
    project = await cloud.project(tenant, "api")
    link = await product.store.reads.links.link(project.id)
    return None if link is None else (link.repo_url, link.branch, int(link.auto_deploy))


def test_link_tools_declare_their_scope_and_annotations() -> None:
    expected = {
        "get_repo_link": ("links:read", True, False, True),
        "list_repo_link_runs": ("links:read", True, False, True),
        "set_up_repo_link": ("links:write", False, False, True),
        "update_repo_link": ("links:write", False, False, True),
        "trigger_build": ("links:write", False, False, False),
        "unlink_repo": ("links:write", False, True, True),
    }
    assert_declared(expected)


# --- set up and status -------------------------------------------------------------------


async def test_get_repo_link_of_an_unlinked_project(product: ProductEnv) -> None:
    token, project = await setup(product)
    assert await product.ok(token, "get_repo_link", {"project": "api"}) == {
        "project": "api",
        "project_id": project["id"],
        "linked": False,
        "link": None,
        "last_run": None,
    }


async def test_set_up_repo_link_links_the_project(product: ProductEnv) -> None:
    token, project = await setup(product)
    args = {"project": "api", "repo_url": REPO, "branch": "release/2", "auto_deploy": False}
    expected = {
        "project": "api",
        "project_id": project["id"],
        "linked": True,
        "link": {
            "repo_url": REPO,
            "provider": "github",
            "branch": "release/2",
            "auto_deploy": False,
            "created_at": NOW_ISO,
            "updated_at": NOW_ISO,
        },
        "last_run": None,
    }
    assert await product.ok(token, "set_up_repo_link", args) == expected
    assert await product.ok(token, "get_repo_link", {"project": "api"}) == expected
    assert await product.ok(token, "set_up_repo_link", args) == expected
    shown = await product.ok(token, "get_project", {"project": "api"})
    assert shown["repo_link"] == {"repo_url": REPO, "branch": "release/2", "auto_deploy": False}
    logs = await product.ok(token, "get_logs", {"project": "api", "lines": 1})
    assert logs["items"][0]["message"] == f"Linked to {REPO} (release/2); auto-deploy off."


async def test_set_up_repo_link_defaults_to_main_with_auto_deploy(product: ProductEnv) -> None:
    token, _ = await setup(product)
    done = await product.ok(token, "set_up_repo_link", {"project": "api", "repo_url": REPO})
    assert (done["link"]["branch"], done["link"]["auto_deploy"]) == ("main", True)


@pytest.mark.parametrize(
    ("url", "provider"),
    [
        ("https://github.com/acme/api.git", "github"),
        ("https://github.com/acme/.github", "github"),
        ("https://gitlab.com/acme/platform/api", "gitlab"),
        ("git@github.com:acme/api.git", "github.com"),
        ("git@git.example.org:team/sub/api.git", "git.example.org"),
    ],
)
async def test_set_up_repo_link_accepts_the_supported_url_forms(
    product: ProductEnv, url: str, provider: str
) -> None:
    token, _ = await setup(product)
    done = await product.ok(token, "set_up_repo_link", {"project": "api", "repo_url": url})
    assert (done["link"]["repo_url"], done["link"]["provider"]) == (url, provider)


@pytest.mark.parametrize(
    "url",
    [
        "http://github.com/acme/api",
        "https://bitbucket.org/acme/api",
        "https://github.com/acme",
        "https://github.com/acme/api/tree/main",
        "https://github.com/../api",
        "git@github.com:acme/api",
        "ssh://git@github.com/acme/api.git",
        "github.com/acme/api",
        "https://github.com/acme/api?x=1",
    ],
)
async def test_set_up_repo_link_refuses_other_urls(product: ProductEnv, url: str) -> None:
    token, _ = await setup(product)
    assert await product.error_text(
        token, "set_up_repo_link", {"project": "api", "repo_url": url}
    ) == (f"Repository URL '{url}' {URL_PROBLEM}")
    assert await link_row(product) is None


@pytest.mark.parametrize("branch", ["feature x", "a..b", "-main", "main.lock", "/main", "@"])
async def test_set_up_repo_link_refuses_a_branch_git_would_refuse(
    product: ProductEnv, branch: str
) -> None:
    token, _ = await setup(product)
    message = await product.error_text(
        token, "set_up_repo_link", {"project": "api", "repo_url": REPO, "branch": branch}
    )
    assert message.startswith(f"Branch '{branch}' is not a valid git ref name: use a git branch")
    assert await link_row(product) is None


async def test_set_up_repo_link_refuses_to_relink_a_linked_project(product: ProductEnv) -> None:
    token, _ = await setup(product, {})
    other = "https://gitlab.com/acme/api"
    assert await product.error_text(
        token, "set_up_repo_link", {"project": "api", "repo_url": other}
    ) == (
        f"Project 'api' is already linked to {REPO}; use update_repo_link to change it, or "
        "unlink_repo first to link another repository."
    )
    assert await link_row(product) == (REPO, "main", 1)


async def test_set_up_repo_link_refuses_bad_arguments(product: ProductEnv) -> None:
    token, _ = await setup(product)
    prefix = "Invalid arguments for 'set_up_repo_link': "
    assert await product.error_text(token, "set_up_repo_link", {"project": "api"}) == (
        prefix + "Missing required argument 'repo_url'."
    )
    assert await product.error_text(
        token, "set_up_repo_link", {"project": "api", "repo_url": REPO, "auto_deploy": "no"}
    ) == (prefix + "Argument 'auto_deploy' must be of type boolean.")
    assert await link_row(product) is None


# --- update ------------------------------------------------------------------------------


async def test_update_repo_link_changes_branch_and_auto_deploy(product: ProductEnv) -> None:
    token, _ = await setup(product, {})
    product.freeze(NOW + 1)
    done = await product.ok(token, "update_repo_link", {"project": "api", "branch": "develop"})
    assert (done["link"]["branch"], done["link"]["auto_deploy"]) == ("develop", True)
    assert done["link"]["updated_at"] == "2026-01-01T00:00:01.000Z"
    done = await product.ok(token, "update_repo_link", {"project": "api", "auto_deploy": False})
    assert await link_row(product) == (REPO, "develop", 0)
    logs = await product.ok(token, "get_logs", {"project": "api", "lines": 1})
    assert logs["items"][0]["message"] == "Repo link updated: branch develop; auto-deploy off."


async def test_update_repo_link_needs_a_link_and_a_change(product: ProductEnv) -> None:
    token, _ = await setup(product)
    assert await product.error_text(token, "update_repo_link", {"project": "api"}) == (
        "Pass branch or auto_deploy (or both) to change the repo link."
    )
    assert (
        await product.error_text(token, "update_repo_link", {"project": "api", "branch": "dev"})
        == "Project 'api' has no repo link; set_up_repo_link links one first."
    )
    assert await product.error_text(
        token, "update_repo_link", {"project": "api", "branch": "a b"}
    ) == (
        "Branch 'a b' is not a valid git ref name: use a git branch, tag or commit such as main "
        "or release/1.2 (no spaces, '..', '~', '^', ':', '?', '*', '[', '\\\\' or '@{', not "
        "starting with '-' or '/', not ending with '/', '.' or '.lock')."
    )


# --- trigger and runs --------------------------------------------------------------------


async def test_trigger_build_creates_a_run_a_build_and_a_live_deployment(
    product: ProductEnv,
) -> None:
    token, project = await setup(product, {})
    done = await product.ok(token, "trigger_build", {"project": "api"})
    run_id, deployment_id = done["run_id"], done["deployment_id"]
    build = (await product.ok(token, "get_project", {"project": "api"}))["latest_build"]
    assert build["id"] != project["latest_build"]["id"]
    assert done == {
        "run_id": run_id,
        "deployment_id": deployment_id,
        "run": {
            "id": run_id,
            "status": "succeeded",
            "branch": "main",
            "commit_sha": build["commit_sha"],
            "deployment_id": deployment_id,
            "created_at": NOW_ISO,
            "finished_at": NOW_ISO,
        },
        "deployment": {
            "id": deployment_id,
            "project_id": project["id"],
            "status": "live",
            "ref": "main",
            "build_id": build["id"],
            "commit_sha": build["commit_sha"],
            "source": "repo_link",
            "previous_id": None,
            "created_at": NOW_ISO,
            "updated_at": NOW_ISO,
            "live_at": NOW_ISO,
        },
    }
    status = await product.ok(token, "get_deployment_status", {"project": "api"})
    assert status["deployment"] == done["deployment"]
    linked = await product.ok(token, "get_repo_link", {"project": "api"})
    assert linked["last_run"] == done["run"]


async def test_trigger_build_reports_progress_at_each_stage(product: ProductEnv) -> None:
    token, _ = await setup(product, {})
    seen = Progress()
    async with product.sdk(token, mode="auto") as client:
        result = await client.call_tool("trigger_build", {"project": "api"}, progress_callback=seen)
    assert result.structured_content is not None
    run, dep = result.structured_content["run_id"], result.structured_content["deployment_id"]
    sha = result.structured_content["run"]["commit_sha"][:7]
    assert seen == [
        (1, 5, f"Run {run} fetched main@{sha}; deployment {dep} is queued."),
        (2, 5, f"Deployment {dep} is building."),
        (3, 5, f"Deployment {dep} is ready."),
        (4, 5, f"Deployment {dep} is live."),
        (5, 5, f"Run {run} succeeded."),
    ]


async def test_without_auto_deploy_a_build_stops_at_ready(product: ProductEnv) -> None:
    token, _ = await setup(product, {"auto_deploy": False})
    live = await product.ok(token, "deploy", {"project": "api"})
    done = await product.ok(token, "trigger_build", {"project": "api", "ref": "hotfix/1"})
    assert (done["deployment"]["status"], done["run"]["status"]) == ("ready", "succeeded")
    assert done["run"]["branch"] == "hotfix/1"
    status = await product.ok(token, "get_deployment_status", {"project": "api"})
    assert status["live_deployment_id"] == live["deployment_id"]
    final = await product.ok(
        token,
        "finalize_deployment",
        {"project": "api", "deployment_id": done["deployment_id"]},
    )
    assert final["superseded_deployment_id"] == live["deployment_id"]


async def test_trigger_build_needs_a_link_and_a_valid_ref(product: ProductEnv) -> None:
    token, _ = await setup(product)
    assert await product.error_text(token, "trigger_build", {"project": "api"}) == (
        "Project 'api' has no repo link; set_up_repo_link links one first."
    )
    await product.ok(token, "set_up_repo_link", {"project": "api", "repo_url": REPO})
    message = await product.error_text(token, "trigger_build", {"project": "api", "ref": "a..b"})
    assert message.startswith("Ref 'a..b' is not a valid git ref name")
    assert await product.count("link_runs") + await product.count("deployments") == 0


async def test_a_run_whose_pipeline_was_cut_off_ends_as_its_deployment_did(
    product: ProductEnv,
) -> None:
    token, _ = await setup(product, {})
    cloud = product.cloud
    project = await cloud.project(await cloud.tenant((await product.user()).id, None), "api")
    for stage in (None, deployments.Status.READY):
        async with product.store.transaction() as tx:
            build = await deployments.build_to_deploy(cloud, tx, project, "main")
            dep = await deployments.queue(cloud, tx, project.id, build, "repo_link")
            run = Run(
                f"run_{stage}", project.id, "running", "main", build.commit_sha, dep, NOW, None
            )
            await tx.links.add_run(run)
            if stage is not None:
                await deployments.transition(cloud, tx, dep, deployments.Status.BUILDING)
                await deployments.transition(cloud, tx, dep, stage)
    product.freeze(NOW + deployments.STALE_SECONDS + 1)
    runs = await product.ok(token, "list_repo_link_runs", {"project": "api"})
    assert [(r["id"], r["status"]) for r in runs["items"]] == [
        ("run_ready", "succeeded"),
        ("run_None", "failed"),
    ]
    assert runs["items"][0]["finished_at"] == "2026-01-01T00:05:01.000Z"
    listed = await product.ok(token, "list_deployments", {"project": "api"})
    assert [d["status"] for d in listed["items"]] == ["ready", "failed"]


async def test_list_repo_link_runs_pages_newest_first(product: ProductEnv) -> None:
    token, _ = await setup(product, {})
    runs = [(await product.ok(token, "trigger_build", {"project": "api"}))["run"] for _ in range(3)]
    first = await product.ok(token, "list_repo_link_runs", {"project": "api", "limit": 2})
    assert first == {"items": [runs[2], runs[1]], "next_cursor": "o2", "truncated": True}
    rest = await product.ok(
        token, "list_repo_link_runs", {"project": "api", "limit": 2, "cursor": "o2"}
    )
    assert rest == {"items": [runs[0]], "next_cursor": None, "truncated": False}
    assert (
        await product.error_text(token, "list_repo_link_runs", {"project": "api", "cursor": "nope"})
        == "Invalid cursor: pass back a next_cursor value exactly as received."
    )


async def test_list_repo_link_runs_is_empty_for_a_project_never_linked(
    product: ProductEnv,
) -> None:
    token, _ = await setup(product)
    assert await product.ok(token, "list_repo_link_runs", {"project": "api"}) == {
        "items": [],
        "next_cursor": None,
        "truncated": False,
    }


# --- unlink ------------------------------------------------------------------------------


async def test_unlink_repo_removes_the_link_and_keeps_the_runs(product: ProductEnv) -> None:
    token, _ = await setup(product, {})
    run = (await product.ok(token, "trigger_build", {"project": "api"}))["run"]
    assert await product.ok(token, "unlink_repo", {"project": "api"}) == {
        "project": "api",
        "unlinked": True,
        "repo_url": REPO,
        "branch": "main",
        "runs_kept": 1,
    }
    assert await link_row(product) is None
    runs = await product.ok(token, "list_repo_link_runs", {"project": "api"})
    assert runs["items"] == [run]
    status = await product.ok(token, "get_repo_link", {"project": "api"})
    assert (status["linked"], status["last_run"]) == (False, run)
    assert await product.error_text(token, "unlink_repo", {"project": "api"}) == (
        "Project 'api' has no repo link; set_up_repo_link links one first."
    )


async def test_unlink_repo_does_nothing_when_the_user_declines(product: ProductEnv) -> None:
    token, _ = await setup(product, {})
    async with product.sdk(token, mode="legacy", elicitation_callback=decline) as client:
        result = await client.call_tool("unlink_repo", {"project": "api"})
    assert result.is_error is True
    assert result.content[0].model_dump()["text"] == (
        f"Not confirmed, so nothing was changed: unlink project 'api' from {REPO} (main)."
    )
    assert await link_row(product) == (REPO, "main", 1)


async def test_unlinking_a_team_project_needs_an_admin(product: ProductEnv) -> None:
    ada, bob = await product.user(), await product.user("bob@example.com")
    tenant_id = await product.make_team({ada: "owner", bob: "member"}, plan="team")
    bob_token = await product.token(bob)
    args = {"project": "api", "tenant_id": tenant_id}
    await product.ok(bob_token, "create_project", {"name": "api", "tenant_id": tenant_id})
    await product.ok(bob_token, "set_up_repo_link", {**args, "repo_url": REPO})
    assert (await product.ok(bob_token, "trigger_build", args))["run"]["status"] == "succeeded"
    assert await product.error_text(bob_token, "unlink_repo", args) == (
        "Only a team admin or above may unlink a repository; your role in 'Acme' is member."
    )
    assert await link_row(product, tenant_id) == (REPO, "main", 1)
    assert (await product.ok(await product.token(ada), "unlink_repo", args))["unlinked"] is True


async def test_another_users_token_cannot_see_or_change_the_link(product: ProductEnv) -> None:
    token, project = await setup(product, {})
    await product.ok(token, "trigger_build", {"project": "api"})
    bob = await product.token(await product.user("bob@example.com"), "mcp:full,secrets:reveal")
    pid = project["id"]
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_repo_link", {"project": pid}),
        ("list_repo_link_runs", {"project": pid}),
        ("set_up_repo_link", {"project": pid, "repo_url": "https://github.com/bob/x"}),
        ("update_repo_link", {"project": pid, "branch": "evil"}),
        ("trigger_build", {"project": pid}),
        ("unlink_repo", {"project": pid}),
    ]
    for tool, args in calls:
        assert await product.error_text(bob, tool, args) == (
            f"No project '{pid}' in tenant 'bob's workspace'; list_projects shows the projects "
            "there."
        ), tool
    assert await link_row(product) == (REPO, "main", 1)
    assert (await product.count("link_runs"), await product.count("deployments")) == (1, 1)


# --- two calls at once: the link is read inside the run's write ------------------------------


async def test_a_trigger_that_an_unlink_lands_before_starts_no_run(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    product.freeze()
    token, _ = await product.token_and_project(["web"])
    await product.ok(token, "set_up_repo_link", {"project": "api", "repo_url": REPO})

    async def unlink() -> None:
        await product.ok(token, "unlink_repo", {"project": "api"})

    lands_before_transaction(monkeypatch, product.cloud, unlink)
    refused = await product.error_text(token, "trigger_build", {"project": "api"})
    assert refused == "Project 'api' has no repo link; set_up_repo_link links one first."
    assert (await product.count("link_runs"), await product.count("deployments")) == (0, 0)


async def test_a_trigger_that_an_update_lands_before_runs_as_the_link_now_says(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    product.freeze()
    token, _ = await product.token_and_project(["web"])
    await product.ok(token, "set_up_repo_link", {"project": "api", "repo_url": REPO})

    async def update() -> None:
        arguments = {"project": "api", "auto_deploy": False, "branch": "release"}
        await product.ok(token, "update_repo_link", arguments)

    lands_before_transaction(monkeypatch, product.cloud, update)
    done = await product.ok(token, "trigger_build", {"project": "api"})
    assert (done["deployment"]["status"], done["run"]["branch"]) == ("ready", "release")
