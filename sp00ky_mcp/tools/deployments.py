"""Tools of the 'deployments' area."""

from __future__ import annotations

from .base import Spec


def specs() -> tuple[Spec, ...]:
    return ()
