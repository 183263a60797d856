"""The vault of a project: initialised once with random key material (a secret, shown only in
the result of initialisation, and sealed in the store), and a switch that lets CI read it."""

from __future__ import annotations

import base64
import secrets
from dataclasses import replace
from typing import Any

from ...engine.redaction import Secret
from ..store.repos.projects import Project
from ..store.repos.vault import Vault
from .base import Cloud, Conflict, iso

KEY_BYTES = 32


def _status(project: Project, vault: Vault | None) -> dict[str, Any]:
    return {
        "project": project.name,
        "initialized": vault is not None,
        "ci_access": vault.ci_access if vault is not None else False,
        "initialized_at": iso(vault.initialized_at) if vault is not None else None,
    }


async def status(cloud: Cloud, project: Project) -> dict[str, Any]:
    return _status(project, await cloud.reads.vault.vault(project.id))


def new_key_material() -> str:
    """32 random bytes from the CSPRNG, base64 (44 characters)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


async def initialize(cloud: Cloud, project: Project) -> dict[str, Any]:
    material = new_key_material()
    now = cloud.clock()
    async with cloud.transaction() as tx:
        if not await tx.vault.create(project.id, material, now):
            raise Conflict(
                f"The vault of project '{project.name}' is already initialized "
                "and its key material was shown only then; get_vault_status shows "
                "its state."
            )
        await cloud.log(tx, project.id, None, "info", "Vault initialized; CI access is disabled.")
    vault = Vault(project.id, ci_access=False, initialized_at=now)
    return {**_status(project, vault), "key_material": Secret(material)}


async def set_ci_access(cloud: Cloud, project: Project, enabled: bool) -> dict[str, Any]:
    """Idempotent: `changed` says whether this call flipped the switch."""
    async with cloud.transaction() as tx:
        vault = await tx.vault.vault(project.id)
        if vault is None:
            raise Conflict(
                f"The vault of project '{project.name}' is not initialized; run init_vault first."
            )
        changed = vault.ci_access != enabled
        if changed:
            await tx.vault.set_ci_access(project.id, enabled)
            state = "enabled" if enabled else "disabled"
            await cloud.log(tx, project.id, None, "info", f"Vault CI access {state}.")
    return {**_status(project, replace(vault, ci_access=enabled)), "changed": changed}
