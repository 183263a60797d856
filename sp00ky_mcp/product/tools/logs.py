"""Tools of the 'logs' area: a bounded, non-streaming read of recent project logs."""

from __future__ import annotations

from typing import Any

from ..cloud import logs
from .base import MEMBERS, PROJECT, SERVICE, Call, Spec, list_of, obj, text

LINE = obj(
    {
        "at": {"type": "string"},
        "service": {"type": ["string", "null"]},
        "level": {"type": "string"},
        "message": {"type": "string"},
    }
)


async def get_logs(call: Call) -> dict[str, Any]:
    args = call.args
    project = await call.project()
    # `mask` runs over every line read: the masks are readied once, before.
    await call.prepare_masks()
    return await logs.read(
        call.cloud,
        project,
        lines=int(args.get("lines", logs.DEFAULT_LINES)),
        service=args.get("service"),
        since=args.get("since"),
        contains=args.get("contains"),
        cursor=args.get("cursor"),
        mask=call.mask,
    )


GET_LOGS = Spec(
    name="get_logs",
    scope="logs:read",
    title="Get recent project logs",
    description=(
        "Fetch a project's most recent log lines (bounded, not streaming): deploys, "
        "restarts, scaling and other events, one line per service. Returns up to lines "
        "lines (default 100, at most 1000), oldest first so the newest is last; filter "
        "by service, by since (an ISO-8601 time or a span such as 15m, 2h or 1d) and by "
        "contains (case-insensitive text). When truncated is true, pass next_cursor as "
        "cursor to read further back. " + MEMBERS
    ),
    arguments={
        "project": PROJECT,
        "service": {**SERVICE, "description": "Only lines of this service."},
        "lines": {
            "type": "integer",
            "minimum": 1,
            "maximum": logs.MAX_LINES,
            "default": logs.DEFAULT_LINES,
            "description": "How many lines to return (default 100, at most 1000).",
        },
        "since": text(
            64,
            "Only lines at or after this time: ISO-8601 (2025-01-31T12:00:00Z) or relative "
            "(30s, 15m, 2h, 1d, 1w).",
        ),
        "contains": text(256, "Only lines whose message contains this text (case-insensitive)."),
        "cursor": text(64, "next_cursor from a previous call, to read older lines."),
    },
    required=("project",),
    output=list_of(LINE),
    handler=get_logs,
    read_only=True,
    idempotent=True,
)


def specs() -> tuple[Spec, ...]:
    return (GET_LOGS,)
