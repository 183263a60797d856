"""The control plane's tables (migration 2).  Every object hangs off a tenant, directly or
through a project, and is deleted with it (ON DELETE CASCADE)."""

from __future__ import annotations

from ..store import migration

migration(
    2,
    """
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
""",
)

# Idempotency records written before secrets were left out of them kept a result's secret
# fields in clear ({"$secret": value}; the results are JSON stored as BLOBs, which SQLite's
# JSON functions read only once cast to TEXT): init_vault's key material and set_env_var's value
# become the note a retry shows instead; a record with a secret anywhere else is dropped (its
# key then runs the call again, which these tools refuse or repeat harmlessly).
migration(
    60,
    """
UPDATE idempotency
SET result = json_set(CAST(result AS TEXT), '$.key_material', json('{"$shown_once":true}'))
WHERE tool = 'init_vault'
AND json_type(CAST(result AS TEXT), '$.key_material."$secret"') IS NOT NULL;
UPDATE idempotency
SET result = json_set(CAST(result AS TEXT), '$.value', json('{"$shown_once":true}'))
WHERE tool = 'set_env_var' AND json_type(CAST(result AS TEXT), '$.value."$secret"') IS NOT NULL;
DELETE FROM idempotency WHERE instr(CAST(result AS TEXT), '"$secret"') > 0
""",
)
