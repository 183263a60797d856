"""Custom domains: hostname validation (IDNA), platform-wide uniqueness, and the DNS records
a user must create.

The scheme: a subdomain (`www.example.com`) gets a CNAME to `<project>.<region>.sp00ky.app`;
an apex domain (`example.com`, or `example.co.uk` under a known two-label public suffix) gets
an ALIAS record (ALIAS, ANAME or CNAME flattening at the DNS provider) to the same target,
since an apex cannot hold a CNAME.  Either way a TXT record `_sp00ky-challenge.<hostname>`
with a random token proves control of the domain.

Verification: the embedded store performs no DNS lookups, so its domains stay `pending`
(verified_at null) until the hosted platform, which checks the TXT record periodically, marks
them `verified`.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass
from encodings import idna
from typing import Any

from ..store.repos import Repos
from ..store.repos.domains import Domain, Holder
from ..store.repos.projects import Project
from .base import (
    Cloud,
    Conflict,
    Invalid,
    NotFound,
    Tenant,
    check_visible,
    iso,
    iso_or_none,
    new_id,
)

PLATFORM_ZONE = "sp00ky.app"
RESERVED_ZONES = ("sp00ky.app", "sp00ky.cloud")
CHALLENGE_LABEL = "_sp00ky-challenge"
MAX_DNS_NAME = 253
# The challenge record's name must fit in DNS too, which bounds the hostname itself.
MAX_HOSTNAME = MAX_DNS_NAME - len(CHALLENGE_LABEL) - 1
MAX_LABEL = 63
TWO_LABEL_SUFFIXES = frozenset(
    {
        "co.uk",
        "org.uk",
        "ac.uk",
        "gov.uk",
        "me.uk",
        "com.au",
        "net.au",
        "org.au",
        "co.nz",
        "org.nz",
        "co.jp",
        "ne.jp",
        "or.jp",
        "com.br",
        "com.cn",
        "com.mx",
        "co.in",
        "co.za",
        "com.tr",
        "com.sg",
        "co.kr",
    }
)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class Hostname:
    ascii: str
    unicode: str

    @property
    def is_apex(self) -> bool:
        labels = self.ascii.split(".")
        return len(labels) == 2 or (len(labels) == 3 and ".".join(labels[1:]) in TWO_LABEL_SUFFIXES)


def _shown(text: str) -> str:
    return text if len(text) <= 70 else text[:70] + "…"


def parse_hostname(text: str) -> Hostname:
    """Lower-cased, IDNA-encoded (punycode) and checked; one trailing dot is dropped.  IDNA
    would silently drop a zero-width or soft hyphen character (RFC 3454 table B.1); it is
    refused instead, since the name the user sees is then not the one attached."""
    check_visible("hostname", text.strip())
    name = text.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise Invalid("The hostname is empty; pass a domain name such as www.example.com.")
    shown = _shown(name)
    pairs = [_label(label, shown) for label in _labels(name, shown)]
    ascii_name = ".".join(a for a, _ in pairs)
    _check_encoded(ascii_name, shown)
    return Hostname(ascii_name, ".".join(u for _, u in pairs))


def _labels(name: str, shown: str) -> list[str]:
    """The labels of a name that is not an IP address and has two or more labels."""
    if _is_ip(name):
        raise Invalid(
            f"'{shown}' is an IP address; a custom domain needs a hostname such as www.example.com."
        )
    if "_" in name:
        raise Invalid(
            f"'{shown}' contains an underscore, which hostnames cannot hold; use a hyphen instead."
        )
    labels = name.split(".")
    if "" in labels:
        raise Invalid(f"'{shown}' has an empty label; remove the extra dot.")
    if len(labels) < 2:
        raise Invalid(
            f"'{shown}' is a single label; pass a full domain name such as {shown}.example.com."
        )
    return labels


def _check_encoded(ascii_name: str, shown: str) -> None:
    """The encoded name fits in DNS with its challenge record, ends in a possible top-level
    domain, and is not the platform's own."""
    if len(ascii_name) > MAX_HOSTNAME:
        raise Invalid(
            f"'{shown}' is {len(ascii_name)} characters once encoded; at most "
            f"{MAX_HOSTNAME} fit, so that its {CHALLENGE_LABEL} record stays within "
            f"DNS's {MAX_DNS_NAME}."
        )
    if ascii_name.rsplit(".", 1)[-1].isdigit():
        raise Invalid(
            f"'{shown}' ends in a numeric label, which no top-level domain is; pass "
            "a domain name such as www.example.com."
        )
    if any(ascii_name == zone or ascii_name.endswith("." + zone) for zone in RESERVED_ZONES):
        raise Invalid(
            f"'{shown}' is under a domain of the Sp00ky platform itself; add a domain you control."
        )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _label(label: str, shown: str) -> tuple[str, str]:
    """A label's ASCII (punycode) and Unicode forms."""
    if len(label) > MAX_LABEL:
        raise _long_label(label, shown)
    try:
        encoded = label if label.isascii() else idna.ToASCII(label).decode("ascii")
        decoded = idna.ToUnicode(encoded) if encoded.startswith("xn--") else encoded
        if encoded.startswith("xn--") and (
            decoded.isascii() or idna.ToASCII(decoded).decode("ascii") != encoded
        ):
            raise UnicodeError("not a canonical punycode label")
    except UnicodeError:
        if not label.isascii() and len(label) <= MAX_LABEL and _encoded_too_long(label):
            raise _long_label(label, shown) from None
        raise Invalid(
            f"'{shown}' has a label, '{_shown(label)}', that is not a valid "
            "internationalised domain label; check its spelling."
        ) from None
    if len(encoded) > MAX_LABEL:
        raise _long_label(label, shown)
    if not _LABEL.fullmatch(encoded):
        raise Invalid(
            f"'{shown}' has a label, '{_shown(label)}', with characters a hostname "
            "cannot hold; use letters, digits and inner hyphens."
        )
    return encoded, decoded


