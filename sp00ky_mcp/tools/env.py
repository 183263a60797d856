"""Tools of the 'env' area."""

from __future__ import annotations

from .base import Spec


def specs() -> tuple[Spec, ...]:
    return ()
