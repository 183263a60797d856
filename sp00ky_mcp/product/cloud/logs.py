"""Logs: bounded, non-streaming reads of a project's log lines.

A read returns at most `lines` lines (default 100, hard cap 1,000), newest last, and a cursor
that reads further back (the lines just before the oldest one returned).  The text filter is
applied to the lines as the caller will see them: for a token that cannot reveal secrets the
tenant's secret values are masked first, so the filter cannot be used to guess a secret.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from .base import CURSOR_RULE, SQLITE_MAX_INTEGER, Cloud, Invalid, ascii_digits, iso
from .deployments import service_row

DEFAULT_LINES = 100
MAX_LINES = 1000
_BATCH = 500
_RELATIVE = re.compile(r"(\d{1,9})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# SQL conditions and their parameters.
Where = tuple[list[str], list[Any]]
SINCE_RULE = (
    "since must be an ISO-8601 timestamp such as 2025-01-31T12:00:00Z or a relative time "
    "such as 30s, 15m, 2h or 1d."
)


def parse_since(since: str, now: float) -> float:
    """An ISO-8601 time (UTC when no offset is given) or a relative span back from now."""
    relative = _RELATIVE.fullmatch(since.strip())
    if relative is not None:
        return now - int(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
    try:
        moment = datetime.fromisoformat(since.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise Invalid(SINCE_RULE) from None


def _before(cursor: str | None) -> int | None:
    """The line id a cursor reads back from.  Any id we hand out is a SQLite integer, so a
    larger number (which SQLite could not even compare with) is no cursor of ours."""
    if cursor is None:
        return None
    if not (cursor.startswith("b") and ascii_digits(cursor[1:])):
        raise Invalid(CURSOR_RULE)
    before = int(cursor[1:])
    if before > SQLITE_MAX_INTEGER:
        raise Invalid(CURSOR_RULE)
    return before


def line_view(row: sqlite3.Row, message: str) -> dict[str, Any]:
    return {
        "at": iso(row["at"]),
        "service": row["service"],
        "level": row["level"],
        "message": message,
    }


def read(
    cloud: Cloud,
    project: sqlite3.Row,
    *,
    lines: int = DEFAULT_LINES,
    service: str | None = None,
    since: str | None = None,
    contains: str | None = None,
    cursor: str | None = None,
    mask: Callable[[str], str] = lambda text: text,
) -> dict[str, Any]:
    """The newest matching lines (oldest of them first), whether older ones match too, and
    the cursor that reads them."""
    lines = max(1, min(int(lines), MAX_LINES))
    before = _before(cursor)
    if service is not None:
        service_row(cloud, project, service)
    where = _filters(cloud, project, service, since)
    needle = None if contains is None else contains.casefold()
    picked: list[tuple[sqlite3.Row, str]] = []
    more = False
    for row in _newest_first(cloud, where, before):
        message = mask(row["message"])
        if needle is not None and needle not in message.casefold():
            continue
        if len(picked) == lines:
            more = True
            break
        picked.append((row, message))
    return _page(picked, more)


def _filters(cloud: Cloud, project: sqlite3.Row, service: str | None, since: str | None) -> Where:
    """The SQL conditions (and their parameters) of the project, service and since filters."""
    clauses = ["project_id = ?"]
    params: list[Any] = [project["id"]]
    if service is not None:
        clauses.append("service = ?")
        params.append(service)
    if since is not None:
        clauses.append("at >= ?")
        params.append(parse_since(since, cloud.clock()))
    return clauses, params


def _newest_first(cloud: Cloud, where: Where, before: int | None) -> Iterator[sqlite3.Row]:
    """The lines matching `where` older than line `before` (all when None), newest first,
    read in batches as far as the caller goes."""
    clauses, params = where
    while True:
        bound = [*clauses, "id < ?"] if before is not None else clauses
        rows = cloud.store.all(
            f"SELECT * FROM log_lines WHERE {' AND '.join(bound)} ORDER BY id DESC LIMIT ?",
            [*params, *([before] if before is not None else []), _BATCH],
        )
        yield from rows
        if len(rows) < _BATCH:
            return
        before = int(rows[-1]["id"])


def _page(picked: list[tuple[sqlite3.Row, str]], more: bool) -> dict[str, Any]:
    """The picked lines (newest first) as a page, oldest first; its cursor reads on from the
    oldest of them."""
    cursor = f"b{picked[-1][0]['id']}" if more and picked else None
    items = [line_view(row, message) for row, message in reversed(picked)]
    return {"items": items, "next_cursor": cursor, "truncated": more}
