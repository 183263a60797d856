"""The product tool catalogue: every area's specs, gathered into one flat table."""

from __future__ import annotations

from ...engine.catalogue import Tool
from ..cloud.base import Cloud
from . import backups, billing, deployments, domains, env, links, logs, projects, teams, vault
from .base import Spec, product_tool

AREAS = (projects, deployments, logs, env, vault, backups, domains, links, teams, billing)


def all_specs() -> tuple[Spec, ...]:
    return tuple(spec for area in AREAS for spec in area.specs())


def product_tools(cloud: Cloud) -> tuple[Tool, ...]:
    return tuple(product_tool(cloud, spec) for spec in all_specs())
