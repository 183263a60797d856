"""URLs shown to people (messages, logs, `--print-config`): without the passwords a database or
Redis URL may carry, in its address (`user:password@`) or its query (`?password=`), both of
which asyncpg and redis-py accept.  Pure."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters whose value is a credential.
SECRET_PARAMETERS = frozenset({"password", "pass", "passwd", "sslpassword", "secret", "token"})
HIDDEN = "***"


def shown_url(url: str, mask: str = "") -> str:
    """`url` with its password left out (or shown as `mask`) and secret query values hidden;
    one that cannot be split shows its scheme alone."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        return f"{scheme}://{HIDDEN}" if scheme.isalnum() else HIDDEN
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, address = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        named = f"{user}:{mask}" if mask else user
        netloc = f"{named}@{address}" if named else address
    return urlunsplit(parts._replace(netloc=netloc, query=_hidden_query(parts.query)))


def _hidden_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(key.lower() in SECRET_PARAMETERS for key, _ in pairs):
        return query
    shown = [(k, HIDDEN if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs]
    return urlencode(shown, safe="*")
