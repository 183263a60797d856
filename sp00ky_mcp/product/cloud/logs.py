"""Logs: bounded, non-streaming reads of a project's log lines.

A read returns at most `lines` lines (default 100, hard cap 1,000), newest last, and a cursor
that reads further back (the lines just before the oldest one returned).  The text filter is
applied to the lines as the caller will see them: for a token that cannot reveal secrets the
tenant's secret values are masked first, so the filter cannot be used to guess a secret.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..store.repos.logs import LogLine
from ..store.repos.projects import Project
from .base import CURSOR_RULE, SQLITE_MAX_INTEGER, Cloud, Invalid, ascii_digits, iso
from .deployments import service_row

DEFAULT_LINES = 100
MAX_LINES = 1000
_BATCH = 500
_RELATIVE = re.compile(r"(\d{1,9})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
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


@dataclass(frozen=True, slots=True)
class Filters:
    """Which of a project's lines a read looks at: of a service, and at or after a time."""

    project_id: str
    service: str | None
    since: float | None


def line_view(line: LogLine, message: str) -> dict[str, Any]:
    return {
        "at": iso(line.at),
        "service": line.service,
        "level": line.level,
        "message": message,
    }


async def read(
    cloud: Cloud,
    project: Project,
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
        await service_row(cloud, project, service)
    filters = Filters(
        project.id, service, None if since is None else parse_since(since, cloud.clock())
    )
    needle = None if contains is None else contains.casefold()
    picked: list[tuple[LogLine, str]] = []
    more = False
    # Closed on leaving the block: the read usually stops before the lines run out.
    async with aclosing(_newest_first(cloud, filters, before)) as found:
        async for line in found:
            message = mask(line.message)
            if needle is not None and needle not in message.casefold():
                continue
            if len(picked) == lines:
                more = True
                break
            picked.append((line, message))
    return _page(picked, more)


async def _newest_first(
    cloud: Cloud, filters: Filters, before: int | None
) -> AsyncGenerator[LogLine, None]:
    """The lines matching `filters` older than line `before` (all when None), newest first,
    read in batches as far as the caller goes."""
    while True:
        batch = await cloud.reads.logs.newest_first(
            filters.project_id,
            service=filters.service,
            since=filters.since,
            before=before,
            limit=_BATCH,
        )
        for line in batch:
            yield line
        if len(batch) < _BATCH:
            return
        before = batch[-1].id


def _page(picked: list[tuple[LogLine, str]], more: bool) -> dict[str, Any]:
    """The picked lines (newest first) as a page, oldest first; its cursor reads on from the
    oldest of them."""
    cursor = f"b{picked[-1][0].id}" if more and picked else None
    items = [line_view(line, message) for line, message in reversed(picked)]
    return {"items": items, "next_cursor": cursor, "truncated": more}
