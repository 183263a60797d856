"""The vault of a project: initialised once with random key material (a secret, shown only in
the result of initialisation, and sealed in the store), and a switch that lets CI read it."""

from __future__ import annotations

import base64
import secrets
import sqlite3
from typing import Any

from ...engine.redaction import Secret
from ..secretbox import seal_plaintext, sealed_column
from ..store import Store, migration
from .base import Cloud, Conflict, iso

KEY_BYTES = 32
MATERIAL = sealed_column("vaults", "key_material", ("project_id",))
# Seals the material an earlier version stored in clear (and adds the column's triggers).
migration(71, lambda db, box: seal_plaintext(db, box, MATERIAL))


def stored_material(store: Store, project_id: str, sealed: object) -> str:
    """The plaintext of a vault's stored key material."""
    return store.secrets.open(MATERIAL, (project_id,), sealed)


def _status(project: sqlite3.Row, row: sqlite3.Row | None) -> dict[str, Any]:
    return {
        "project": project["name"],
        "initialized": row is not None,
        "ci_access": bool(row["ci_access"]) if row is not None else False,
        "initialized_at": iso(row["initialized_at"]) if row is not None else None,
    }


def _row(cloud: Cloud, project_id: str) -> sqlite3.Row | None:
    return cloud.store.one("SELECT * FROM vaults WHERE project_id = ?", (project_id,))


def status(cloud: Cloud, project: sqlite3.Row) -> dict[str, Any]:
    return _status(project, _row(cloud, project["id"]))


def new_key_material() -> str:
    """32 random bytes from the CSPRNG, base64 (44 characters)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def initialize(cloud: Cloud, project: sqlite3.Row) -> dict[str, Any]:
    material = new_key_material()
    now = cloud.clock()
    with cloud.transaction() as db:
        taken = db.execute(
            "INSERT OR IGNORE INTO vaults (project_id, key_material, ci_access, "
            "initialized_at) VALUES (?, ?, 0, ?)",
            (project["id"], cloud.store.secrets.seal(MATERIAL, (project["id"],), material), now),
        ).rowcount
        if not taken:
            raise Conflict(
                f"The vault of project '{project['name']}' is already initialized "
                "and its key material was shown only then; get_vault_status shows "
                "its state."
            )
        cloud.log(db, project["id"], None, "info", "Vault initialized; CI access is disabled.")
    row = _row(cloud, project["id"])
    return {**_status(project, row), "key_material": Secret(material)}


def set_ci_access(cloud: Cloud, project: sqlite3.Row, enabled: bool) -> dict[str, Any]:
    """Idempotent: `changed` says whether this call flipped the switch."""
    with cloud.transaction() as db:
        row = db.execute(
            "SELECT ci_access FROM vaults WHERE project_id = ?", (project["id"],)
        ).fetchone()
        if row is None:
            raise Conflict(
                f"The vault of project '{project['name']}' is not initialized; run "
                "init_vault first."
            )
        changed = bool(row["ci_access"]) != enabled
        if changed:
            db.execute(
                "UPDATE vaults SET ci_access = ? WHERE project_id = ?",
                (int(enabled), project["id"]),
            )
            state = "enabled" if enabled else "disabled"
            cloud.log(db, project["id"], None, "info", f"Vault CI access {state}.")
    return {**status(cloud, project), "changed": changed}
