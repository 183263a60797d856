"""The SQLite schema: an explicit, ordered list of migrations, each applied once in a
transaction of its own and recorded in schema_migrations.  A database whose recorded schema
is newer than this list is refused: an older server would misread it.

Also the SQLite side of sealed columns: the triggers that seal any text written to them (a
write path that forgot to seal, or SQL typed by hand into this server's connection, stores
no plaintext), the step that seals what an earlier version stored in clear, and rotation.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import orjson

from ..secretbox import ENV_VALUE, KEY_ID_BYTES, VAULT_MATERIAL, Column, SecretBox
from .port import StoreError

# A step in code gets the transaction's connection and the store's secret box, and says how
# many rows it rewrote that held plaintext (which are then scrubbed from the files).
Step = Callable[[sqlite3.Connection, SecretBox], int]
Migration = tuple[int, "str | Step"]

USERS_TOKENS_AUDIT = """
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('personal', 'team')),
    plan TEXT NOT NULL DEFAULT 'hobby',
    created_at REAL NOT NULL
);
CREATE TABLE memberships (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships(user_id);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    last_used_at REAL,
    revoked_at REAL
);
CREATE INDEX tokens_by_user ON tokens(user_id);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    token_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    tenant_id TEXT,
    tool TEXT NOT NULL,
    arguments_digest TEXT NOT NULL,
    outcome TEXT NOT NULL,
    duration_ms REAL NOT NULL
);
CREATE INDEX audit_by_token ON audit_log(token_id, at);
"""

CONTROL_PLANE = """
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE TABLE services (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    replicas INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL DEFAULT 'stopped',
    restarted_at REAL,
    UNIQUE (project_id, name)
);
CREATE TABLE builds (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    ref TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX builds_by_project ON builds(project_id, created_at);
CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    build_id TEXT REFERENCES builds(id) ON DELETE SET NULL,
    ref TEXT NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'manual',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    live_at REAL
);
CREATE INDEX deployments_by_project ON deployments(project_id, created_at);
CREATE TABLE log_lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    service TEXT,
    at REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX log_lines_by_project ON log_lines(project_id, id);
