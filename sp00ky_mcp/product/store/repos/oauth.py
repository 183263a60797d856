"""OAuth sign-in: users' password hashes, the clients that ask for access, the grants users
give them, and the single-use codes and refresh tokens of those grants.  Codes and refresh
tokens are stored as SHA-256 digests, never in clear; a grant's access tokens are rows of the
tokens table that name it."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from ..port import Db, Row


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """A client: registered here (RFC 7591), or described by the metadata document at the URL
    that is its id (`kind` "document")."""

    id: str
    kind: str
    name: str
    redirect_uris: tuple[str, ...]
    auth_method: str
    secret_hash: str | None
    created_at: float
    fetched_at: float


@dataclass(frozen=True, slots=True)
class Grant:
    """What a user allowed a client: scopes, on one resource, until revoked."""

    id: str
    client_id: str
    client_name: str
    user_id: str
    scopes: tuple[str, ...]
    resource: str
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class Code:
    digest: str
    grant_id: str
    redirect_uri: str
    challenge: str
    expires_at: float
    used_at: float | None


def _client(row: Row) -> OAuthClient:
    return OAuthClient(
        row["id"],
        row["kind"],
        row["name"],
        tuple(orjson.loads(row["redirect_uris"])),
        row["auth_method"],
        row["secret_hash"],
        row["created_at"],
        row["fetched_at"],
    )


def _grant(row: Row) -> Grant:
    return Grant(
        row["id"],
        row["client_id"],
        row["client_name"],
        row["user_id"],
        tuple(row["scopes"].split()),
        row["resource"],
        row["created_at"],
        row["revoked_at"],
    )


def _code(row: Row) -> Code:
    return Code(
        row["hash"],
        row["grant_id"],
        row["redirect_uri"],
        row["challenge"],
        row["expires_at"],
        row["used_at"],
    )


class OAuthRepo:
    def __init__(self, db: Db) -> None:
        self.db = db

    # --- passwords -------------------------------------------------------------------------

    async def set_password(self, user_id: str, hashed: str, now: float) -> None:
        await self.db.run(
            "INSERT INTO passwords (user_id, hash, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, "
            "updated_at = excluded.updated_at",
            user_id,
            hashed,
            now,
        )

    async def password(self, user_id: str) -> str | None:
        row = await self.db.one("SELECT hash FROM passwords WHERE user_id = ?", user_id)
        return None if row is None else str(row["hash"])

    # --- clients ---------------------------------------------------------------------------

    async def put_client(self, client: OAuthClient) -> None:
        """Adds the client, or (a metadata document fetched again) replaces what it says."""
        await self.db.run(
            "INSERT INTO oauth_clients (id, kind, name, redirect_uris, auth_method, "
            "secret_hash, created_at, fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
            "redirect_uris = excluded.redirect_uris, auth_method = excluded.auth_method, "
            "fetched_at = excluded.fetched_at",
            client.id,
            client.kind,
            client.name,
            orjson.dumps(list(client.redirect_uris)).decode(),
            client.auth_method,
            client.secret_hash,
            client.created_at,
            client.fetched_at,
        )

    async def client(self, client_id: str) -> OAuthClient | None:
        row = await self.db.one("SELECT * FROM oauth_clients WHERE id = ?", client_id)
        return None if row is None else _client(row)

    # --- grants ----------------------------------------------------------------------------

    async def add_grant(self, grant: Grant) -> None:
        await self.db.run(
            "INSERT INTO oauth_grants (id, client_id, client_name, user_id, scopes, resource, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            grant.id,
            grant.client_id,
            grant.client_name,
            grant.user_id,
            " ".join(grant.scopes),
            grant.resource,
            grant.created_at,
        )

    async def client_has_grant(self, client_id: str) -> bool:
        """Whether a user allowed the client something that still stands."""
        row = await self.db.one(
            "SELECT 1 AS held FROM oauth_grants WHERE client_id = ? AND revoked_at IS NULL LIMIT 1",
            client_id,
        )
        return row is not None

    async def grant(self, grant_id: str) -> Grant | None:
        row = await self.db.one("SELECT * FROM oauth_grants WHERE id = ?", grant_id)
        return None if row is None else _grant(row)

    async def hold_grant(self, grant_id: str) -> bool:
        """Whether the grant stands, read in the write transaction that issues under it.
        Write transactions run one at a time (one advisory lock on PostgreSQL, SQLite's own
        writer lock), so a revocation racing a token being issued runs before it (the grant
        no longer stands) or after it (and ends the new token too).  The row is written, not
        only read, so that this holds even for a store whose writes were not serialised."""
        held = await self.db.run(
            "UPDATE oauth_grants SET revoked_at = NULL WHERE id = ? AND revoked_at IS NULL",
            grant_id,
        )
        return held == 1

    async def revoke_grant(self, grant_id: str, now: float) -> None:
        """The grant and every access token issued under it; its refresh tokens then lead
        nowhere."""
        await self.db.run(
            "UPDATE oauth_grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            now,
            grant_id,
        )
        await self.db.run(
            "UPDATE tokens SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL",
            now,
            grant_id,
        )

    # --- codes and refresh tokens ------------------------------------------------------------

    async def add_code(self, code: Code) -> None:
        await self.db.run(
            "INSERT INTO oauth_codes (hash, grant_id, redirect_uri, challenge, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            code.digest,
            code.grant_id,
            code.redirect_uri,
            code.challenge,
            code.expires_at,
        )

    async def use_code(self, digest: str, now: float) -> tuple[Code, bool] | None:
        """The code, and whether this is its first use (marked used at once, so that of two
        redemptions racing each other only one is first)."""
        row = await self.db.one("SELECT * FROM oauth_codes WHERE hash = ?", digest)
        if row is None:
            return None
        first = await self.db.run(
            "UPDATE oauth_codes SET used_at = ? WHERE hash = ? AND used_at IS NULL", now, digest
        )
        return _code(row), first == 1

    async def add_refresh(self, digest: str, grant_id: str, now: float, expires: float) -> None:
        await self.db.run(
            "INSERT INTO oauth_refresh (hash, grant_id, created_at, expires_at) "
            "VALUES (?, ?, ?, ?)",
            digest,
            grant_id,
            now,
            expires,
        )

    async def use_refresh(self, digest: str, now: float) -> tuple[str, float, bool] | None:
        """The refresh token's grant, its expiry, and whether this is its first use."""
        row = await self.db.one(
            "SELECT grant_id, expires_at FROM oauth_refresh WHERE hash = ?", digest
        )
        if row is None:
            return None
        first = await self.db.run(
            "UPDATE oauth_refresh SET used_at = ? WHERE hash = ? AND used_at IS NULL", now, digest
        )
        return str(row["grant_id"]), float(row["expires_at"]), first == 1

    async def grant_of_refresh(self, digest: str) -> str | None:
        row = await self.db.one("SELECT grant_id FROM oauth_refresh WHERE hash = ?", digest)
        return None if row is None else str(row["grant_id"])

    async def forget_expired(self, now: float) -> None:
        """Codes and refresh tokens past their expiry are of no use to anyone."""
        await self.db.run("DELETE FROM oauth_codes WHERE expires_at < ?", now - 3600)
        await self.db.run("DELETE FROM oauth_refresh WHERE expires_at < ?", now)
