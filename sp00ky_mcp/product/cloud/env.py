"""Environment variables of a project: validation, dotenv parsing, and the writes.

Values are secrets: the store's env repository seals them (the AAD names the project and
key) and opens them; they leave this module wrapped in `Secret`, so the encoder decides how a
caller sees them, and log lines name keys but never values.  Every write is one transaction
together with its log line; a bulk load is all or nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ...engine.redaction import Secret
from ..store.repos import Repos
from ..store.repos.projects import Project
from .base import Cloud, Conflict, Invalid, NotFound, iso

KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_KEY_LENGTH = 256
MAX_VALUE_BYTES = 32 * 1024
MAX_VARS_PER_PROJECT = 500
KEY_RULE = "letters, digits and underscores, not starting with a digit"


# --- validation ---------------------------------------------------------------------------


def _shown(key: str) -> str:
    return key if len(key) <= 40 else key[:40] + "…"


def key_problem(key: str) -> str | None:
    """What is wrong with a key, as the end of a sentence, or None."""
    if len(key) > MAX_KEY_LENGTH:
        return (
            f"key '{_shown(key)}' is {len(key)} characters long, but at most "
            f"{MAX_KEY_LENGTH} are allowed"
        )
    if not KEY_PATTERN.fullmatch(key):
        return f"key '{_shown(key)}' is not valid: use {KEY_RULE}"
    return None


def value_problem(key: str, value: str) -> str | None:
    if "\x00" in value:
        return (
            f"the value of '{_shown(key)}' contains a NUL character, which environment "
            "variables cannot hold"
        )
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_VALUE_BYTES:
        return (
            f"the value of '{_shown(key)}' is {size} bytes, but at most "
            f"{MAX_VALUE_BYTES} bytes (32 KiB) are allowed"
        )
    return None


def variable_problem(key: str, value: str) -> str | None:
    return key_problem(key) or value_problem(key, value)


def check_variable(key: str, value: str) -> None:
    problem = variable_problem(key, value)
    if problem is not None:
        raise Invalid(_sentence(problem) + ".")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- dotenv -------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}


class DotenvError(Invalid):
    """A line of dotenv text that cannot be read; the message names the line."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"Line {line} of the dotenv text: {problem}.")
        self.line = line


