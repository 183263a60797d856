"""Secrets are a type, not a list of field names.  Pure.

A value that is secret is wrapped in `Secret` where it leaves the store; the JSON encoder is the
only place that turns it back into text, and it does so as `***REDACTED` unless the caller may
reveal.  Code that forgets about secrets therefore leaks nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

MARKER = "***REDACTED"
# The longest start of a value that the search pattern is built from: long enough that few
# places in ordinary text look like the start of a secret, short enough that the pattern's
# size follows the number of values and not their length.
KEY_LENGTH = 32


class Secret:
    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret(***)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("Secret", self.value))


def _reveal(obj: Any) -> Any:
    if isinstance(obj, Secret):
        return obj.value
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _mask(obj: Any) -> Any:
    if isinstance(obj, Secret):
        return MARKER
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encoder_default(can_reveal: bool) -> Callable[[Any], Any]:
    """The `default=` hook for orjson: how this caller sees `Secret` values."""
    return _reveal if can_reveal else _mask


class SecretMatcher:
    """Finds secret values in text in one pass over it.  A small pattern finds the places
    where a value may start (its first characters, the same number for every value); only
    there are the values that start that way compared, longest first, so a value that
    contains another is masked whole, and the leftmost value is masked first.

    Building costs time in the number of values (not in their length), so a tenant's large
    values cost no more to build than short ones; the match itself is a C-level scan."""

    __slots__ = ("_groups", "_search")

    def __init__(self, values: Iterable[str]) -> None:
        ordered = sorted({v for v in values if v}, key=len, reverse=True)
        width = min(KEY_LENGTH, min((len(v) for v in ordered), default=0))
        groups: dict[str, list[str]] = {}
        for value in ordered:
            groups.setdefault(value[:width], []).append(value)
        self._groups = {key: tuple(group) for key, group in groups.items()}
        self._search = re.compile(_trie_pattern(groups)).search if groups else None

    def sub(self, text: str, marker: str) -> str:
        """`text` with every value in it replaced by `marker`."""
        parts: list[str] = []
        done = 0
        for start, end in self._matches(text):
            parts += (text[done:start], marker)
            done = end
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        """Where the values occur in `text`, leftmost first, longest at each place."""
        return self._matches(text)

    def found(self, text: str) -> bool:
        """Whether any value occurs in `text`."""
        return next(self._matches(text), None) is not None

    def _matches(self, text: str) -> Iterator[tuple[int, int]]:
        if self._search is None:
            return
        pos = 0
        while (found := self._search(text, pos)) is not None:
            start = found.start()
            value = self._value_at(text, start, found.group())
            if value is None:
                pos = start + 1
                continue
            pos = start + len(value)
            yield start, pos

    def _value_at(self, text: str, start: int, key: str) -> str | None:
        return next((v for v in self._groups[key] if text.startswith(v, start)), None)


def _trie_pattern(keys: Iterable[str]) -> str:
    """An alternation of `keys` (all of one length) with shared starts factored out, so that
    the regular-expression engine tries at most one branch per character at each depth."""
    trie: dict[str, Any] = {}
    for key in keys:
        node = trie
        for char in key:
            node = node.setdefault(char, {})
    return _branches(trie)


def _branches(node: dict[str, Any]) -> str:
    branches = [re.escape(char) + _branches(child) for char, child in node.items()]
    if len(branches) <= 1:
        return "".join(branches)
    return "(?:" + "|".join(branches) + ")"
