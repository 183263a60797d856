"""Where everything OAuth lives on this server, and what its metadata documents and Bearer
challenges say.  Pure.

The issuer is the server's public URL (`--public-url`); the resource, the URL of its MCP
endpoint.  Protected resource metadata (RFC 9728) is served at the path-suffixed well-known URL
and at the root one; authorization server metadata (RFC 8414) at the issuer's well-known URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .. import scopes

PRM_PATH = "/.well-known/oauth-protected-resource"
AS_PATH = "/.well-known/oauth-authorization-server"
AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
REGISTER_PATH = "/oauth/register"
REVOKE_PATH = "/oauth/revoke"
# Access tokens live an hour; refresh tokens thirty days from their last use.
ACCESS_SECONDS = 3600
REFRESH_SECONDS = 30 * 86400


@dataclass(frozen=True, slots=True)
class Urls:
    issuer: str
    resource: str
    endpoint: str

    @classmethod
    def of(cls, public_url: str, endpoint: str) -> Urls:
        issuer = public_url.rstrip("/")
        return cls(issuer, issuer + endpoint, endpoint)

    @property
    def resource_metadata(self) -> str:
        return self.issuer + PRM_PATH + self.endpoint

    def at(self, path: str) -> str:
        return self.issuer + path

    @property
    def secure(self) -> bool:
        """https, or http on loopback (OAuth 2.1 section 1.5)."""
        parts = urlsplit(self.issuer)
        return parts.scheme == "https" or parts.hostname in ("127.0.0.1", "::1", "localhost")


def protected_resource(urls: Urls) -> dict[str, Any]:
    """RFC 9728 section 2."""
    return {
        "resource": urls.resource,
        "authorization_servers": [urls.issuer],
        "scopes_supported": list(scopes.CONCRETE),
        "bearer_methods_supported": ["header"],
        "resource_name": "Sp00ky Cloud MCP server",
        "resource_documentation": "https://sp00ky.cloud/docs/mcp",
    }


def authorization_server(urls: Urls) -> dict[str, Any]:
    """RFC 8414 section 2, with what MCP clients look for: S256 (clients refuse a server
    that does not list it) and client ID metadata documents (2025-11-25)."""
    return {
        "issuer": urls.issuer,
        "authorization_endpoint": urls.at(AUTHORIZE_PATH),
        "token_endpoint": urls.at(TOKEN_PATH),
        "registration_endpoint": urls.at(REGISTER_PATH),
        "revocation_endpoint": urls.at(REVOKE_PATH),
        "scopes_supported": list(scopes.CONCRETE),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": [
            "none",
            "client_secret_post",
            "client_secret_basic",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "none",
            "client_secret_post",
            "client_secret_basic",
        ],
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": True,
        "authorization_response_iss_parameter_supported": True,
    }


def challenge(
    urls: Urls,
    scope: str | None = None,
    error: str | None = None,
    description: str | None = None,
) -> str:
    """A WWW-Authenticate value (RFC 6750 section 3, RFC 9728 section 5.1)."""
    params = [f'resource_metadata="{urls.resource_metadata}"']
    if scope is not None:
        params.append(f'scope="{scope}"')
    if error is not None:
        params.append(f'error="{error}"')
    if description is not None:
        params.append(f'error_description="{quotable(description)}"')
    return "Bearer " + ", ".join(params)


def quotable(text: str) -> str:
    """RFC 6750 section 3: error_description is %x20-21 / %x23-5B / %x5D-7E."""
    cleaned = "".join(c if " " <= c <= "~" and c not in '"\\' else "'" for c in text)
    return cleaned.replace("`", "'")
