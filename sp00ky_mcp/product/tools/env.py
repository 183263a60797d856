"""Tools of the 'env' area: a project's environment variables.  Values are secrets: every
result carries them as `Secret`, shown as ***REDACTED to tokens without secrets:reveal."""

from __future__ import annotations

from typing import Any

from ..cloud import env
from ..cloud.base import Invalid
from .base import CURSOR, PROJECT, TIME, Call, Spec, limit, list_of, obj, text

KEY = text(env.MAX_KEY_LENGTH, f"The variable's name: {env.KEY_RULE} (e.g. DATABASE_URL).")
VALUE = {
    "type": "string",
    "maxLength": env.MAX_VALUE_BYTES,
    "description": "The value: at most 32 KiB, no NUL characters. It is a secret, shown as "
    "***REDACTED unless the token has secrets:reveal.",
}
SECRET = {
    "type": "string",
    "description": "The value, or ***REDACTED unless the token has secrets:reveal.",
}
VARIABLE = obj({"key": {"type": "string"}, "value": SECRET, "updated_at": TIME})
KEYS = {"type": "array", "items": {"type": "string"}}
ROLES = "Any member of the tenant may change its projects' variables."


async def list_env_vars(call: Call) -> dict[str, Any]:
    project = await call.project()
    return call.page(await env.list_variables(call.cloud, project.id), 100)


LIST_ENV_VARS = Spec(
    name="list_env_vars",
    scope="env:read",
    title="List environment variables",
    description="Use this to see which environment variables a project has (keys, "
    "values and when each was last changed), sorted by key. Values are "
    "secrets and show as ***REDACTED unless the token has secrets:reveal.",
    arguments={"project": PROJECT, "cursor": CURSOR, "limit": limit(100, 500)},
    required=("project",),
    output=list_of(VARIABLE),
    handler=list_env_vars,
    read_only=True,
    pure=True,
    idempotent=True,
)


async def set_env_var(call: Call) -> dict[str, Any]:
    project = await call.project()
    return await env.set_variable(call.cloud, project, call.args["key"], call.args["value"])


SET_ENV_VAR = Spec(
    name="set_env_var",
    scope="env:write",
    title="Set an environment variable",
    description="Use this to create one environment variable or change its value; the "
    "project's other variables stay as they are. It takes effect on the "
    f"next deploy or restart. {ROLES} The log records the key, never the "
    "value.",
    arguments={"project": PROJECT, "key": KEY, "value": VALUE},
    required=("project", "key", "value"),
    output=obj(
        {
            "project": {"type": "string"},
            "key": {"type": "string"},
            "value": {
                **SECRET,
                "description": SECRET["description"] + " On a retry with the same "
                "idempotency_key, a note that it was shown once, in the first call's result.",
            },
            "updated_at": TIME,
            "created": {
                "type": "boolean",
                "description": "False when an existing value was replaced.",
            },
        }
    ),
    handler=set_env_var,
    idempotent=True,
)


async def delete_env_var(call: Call) -> dict[str, Any]:
    project = await call.project()
    key = call.args["key"]
    await env.require_variable(call.cloud, project, key)
    await call.confirm(f"delete environment variable '{key}' from project '{project.name}'")
    return await env.delete_variable(call.cloud, project, key)


DELETE_ENV_VAR = Spec(
    name="delete_env_var",
    scope="env:write",
    title="Delete an environment variable",
    description="Use this to remove one environment variable from a project for good "
    "(asks the user to confirm when the client supports it). It takes "
    f"effect on the next deploy or restart. {ROLES}",
    arguments={"project": PROJECT, "key": KEY},
    required=("project", "key"),
    output=obj(
        {
            "project": {"type": "string"},
            "key": {"type": "string"},
            "deleted": {"type": "boolean"},
        }
    ),
    handler=delete_env_var,
    destructive=True,
    idempotent=True,
)


async def bulk_load_env_vars(call: Call) -> dict[str, Any]:
    project = await call.project()
    dotenv = call.args.get("dotenv")
    values = call.args.get("values")
    if dotenv is not None and values is not None:
        raise Invalid("Pass the variables either as dotenv text or as a values map, not both.")
    if dotenv is None and values is None:
        raise Invalid(
            "Pass the variables as dotenv text (dotenv) or as a map (values); neither was given."
        )
    if values is None:
        parsed = env.parse_dotenv(call.args["dotenv"])
    else:
        env.check_map(values)
        parsed = dict(values)
    return await env.bulk_load(call.cloud, project, parsed, bool(call.args.get("replace", False)))


BULK_LOAD_ENV_VARS = Spec(
    name="bulk_load_env_vars",
    scope="env:write",
    title="Bulk-load environment variables",
    description="Use this to set many environment variables at once, from the text of "
    "a .env file (`dotenv`: KEY=VALUE lines, # comments, optional `export`, "
    "single or double quotes) or from a `values` map. Merges by default; "
    "with replace: true the project ends up with exactly these variables "
    "and all others are deleted. All or nothing: on any error nothing "
    f"changes, and a bad dotenv line is reported by number. {ROLES}",
    arguments={
        "project": PROJECT,
        "dotenv": {
            "type": "string",
            "maxLength": 1_048_576,
            "description": "The text of a .env file.",
        },
        "values": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Variables as an object of key to value.",
        },
        "replace": {
            "type": "boolean",
            "default": False,
            "description": "Delete every variable not given here.",
        },
    },
    required=("project",),
    output=obj(
        {
            "project": {"type": "string"},
            "replaced": {"type": "boolean"},
            "created": KEYS,
            "updated": KEYS,
            "unchanged": KEYS,
            "deleted": KEYS,
            "total": {
                "type": "integer",
                "description": "How many variables the project has now.",
            },
        }
    ),
    handler=bulk_load_env_vars,
    idempotent=True,
)


def specs() -> tuple[Spec, ...]:
    return (
        LIST_ENV_VARS,
        SET_ENV_VAR,
        DELETE_ENV_VAR,
        BULK_LOAD_ENV_VARS,
    )
