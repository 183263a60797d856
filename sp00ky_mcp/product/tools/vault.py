"""Tools of the 'vault' area: a project's vault, its key material and CI access."""

from __future__ import annotations

from typing import Any

from ..cloud import vault
from .base import ADMIN, PROJECT, TIME, Call, Spec, nullable, obj

STATUS = {
    "project": {"type": "string"},
    "initialized": {"type": "boolean"},
    "ci_access": {"type": "boolean", "description": "Whether CI builds may read the vault."},
    "initialized_at": nullable(TIME),
}
CHANGED = {"type": "boolean", "description": "False when CI access already was in that state."}


async def get_vault_status(call: Call) -> dict[str, Any]:
    return await vault.status(call.cloud, await call.project())


GET_VAULT_STATUS = Spec(
    name="get_vault_status",
    scope="vault:read",
    title="Get vault status",
    description="Use this to check whether a project's vault is initialized, when, and "
    "whether CI builds may read it. It never shows key material.",
    arguments={"project": PROJECT},
    required=("project",),
    output=obj(STATUS),
    handler=get_vault_status,
    read_only=True,
    pure=True,
    idempotent=True,
)


async def init_vault(call: Call) -> dict[str, Any]:
    project = await call.project()
    call.tenant.require_role("admin", "initialize a vault")
    return await vault.initialize(call.cloud, project)


INIT_VAULT = Spec(
    name="init_vault",
    scope="vault:write",
    title="Initialize the vault",
    description="Use this once per project to create its vault. The result carries the "
    "new key material (32 random bytes, base64), shown only this once and "
    "as ***REDACTED unless the token has secrets:reveal; a retry with the same "
    "idempotency_key returns the same outcome without it, and a vault that "
    f"already exists cannot be initialized again. {ADMIN}",
    arguments={"project": PROJECT},
    required=("project",),
    output=obj(
        {
            **STATUS,
            "key_material": {
                "type": "string",
                "description": "Base64 key material, or ***REDACTED unless the token has "
                "secrets:reveal; on a retry with the same idempotency_key, a note that it "
                "was shown once, in the first call's result.",
            },
        }
    ),
    handler=init_vault,
)


async def _set_ci_access(call: Call, enabled: bool) -> dict[str, Any]:
    project = await call.project()
    call.tenant.require_role("admin", "change vault CI access")
    return await vault.set_ci_access(call.cloud, project, enabled)


async def enable_vault_ci_access(call: Call) -> dict[str, Any]:
    return await _set_ci_access(call, True)


ENABLE_VAULT_CI_ACCESS = Spec(
    name="enable_vault_ci_access",
    scope="vault:write",
    title="Enable vault CI access",
    description="Use this to let the project's CI builds read its vault (the vault must "
    f"be initialized). Enabling it again changes nothing. {ADMIN}",
    arguments={"project": PROJECT},
    required=("project",),
    output=obj({**STATUS, "changed": CHANGED}),
    handler=enable_vault_ci_access,
    idempotent=True,
)


async def disable_vault_ci_access(call: Call) -> dict[str, Any]:
    return await _set_ci_access(call, False)


DISABLE_VAULT_CI_ACCESS = Spec(
    name="disable_vault_ci_access",
    scope="vault:write",
    title="Disable vault CI access",
    description="Use this to stop the project's CI builds from reading its vault. "
    f"Disabling it again changes nothing. {ADMIN}",
    arguments={"project": PROJECT},
    required=("project",),
    output=obj({**STATUS, "changed": CHANGED}),
    handler=disable_vault_ci_access,
    idempotent=True,
)


def specs() -> tuple[Spec, ...]:
    return (
        GET_VAULT_STATUS,
        INIT_VAULT,
        ENABLE_VAULT_CI_ACCESS,
        DISABLE_VAULT_CI_ACCESS,
    )
