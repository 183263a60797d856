"""Which redirect URIs a client may register, and whether one given matches one registered.
Pure.

OAuth 2.1 section 2.3.1 asks for exact matching; the one exception is the port of a loopback
redirect URI, which a native app picks when it starts (RFC 8252 section 7.3).

Browsers parse URLs more loosely than `urllib` does (the WHATWG URL standard turns `\\` into
`/` for http and https, and drops tabs and newlines), so a URI that the two could read as
different hosts is refused outright rather than compared: only printable ASCII without `\\`,
no user information and no percent-escapes in the authority, which must be a host (a name, or
an IPv6 address in brackets) and at most a port.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})
# Schemes that would run or read something in the browser rather than reach an app.
FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "about", "blob"})
LONGEST = 2000
# RFC 3986 section 3.2: host [":" port], the host a DNS-style name, an IPv4 address or an
# IPv6 address in brackets; nothing else (a browser would read `[::1]evil.example` its own way).
_AUTHORITY = re.compile(r"(?:[A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?")


def problem(uri: str) -> str | None:
    """Why `uri` cannot be a redirect URI, or None: https anywhere, http on loopback only, or
    an app's own scheme (RFC 8252 section 7.1); never a fragment (RFC 6749 section 3.1.2)."""
    shown = uri[:100].encode("ascii", "backslashreplace").decode("ascii")
    parts = _parsed(uri)
    if parts is None:
        return f"'{shown}' is not a URI a browser and this server read alike."
    if parts.fragment or "#" in uri:
        return f"'{shown}' has a fragment, which a redirect URI may not have."
    return _scheme_problem(shown, parts)


def _parsed(uri: str) -> SplitResult | None:
    """`uri` split, or None when it is too long, is not plain printable ASCII, or has an
    authority a browser might read differently (RFC 3986 section 3.2)."""
    if not uri or len(uri) > LONGEST or not _plain(uri) or "\\" in uri:
        return None
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - an invalid port raises here
    except ValueError:
        return None
    if _AUTHORITY.fullmatch(parts.netloc) is None:
        return None
    return parts


def _plain(uri: str) -> bool:
    return uri.isascii() and uri.isprintable() and " " not in uri


def _scheme_problem(shown: str, parts: SplitResult) -> str | None:
    scheme = parts.scheme.lower()
    if scheme == "https":
        return None if parts.hostname else f"'{shown}' names no host."
    if scheme == "http":
        if _host(parts) in LOOPBACK_HOSTS:
            return None
        return f"'{shown}' is plain http away from loopback; use https."
    if not scheme or scheme in FORBIDDEN_SCHEMES:
        return f"'{shown}' has no scheme a client app can receive a redirect on."
    return None


def matches(registered: tuple[str, ...], given: str) -> bool:
    """`given` is a redirect URI this server allows at all and is one of `registered`
    exactly, or a loopback one but for its port."""
    if problem(given) is not None:
        return False
    if given in registered:
        return True
    loose = _without_port(given)
    return loose is not None and any(_without_port(r) == loose for r in registered)


def _without_port(uri: str) -> tuple[str, str, str, str] | None:
    parts = _parsed(uri)
    if parts is None or parts.scheme != "http" or _host(parts) not in LOOPBACK_HOSTS:
        return None
    return parts.scheme, _host(parts), parts.path, parts.query


def _host(parts: SplitResult) -> str:
    """The host as written (no port), brackets kept for IPv6; the authority holds no user
    information by the time this is asked."""
    netloc = parts.netloc
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1]
    return netloc.partition(":")[0].lower()


def destination(redirect_uri: str) -> str:
    """Where a redirect URI goes, as a user should read it: the host of a web address, but an
    app's own scheme in full (`x-app://claude.ai` is an app on this device that chose to
    name itself so, not claude.ai)."""
    parts = urlsplit(redirect_uri)
    if parts.scheme in ("https", "http"):
        return parts.netloc
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"