def parse_dotenv(text: str) -> dict[str, str]:
    """KEY=VALUE lines in the common dotenv dialect, in order (a later key wins).

    Blank lines and `#` comments are skipped; `export ` before a key is allowed.  A value is
    unquoted (trailing ` # comment` and surrounding spaces dropped), single-quoted (literal), or
    double-quoted (escapes \\n \\r \\t \\" \\\\ \\$; other backslashes are kept).  Quoted values
    may span lines.  Anything else is an error that names its line.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    result: dict[str, str] = {}
    index = 0
    while index < len(lines):
        entry, index = _entry(lines, index)
        if entry is not None:
            key, value = entry
            result.pop(key, None)
            result[key] = value
    return result


def _entry(lines: list[str], index: int) -> tuple[tuple[str, str] | None, int]:
    """The key and value that start on line `index` (None for a blank or comment line), and
    the index of the line after them."""
    number = index + 1
    line = lines[index].strip()
    index += 1
    if not line or line.startswith("#"):
        return None, index
    if line.startswith("export") and line[6:7] in (" ", "\t"):
        line = line[6:].lstrip()
    key, rest = _key(line, number)
    if rest[:1] in ('"', "'"):
        value, index = _quoted(rest, lines, index, number)
    else:
        value = _unquoted(rest)
    problem = value_problem(key, value)
    if problem is not None:
        raise DotenvError(number, problem)
    return (key, value), index


def _key(line: str, number: int) -> tuple[str, str]:
    """The valid key before the '=' of a line, and the text after it."""
    key, equals, rest = line.partition("=")
    key = key.strip()
    if not equals:
        raise DotenvError(number, f"'{_shown(line)}' has no '='; write KEY=VALUE")
    if not key:
        raise DotenvError(number, "the key before '=' is missing; write KEY=VALUE")
    problem = key_problem(key)
    if problem is not None:
        raise DotenvError(number, problem)
    return key, rest.lstrip()


def _unquoted(rest: str) -> str:
    comment = re.search(r"\s#", rest)
    if comment is not None:
        rest = rest[: comment.start()]
    return rest.strip()


def _quoted(rest: str, lines: list[str], index: int, number: int) -> tuple[str, int]:
    """The quoted value starting at `rest` (which may continue on the following lines), and
    the index of the first line after it."""
    quote = rest[0]
    text = rest[1:]
    chars: list[str] = []
    while True:
        position = 0
        while position < len(text):
            char = text[position]
            if quote == '"' and char == "\\" and position + 1 < len(text):
                following = text[position + 1]
                chars.append(_ESCAPES.get(following, "\\" + following))
                position += 2
                continue
            if char == quote:
                _check_tail(text[position + 1 :], number)
                return "".join(chars), index
            chars.append(char)
            position += 1
        if index >= len(lines):
            kind = "double" if quote == '"' else "single"
            raise DotenvError(
                number, f"the {kind}-quoted value is never closed; add the closing {quote}"
            )
        chars.append("\n")
        text = lines[index]
        index += 1


def _check_tail(tail: str, number: int) -> None:
    stripped = tail.strip()
    if stripped and not stripped.startswith("#"):
        raise DotenvError(
            number,
            f"unexpected text '{_shown(stripped)}' after the closing quote; quote the whole value",
        )


# --- reads --------------------------------------------------------------------------------


async def list_variables(cloud: Cloud, project_id: str) -> list[dict[str, Any]]:
    return [
        {"key": v.key, "value": Secret(v.value), "updated_at": iso(v.updated_at)}
        for v in await cloud.reads.env.variables(project_id)
    ]


# --- writes -------------------------------------------------------------------------------


async def set_variable(cloud: Cloud, project: Project, key: str, value: str) -> dict[str, Any]:
    """Creates or replaces one variable; the others stay as they are."""
    check_variable(key, value)
    now = cloud.clock()
    async with cloud.transaction() as tx:
        created = not await tx.env.exists(project.id, key)
        if created:
            await _check_capacity(tx, project, 1)
        await tx.env.put(project.id, key, value, now)
        verb = "created" if created else "updated"
        await cloud.log(tx, project.id, None, "info", f"Environment variable {key} {verb}.")
    return {
        "project": project.name,
        "key": key,
        "value": Secret(value),
        "updated_at": iso(now),
        "created": created,
    }


async def delete_variable(cloud: Cloud, project: Project, key: str) -> dict[str, Any]:
    async with cloud.transaction() as tx:
        await require_variable(cloud, project, key, tx)
        await tx.env.delete(project.id, key)
        await cloud.log(tx, project.id, None, "info", f"Environment variable {key} deleted.")
    return {"project": project.name, "key": key, "deleted": True}


async def require_variable(
    cloud: Cloud, project: Project, key: str, tx: Repos | None = None
) -> None:
    """NotFound unless the project has the variable (read through `tx` inside a write)."""
    if not await (tx or cloud.reads).env.exists(project.id, key):
        raise NotFound(
            f"No environment variable '{_shown(key)}' on project '{project.name}'; "
            "list_env_vars shows its keys."
        )


@dataclass
class BulkOutcome:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def check_map(values: dict[str, str]) -> None:
    for key, value in values.items():
        problem = variable_problem(key, value)
        if problem is not None:
            raise Invalid(f"In values, {problem}.")


async def bulk_load(
    cloud: Cloud, project: Project, values: dict[str, str], replace: bool
) -> dict[str, Any]:
    """Merges `values` into the project's variables, or with `replace` makes them exactly
    `values`; in one transaction, so a failure changes nothing."""
    now = cloud.clock()
    async with cloud.transaction() as tx:
        outcome = _compare(await tx.env.values(project.id), values, replace)
        await tx.env.delete_many(project.id, outcome.deleted)
        await _check_capacity(tx, project, len(outcome.created))
        changed = (*outcome.created, *outcome.updated)
        await tx.env.put_many(project.id, [(key, values[key]) for key in changed], now)
        await cloud.log(tx, project.id, None, "info", _bulk_message(outcome, replace))
        total = await tx.env.count(project.id)
    return {
        "project": project.name,
        "replaced": replace,
        "created": sorted(outcome.created),
        "updated": sorted(outcome.updated),
        "unchanged": sorted(outcome.unchanged),
        "deleted": outcome.deleted,
        "total": total,
    }


def _compare(current: dict[str, str], values: dict[str, str], replace: bool) -> BulkOutcome:
    """Which of `values` are new, changed or the same, and (with `replace`) which current keys
    go."""
    outcome = BulkOutcome()
    for key, value in values.items():
        if key not in current:
            outcome.created.append(key)
        elif current[key] != value:
            outcome.updated.append(key)
        else:
            outcome.unchanged.append(key)
    if replace:
        outcome.deleted = sorted(set(current) - set(values))
    return outcome


def _bulk_message(outcome: BulkOutcome, replace: bool) -> str:
    parts = [
        f"{len(keys)} {verb}{_keys(keys)}"
        for verb, keys in (
            ("created", outcome.created),
            ("updated", outcome.updated),
            ("deleted", outcome.deleted),
        )
        if keys
    ]
    how = "replaced" if replace else "bulk-loaded"
    return f"Environment variables {how}: {', '.join(parts) or 'no changes'}."


def _keys(keys: Iterable[str]) -> str:
    return f" ({', '.join(sorted(keys))})"


async def _check_capacity(tx: Repos, project: Project, adding: int) -> None:
    count = await tx.env.count(project.id)
    if count + adding > MAX_VARS_PER_PROJECT:
        raise Conflict(
            f"Project '{project.name}' would have {count + adding} environment "
            f"variables, but at most {MAX_VARS_PER_PROJECT} are allowed; delete "
            "some first."
        )
