"""Which redirect URIs a client may register, and whether one given matches one registered.
Pure.

OAuth 2.1 section 2.3.1 asks for exact matching; the one exception is the port of a loopback
redirect URI, which a native app picks when it starts (RFC 8252 section 7.3).
"""

from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})
# Schemes that would run or read something in the browser rather than reach an app.
FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "about", "blob"})
LONGEST = 2000


def problem(uri: str) -> str | None:
    """Why `uri` cannot be a redirect URI, or None: https anywhere, http on loopback only, or
    an app's own scheme (RFC 8252 section 7.1); never a fragment (RFC 6749 section 3.1.2)."""
    if not uri or len(uri) > LONGEST or not uri.isprintable() or " " in uri:
        return f"'{uri[:100]}' is not a URI."
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - an invalid port raises here
    except ValueError:
        return f"'{uri[:100]}' is not a URI."
    scheme = parts.scheme.lower()
    if parts.fragment or "#" in uri:
        return f"'{uri[:100]}' has a fragment, which a redirect URI may not have."
    if scheme == "https":
        return None if parts.hostname else f"'{uri[:100]}' names no host."
    if scheme == "http":
        if _netloc_host(parts.netloc) in LOOPBACK_HOSTS:
            return None
        return f"'{uri[:100]}' is plain http away from loopback; use https."
    if not scheme or scheme in FORBIDDEN_SCHEMES:
        return f"'{uri[:100]}' has no scheme a client app can receive a redirect on."
    return None


def matches(registered: tuple[str, ...], given: str) -> bool:
    """`given` is one of `registered` exactly, or a loopback one but for its port."""
    if given in registered:
        return True
    loose = _without_port(given)
    return loose is not None and any(_without_port(r) == loose for r in registered)


def _without_port(uri: str) -> tuple[str, str, str, str] | None:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    host = _netloc_host(parts.netloc)
    if parts.scheme != "http" or host not in LOOPBACK_HOSTS:
        return None
    return parts.scheme, host, parts.path, parts.query


def _netloc_host(netloc: str) -> str:
    """The host of `netloc` as written (no user info, no port), brackets kept for IPv6."""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.partition(":")[0].lower()