def _encoded_too_long(label: str) -> bool:
    try:
        return len(idna.nameprep(label).encode("punycode")) + 4 > MAX_LABEL
    except UnicodeError:
        return False


def _long_label(label: str, shown: str) -> Invalid:
    return Invalid(
        f"'{shown}' has a label, '{_shown(label)}', longer than {MAX_LABEL} "
        "characters once encoded; shorten it."
    )


# --- records and views --------------------------------------------------------------------


def target(project: Project) -> str:
    return f"{project.name.lower()}.{project.region}.{PLATFORM_ZONE}"


def dns_records(host: Hostname, project: Project, token: str) -> list[dict[str, str]]:
    routing = (
        {
            "type": "ALIAS",
            "name": host.ascii,
            "value": target(project),
            "purpose": "Routes the apex domain to the project; use your DNS provider's ALIAS, "
            "ANAME or CNAME-flattening record.",
        }
        if host.is_apex
        else {
            "type": "CNAME",
            "name": host.ascii,
            "value": target(project),
            "purpose": "Routes the hostname to the project.",
        }
    )
    challenge = {
        "type": "TXT",
        "name": f"{CHALLENGE_LABEL}.{host.ascii}",
        "value": f"sp00ky-verification={token}",
        "purpose": "Proves you control the domain; keep it while the domain is attached.",
    }
    return [routing, challenge]


def domain_view(domain: Domain, project: Project) -> dict[str, Any]:
    host = Hostname(domain.hostname, _unicode(domain.hostname))
    return {
        "hostname": host.ascii,
        "unicode_hostname": host.unicode,
        "project": project.name,
        "status": domain.status,
        "created_at": iso(domain.created_at),
        "verified_at": iso_or_none(domain.verified_at),
        "dns_records": dns_records(host, project, domain.verification_token),
    }


def _unicode(ascii_name: str) -> str:
    return ".".join(
        idna.ToUnicode(label) if label.startswith("xn--") else label
        for label in ascii_name.split(".")
    )


# --- reads and writes ---------------------------------------------------------------------


async def list_domains(
    cloud: Cloud, tenant: Tenant, project: Project | None
) -> list[dict[str, Any]]:
    """The domains of one project, or of every project in the tenant; by hostname."""
    if project is not None:
        found = await cloud.reads.domains.of_project(project.id)
        return [domain_view(d, project) for d in found]
    return [domain_view(d, p) for d, p in await cloud.reads.domains.of_tenant(tenant.id)]


async def add_domain(
    cloud: Cloud, tenant: Tenant, project: Project, host: Hostname
) -> dict[str, Any]:
    token = secrets.token_hex(16)
    async with cloud.transaction() as tx:
        holder = await tx.domains.holder(host.ascii)
        if holder is not None:
            raise _taken(host, project, tenant, holder)
        added = Domain(new_id("dom"), project.id, host.ascii, "pending", token, cloud.clock(), None)
        await tx.domains.add(added)
        await cloud.log(
            tx,
            project.id,
            None,
            "info",
            f"Domain {host.ascii} added; pending verification of its {CHALLENGE_LABEL} TXT record.",
        )
    return domain_view(added, project)


def _taken(host: Hostname, project: Project, tenant: Tenant, holder: Holder) -> Conflict:
    if holder.project_id == project.id:
        return Conflict(
            f"'{host.ascii}' is already attached to project '{project.name}'; "
            "list_domains shows its DNS records."
        )
    if holder.tenant_id == tenant.id:
        return Conflict(
            f"'{host.ascii}' is already attached to project '{holder.name}'; "
            "remove it there first with remove_domain."
        )
    return Conflict(
        f"'{host.ascii}' is already in use on Sp00ky Cloud by another account; "
        "if you own the domain, ask its current holder to remove it or contact "
        "support."
    )


async def domain(cloud: Cloud, project: Project, host: Hostname, tx: Repos | None = None) -> Domain:
    """The project's domain of that hostname (read through `tx` inside a write)."""
    found = await (tx or cloud.reads).domains.of_project_by_hostname(project.id, host.ascii)
    if found is None:
        raise NotFound(
            f"No domain '{host.ascii}' on project '{project.name}'; list_domains shows its domains."
        )
    return found


async def remove_domain(cloud: Cloud, project: Project, host: Hostname) -> dict[str, Any]:
    async with cloud.transaction() as tx:
        found = await domain(cloud, project, host, tx)
        await tx.domains.remove(found.id)
        await cloud.log(tx, project.id, None, "info", f"Domain {host.ascii} removed.")
    return {"hostname": host.ascii, "project": project.name, "removed": True}