CREATE TABLE env_vars (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (project_id, key)
);
CREATE TABLE vaults (
    project_id TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    key_material TEXT NOT NULL,
    ci_access INTEGER NOT NULL DEFAULT 0,
    initialized_at REAL NOT NULL
);
CREATE TABLE backups (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_at REAL NOT NULL,
    completed_at REAL
);
CREATE INDEX backups_by_project ON backups(project_id, created_at);
CREATE TABLE restores (
    id TEXT PRIMARY KEY,
    backup_id TEXT NOT NULL REFERENCES backups(id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE backup_configs (
    project_id TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    schedule TEXT NOT NULL,
    retention_days INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE domains (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    hostname TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    verification_token TEXT NOT NULL,
    created_at REAL NOT NULL,
    verified_at REAL
);
CREATE TABLE repo_links (
    project_id TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    repo_url TEXT NOT NULL,
    branch TEXT NOT NULL,
    auto_deploy INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE link_runs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    deployment_id TEXT REFERENCES deployments(id) ON DELETE SET NULL,
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX link_runs_by_project ON link_runs(project_id, created_at);
CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email TEXT NOT NULL COLLATE NOCASE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    invited_by TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    UNIQUE (tenant_id, email)
);
CREATE TABLE billing_sessions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('checkout', 'portal')),
    plan TEXT,
    url TEXT NOT NULL,
    created_at REAL NOT NULL,
    used_at REAL
);
CREATE TABLE idempotency (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    tool TEXT NOT NULL,
    key TEXT NOT NULL,
    arguments_digest TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (user_id, tool, key)
);
"""

# The deployment that was live when this one went live: what a rollback returns to.
PREVIOUS_DEPLOYMENT = (
    "ALTER TABLE deployments ADD COLUMN previous_id TEXT "
    "REFERENCES deployments(id) ON DELETE SET NULL"
)

BILLING_EVENTS = """
CREATE TABLE billing_events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT REFERENCES users(id) ON DELETE SET NULL,
    kind TEXT NOT NULL CHECK (kind IN ('checkout_session', 'portal_session', 'plan_change',
                                       'session_redeemed')),
    from_plan TEXT,
    to_plan TEXT,
    session_id TEXT,
    at REAL NOT NULL
);
CREATE INDEX billing_events_by_tenant ON billing_events(tenant_id, at);
"""

# Idempotency records written before secrets were left out of them kept a result's secret
# fields in clear ({"$secret": value}; the results are JSON stored as BLOBs, which SQLite's
# JSON functions read only once cast to TEXT): init_vault's key material and set_env_var's
# value become the note a retry shows instead; a record with a secret anywhere else is dropped
# (its key then runs the call again, which these tools refuse or repeat harmlessly).
SECRETS_OUT_OF_IDEMPOTENCY = """
UPDATE idempotency
SET result = json_set(CAST(result AS TEXT), '$.key_material', json('{"$shown_once":true}'))
WHERE tool = 'init_vault'
AND json_type(CAST(result AS TEXT), '$.key_material."$secret"') IS NOT NULL;
UPDATE idempotency
SET result = json_set(CAST(result AS TEXT), '$.value', json('{"$shown_once":true}'))
WHERE tool = 'set_env_var' AND json_type(CAST(result AS TEXT), '$.value."$secret"') IS NOT NULL;
DELETE FROM idempotency WHERE instr(CAST(result AS TEXT), '"$secret"') > 0
"""


def _seal_env(db: sqlite3.Connection, box: SecretBox) -> int:
    return seal_plaintext(db, box, ENV_VALUE)


def _seal_vault(db: sqlite3.Connection, box: SecretBox) -> int:
    return seal_plaintext(db, box, VAULT_MATERIAL)


# Raised by every transaction (not by bookkeeping): what each process's read caches follow.
STORE_VERSION = """
CREATE TABLE store_version (n INTEGER NOT NULL);
INSERT INTO store_version VALUES (0)
"""

# OAuth 2.1 sign-in: users' passwords, the clients that ask, the grants users give them, the
# codes and refresh tokens of those grants.  An OAuth access token is an ordinary token row
# that names its grant and the resource (audience) it was issued for.
OAUTH = """
CREATE TABLE passwords (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    hash TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('registered', 'document')),
    name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    auth_method TEXT NOT NULL,
    secret_hash TEXT,
    created_at REAL NOT NULL,
    fetched_at REAL NOT NULL
);
CREATE TABLE oauth_grants (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    client_name TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scopes TEXT NOT NULL,
    resource TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX oauth_grants_by_user ON oauth_grants(user_id);
CREATE TABLE oauth_codes (
    hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    challenge TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE TABLE oauth_refresh (
    hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE INDEX oauth_refresh_by_grant ON oauth_refresh(grant_id);
ALTER TABLE tokens ADD COLUMN grant_id TEXT REFERENCES oauth_grants(id) ON DELETE CASCADE;
ALTER TABLE tokens ADD COLUMN resource TEXT;
CREATE INDEX tokens_by_grant ON tokens(grant_id)
"""

# Whether a client holds a grant decides which host lookups it may use (`fetching.Resolver`).
GRANTS_BY_CLIENT = "CREATE INDEX oauth_grants_by_client ON oauth_grants(client_id)"

# Deployments made, kept when their project is destroyed: a month's deployments are what was
# deployed that month, which destroying a project does not undo (the usage a plan bounds).
DEPLOYMENTS_MADE = """
CREATE TABLE deployments_made (
    deployment_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    created_at REAL NOT NULL
);
CREATE INDEX deployments_made_by_tenant ON deployments_made(tenant_id, created_at);
INSERT INTO deployments_made (deployment_id, tenant_id, created_at)
SELECT d.id, p.tenant_id, d.created_at FROM deployments d JOIN projects p ON p.id = d.project_id
"""

MIGRATIONS: list[Migration] = [
    (1, USERS_TOKENS_AUDIT),
    (2, CONTROL_PLANE),
    (10, PREVIOUS_DEPLOYMENT),
    (30, BILLING_EVENTS),
    (60, SECRETS_OUT_OF_IDEMPOTENCY),
    (70, _seal_env),
    (71, _seal_vault),
    (72, STORE_VERSION),
    (80, OAUTH),
    (81, GRANTS_BY_CLIENT),
    (90, DEPLOYMENTS_MADE),
]
LATEST = MIGRATIONS[-1][0]


def applied(db: sqlite3.Connection) -> set[int]:
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    return {int(row[0]) for row in db.execute("SELECT version FROM schema_migrations")}


def migrate(db: sqlite3.Connection, box: SecretBox, path: str) -> list[int]:
    """Applies every migration not applied yet, in order; the versions applied.  Plaintext
    that a step sealed is then scrubbed from the files."""
    done = applied(db)
    newest = max(done, default=0)
    if newest > LATEST:
        raise StoreError(
            f"The store at {path} has schema version {newest}, newer than this sp00ky-mcp "
            f"knows ({LATEST}); upgrade sp00ky-mcp, or pass another --data-dir."
        )
    ran: list[int] = []
    sealed = 0
    for version, step in MIGRATIONS:
        if version not in done:
            sealed += _apply(db, box, path, version, step)
            ran.append(version)
    if sealed and path != ":memory:":
        _scrub(db)
    return ran


def _apply(
    db: sqlite3.Connection, box: SecretBox, path: str, version: int, step: str | Step
) -> int:
    try:
        db.execute("BEGIN IMMEDIATE")
        sealed = 0
        if isinstance(step, str):
            for statement in _statements(step):
                db.execute(statement)
        else:
            sealed = step(db, box)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
        db.execute("COMMIT")
        return sealed
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise StoreError(
            f"Cannot migrate the store at {path} to version {version}: {exc}."
        ) from None


def _scrub(db: sqlite3.Connection) -> None:
    """Once plaintext an earlier version stored has been sealed, its old bytes may remain in
    free pages and the write-ahead log: VACUUM rewrites the file, and the checkpoints empty
    the log."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _statements(sql: str) -> list[str]:
    return [part.strip() for part in sql.split(";") if part.strip()]


def key_ids_in_use(db: sqlite3.Connection) -> set[bytes]:
    """The ids of the keys that seal values in the store (from the sealed columns it records,
    whichever modules this process imported)."""
    ids: set[bytes] = set()
    for column in recorded_columns(db):
        rows = db.execute(
            f"SELECT DISTINCT substr({column.column}, 2, {KEY_ID_BYTES}) FROM {column.table} "
            f"WHERE typeof({column.column}) = 'blob'"
        ).fetchall()
        ids.update(bytes(row[0]) for row in rows)
    return ids


def recorded_columns(db: sqlite3.Connection) -> list[Column]:
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sealed_columns'"
    ).fetchone()
    if exists is None:
        return []
    rows = db.execute("SELECT tbl, col, identity FROM sealed_columns ORDER BY tbl, col")
    return [Column(t, c, tuple(orjson.loads(i))) for t, c, i in rows.fetchall()]


SEAL_FUNCTION = "sp00ky_seal"


def add_seal_function(db: sqlite3.Connection, box: Callable[[], SecretBox]) -> None:
    """The SQL function the sealed columns' triggers call (see `triggers`), sealing under
    whichever box the store holds then."""

    def seal(table: str, column: str, plaintext: str, *identity: object) -> bytes:
        return box().seal(Column(table, column, ()), [str(part) for part in identity], plaintext)

    db.create_function(SEAL_FUNCTION, -1, seal)


def triggers(column: Column) -> list[str]:
    """Triggers that seal any text written to `column`, before the write commits: a write path
    that forgets to seal (or SQL typed by hand into this server's connection) stores no
    plaintext.  A connection without the seal function, such as an older server's, fails
    such a write instead of storing it in clear."""
    table, name = column.table, column.column
    match = " AND ".join(f"{part} = NEW.{part}" for part in column.identity)
    parts = ", ".join(f"NEW.{part}" for part in column.identity)
    body = (
        f"WHEN typeof(NEW.{name}) = 'text' BEGIN UPDATE {table} SET {name} = "
        f"{SEAL_FUNCTION}('{table}', '{name}', NEW.{name}, {parts}) WHERE {match}; END"
    )
    return [
        f"CREATE TRIGGER IF NOT EXISTS seal_{table}_{name}_insert AFTER INSERT ON {table} {body}",
        f"CREATE TRIGGER IF NOT EXISTS seal_{table}_{name}_update AFTER UPDATE OF {name} "
        f"ON {table} {body}",
    ]


def seal_plaintext(db: sqlite3.Connection, box: SecretBox, column: Column) -> int:
    """Records `column` as sealed, adds its triggers and seals the plaintext a store written by
    an earlier version holds there; how many values it sealed."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS sealed_columns (tbl TEXT NOT NULL, col TEXT NOT NULL, "
        "identity TEXT NOT NULL, PRIMARY KEY (tbl, col))"
    )
    db.execute(
        "INSERT OR IGNORE INTO sealed_columns VALUES (?, ?, ?)",
        (column.table, column.column, orjson.dumps(list(column.identity)).decode()),
    )
    for sql in triggers(column):
        db.execute(sql)
    return _reseal(db, box, column, "text")


def reseal_all(db: sqlite3.Connection, box: SecretBox) -> int:
    """Seals every sealed value again under the box's current key; how many there were."""
    return sum(_reseal(db, box, column, "blob") for column in recorded_columns(db))


def _reseal(db: sqlite3.Connection, box: SecretBox, column: Column, kind: str) -> int:
    ids = column.identity
    rows = db.execute(
        f"SELECT {', '.join(ids)}, {column.column} AS sealed FROM {column.table} "
        f"WHERE typeof({column.column}) = ?",
        (kind,),
    ).fetchall()
    where = " AND ".join(f"{part} = ?" for part in ids)
    db.executemany(
        f"UPDATE {column.table} SET {column.column} = ? WHERE {where}",
        [_resealed(box, column, row, kind) for row in rows],
    )
    return len(rows)


def _resealed(box: SecretBox, column: Column, row: sqlite3.Row, kind: str) -> list[object]:
    identity = [str(row[part]) for part in column.identity]
    value = row["sealed"] if kind == "text" else box.open(column, identity, row["sealed"])
    return [box.seal(column, identity, value), *identity]
