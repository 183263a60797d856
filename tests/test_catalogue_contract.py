"""The product catalogue against issue 4's table: every tool registered with its one scope, and
every entry complete — title, description, closed input schema, a valid output schema, and
annotations true to what the tool does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from sp00ky_mcp.engine.catalogue import Tool
from sp00ky_mcp.product import scopes
from sp00ky_mcp.product.accounts import Accounts
from sp00ky_mcp.product.cloud.base import Cloud
from sp00ky_mcp.product.store.sqlite import SqliteStore
from sp00ky_mcp.product.tools import all_specs, product_tools

# Issue 4, "The tool catalogue": scope -> tools.  A trailing * marks a destructive tool.
TABLE: dict[str, tuple[str, ...]] = {
    "projects:read": ("list_projects", "get_project"),
    "projects:write": ("create_project", "destroy_project*"),
    "deployments:read": ("get_deployment_status", "list_deployments"),
    "deployments:write": (
        "deploy",
        "finalize_deployment",
        "rollback_deployment",
        "restart_service",
        "scale_service",
        "tear_down_project*",
    ),
    "logs:read": ("get_logs",),
    "env:read": ("list_env_vars",),
    "env:write": ("set_env_var", "delete_env_var*", "bulk_load_env_vars"),
    "vault:read": ("get_vault_status",),
    "vault:write": ("init_vault", "enable_vault_ci_access", "disable_vault_ci_access"),
    "backups:read": ("list_backups", "get_restore_status"),
    "backups:write": (
        "create_backup",
        "restore_backup*",
        "delete_backup*",
        "configure_backups",
        "reset_backup_config*",
    ),
    "domains:read": ("list_domains",),
    "domains:write": ("add_domain", "remove_domain*"),
    "links:read": ("get_repo_link", "list_repo_link_runs"),
    "links:write": ("set_up_repo_link", "update_repo_link", "trigger_build", "unlink_repo*"),
    "tenants:read": ("list_teams", "list_team_members"),
    "tenants:write": (
        "create_team",
        "invite_team_member",
        "remove_team_member*",
        "remove_team_invitation*",
    ),
    "billing:read": ("get_usage",),
    "billing:write": ("create_checkout_session", "change_plan", "create_billing_portal_session"),
}
EXPECTED_SCOPE = {name.rstrip("*"): scope for scope, names in TABLE.items() for name in names}
DESTRUCTIVE = {name.rstrip("*") for names in TABLE.values() for name in names if name.endswith("*")}
# Tools that act on no single tenant, so they take no tenant_id.
TENANTLESS = {"list_teams", "create_team"}
# The issue fixes one name per concept; these are the synonyms a tool must not use instead.
SYNONYMS = {
    "project_id": "project",
    "project_name": "project",
    "projectId": "project",
    "tenant": "tenant_id",
    "tenantId": "tenant_id",
    "team_id": "tenant_id",
    "service_name": "service",
    "deployment": "deployment_id",
    "deploymentId": "deployment_id",
    "backup": "backup_id",
    "restore": "restore_id",
    "domain": "hostname",
    "host": "hostname",
    "name_or_id": "project",
    "page_token": "cursor",
    "page_size": "limit",
    "max_lines": "lines",
}
REGISTERED = [spec.name for spec in all_specs()]


@pytest.fixture(scope="module")
def tools() -> Iterator[dict[str, Tool]]:
    store = SqliteStore.in_memory()
    accounts = Accounts(store)
    yield {tool.name: tool for tool in product_tools(Cloud(store, accounts))}
    # Off any event loop: the fixture is a plain function, shared by the module's tests.
    store.close_now()


def test_the_table_uses_only_concrete_scopes_and_covers_all_but_secrets_reveal() -> None:
    assert set(TABLE) == set(scopes.CONCRETE) - {scopes.REVEAL}


def test_the_catalogue_is_exactly_the_issues_table() -> None:
    assert sorted(REGISTERED) == sorted(EXPECTED_SCOPE)


def test_no_tool_is_registered_twice() -> None:
    assert len(REGISTERED) == len(set(REGISTERED))


@pytest.mark.parametrize("name", sorted(EXPECTED_SCOPE))
def test_the_tool_is_registered_with_the_scope_of_the_table(
    tools: dict[str, Tool], name: str
) -> None:
    assert name in tools, f"{name} is not registered yet"
    assert tools[name].scope == EXPECTED_SCOPE[name]


@pytest.mark.parametrize("name", REGISTERED)
class TestEveryRegisteredTool:
    def test_it_requires_exactly_one_concrete_scope(
        self, tools: dict[str, Tool], name: str
    ) -> None:
        scope = tools[name].scope
        assert isinstance(scope, str)
        assert scope in scopes.CONCRETE and scope != scopes.REVEAL

    def test_it_has_a_title_and_a_description(self, tools: dict[str, Tool], name: str) -> None:
        tool = tools[name]
        assert tool.title and tool.title.strip() == tool.title
        assert tool.description.strip()
        assert tool.annotations is not None and tool.annotations["title"] == tool.title

    def test_its_input_schema_is_a_closed_object(self, tools: dict[str, Tool], name: str) -> None:
        schema = tools[name].input_schema
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) <= set(schema["properties"])

    def test_its_arguments_use_the_shared_names(self, tools: dict[str, Tool], name: str) -> None:
        properties = tools[name].input_schema["properties"]
        misnamed = {arg: SYNONYMS[arg] for arg in properties if arg in SYNONYMS}
        assert misnamed == {}
        for arg, schema in properties.items():
            assert schema.get("description") or schema.get("enum") or schema.get("type"), arg

    def test_it_takes_a_tenant_id_unless_it_acts_on_no_single_tenant(
        self, tools: dict[str, Tool], name: str
    ) -> None:
        properties = tools[name].input_schema["properties"]
        assert ("tenant_id" in properties) is (name not in TENANTLESS)

    def test_it_takes_an_idempotency_key_exactly_when_it_mutates(
        self, tools: dict[str, Tool], name: str
    ) -> None:
        tool = tools[name]
        assert tool.annotations is not None
        mutates = not tool.annotations["readOnlyHint"]
        assert ("idempotency_key" in tool.input_schema["properties"]) is mutates
        assert "idempotency_key" not in tool.input_schema["required"]

    def test_its_output_schema_is_a_valid_object_schema(
        self, tools: dict[str, Tool], name: str
    ) -> None:
        schema = tools[name].output_schema
        assert schema is not None
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object"

    def test_its_annotations_carry_all_four_hints(self, tools: dict[str, Tool], name: str) -> None:
        annotations: dict[str, Any] = tools[name].annotations or {}
        hints = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
        assert {h: type(annotations.get(h)) for h in hints} == dict.fromkeys(hints, bool)

    def test_it_is_read_only_exactly_when_its_scope_is_a_read_scope(
        self, tools: dict[str, Tool], name: str
    ) -> None:
        tool = tools[name]
        assert tool.annotations is not None and tool.scope is not None
        assert tool.annotations["readOnlyHint"] is tool.scope.endswith(":read")

    def test_it_is_destructive_exactly_when_the_table_marks_it(
        self, tools: dict[str, Tool], name: str
    ) -> None:
        annotations = tools[name].annotations
        assert annotations is not None
        assert annotations["destructiveHint"] is (name in DESTRUCTIVE)

    def test_read_tools_are_idempotent_and_nothing_is_open_world(
        self, tools: dict[str, Tool], name: str
    ) -> None:
        annotations = tools[name].annotations
        assert annotations is not None
        if annotations["readOnlyHint"]:
            assert annotations["idempotentHint"] is True
        assert annotations["openWorldHint"] is False

    def test_its_wire_descriptor_carries_every_part(
        self, tools: dict[str, Tool], name: str
    ) -> None:
        wire = tools[name].descriptor()
        assert set(wire) == {
            "name",
            "title",
            "description",
            "inputSchema",
            "outputSchema",
            "annotations",
        }
