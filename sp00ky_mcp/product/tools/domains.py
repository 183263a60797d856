"""Tools of the 'domains' area: custom domains of a project."""

from __future__ import annotations

from typing import Any

from ..cloud import domains
from .base import ADMIN, CURSOR, PROJECT, TIME, Call, Spec, limit, list_of, nullable, obj, text

HOSTNAME = text(
    300,
    "A domain name such as www.example.com or example.com; internationalised names are "
    "accepted and stored in punycode.",
)
RECORD = obj(
    {
        "type": {"type": "string", "enum": ["CNAME", "ALIAS", "TXT"]},
        "name": {"type": "string"},
        "value": {"type": "string"},
        "purpose": {"type": "string"},
    }
)
DOMAIN = obj(
    {
        "hostname": {"type": "string", "description": "The ASCII (punycode) form, as in DNS."},
        "unicode_hostname": {"type": "string"},
        "project": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "verified"]},
        "created_at": TIME,
        "verified_at": nullable(TIME),
        "dns_records": {
            "type": "array",
            "items": RECORD,
            "description": "The records to create at your DNS provider.",
        },
    }
)
VERIFICATION = (
    "A domain stays pending until its TXT record is verified; the embedded "
    "(self-hosted) store performs no DNS lookups, so there it stays pending."
)


async def list_domains(call: Call) -> dict[str, Any]:
    project = await call.project() if "project" in call.args else None
    return call.page(await domains.list_domains(call.cloud, call.tenant, project), 50)


LIST_DOMAINS = Spec(
    name="list_domains",
    scope="domains:read",
    title="List custom domains",
    description="Use this to see the custom domains of a project (or, without project, "
    "of every project in the tenant), their verification status, and the "
    f"DNS records each needs. {VERIFICATION}",
    arguments={
        "project": {
            **PROJECT,
            "description": "The project's name or id; omit to list the whole tenant's.",
        },
        "cursor": CURSOR,
        "limit": limit(50, 200),
    },
    required=(),
    output=list_of(DOMAIN),
    handler=list_domains,
    read_only=True,
    pure=True,
    idempotent=True,
)


async def add_domain(call: Call) -> dict[str, Any]:
    project = await call.project()
    host = domains.parse_hostname(call.args["hostname"])
    return await domains.add_domain(call.cloud, call.tenant, project, host)


ADD_DOMAIN = Spec(
    name="add_domain",
    scope="domains:write",
    title="Add a custom domain",
    description="Use this to serve a project on your own domain. Returns the DNS "
    "records to create: a CNAME to <project>.<region>.sp00ky.app for a "
    "subdomain, or an ALIAS (ANAME, CNAME flattening) for an apex domain, "
    "plus a TXT record _sp00ky-challenge.<hostname> that proves control. "
    "A hostname can be attached to only one project on the whole platform. "
    f"{VERIFICATION} Any member of the tenant may add one.",
    arguments={"project": PROJECT, "hostname": HOSTNAME},
    required=("project", "hostname"),
    output=DOMAIN,
    handler=add_domain,
    idempotent=True,
)


async def remove_domain(call: Call) -> dict[str, Any]:
    project = await call.project()
    call.tenant.require_role("admin", "remove domains")
    host = domains.parse_hostname(call.args["hostname"])
    await domains.domain(call.cloud, project, host)
    await call.confirm(
        f"remove domain '{host.ascii}' from project '{project.name}', so "
        "its traffic no longer reaches Sp00ky"
    )
    return await domains.remove_domain(call.cloud, project, host)


REMOVE_DOMAIN = Spec(
    name="remove_domain",
    scope="domains:write",
    title="Remove a custom domain",
    description="Use this to detach a custom domain from a project, so that its "
    "traffic no longer reaches Sp00ky (asks the user to confirm when the "
    f"client supports it). {ADMIN}",
    arguments={"project": PROJECT, "hostname": HOSTNAME},
    required=("project", "hostname"),
    output=obj(
        {
            "hostname": {"type": "string"},
            "project": {"type": "string"},
            "removed": {"type": "boolean"},
        }
    ),
    handler=remove_domain,
    destructive=True,
    idempotent=True,
)


def specs() -> tuple[Spec, ...]:
    return (
        LIST_DOMAINS,
        ADD_DOMAIN,
        REMOVE_DOMAIN,
    )
