"""Secrets are a type, not a list of field names.  Pure.

A value that is secret is wrapped in `Secret` where it leaves the store; the JSON encoder is the
only place that turns it back into text, and it does so as `***REDACTED` unless the caller may
reveal.  Code that forgets about secrets therefore leaks nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MARKER = "***REDACTED"


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
