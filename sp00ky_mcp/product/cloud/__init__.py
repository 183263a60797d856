"""The Sp00ky control plane.  Importing the package registers every area's tables, so any
process that opens a store through it gets the whole schema."""

from . import (  # noqa: F401
    backups,
    billing,
    deployments,
    domains,
    env,
    links,
    logs,
    projects,
    schema,
    teams,
    vault,
)
