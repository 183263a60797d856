"""How a product tool is declared: one `Spec` per tool, turned into a catalogue `Tool` by
`product_tool`, which adds what every product tool shares: tenant resolution, idempotency,
confirmation of destructive actions, and masking of the tenant's secret values in output.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..accounts import arguments_digest
from ..catalogue import Tool
from ..cloud.base import Cloud, Tenant
from ..context import CallContext
from ..errors import ToolError
from ..redaction import MARKER, Secret

Handler = Callable[["Call"], Awaitable[dict[str, Any]]]

PROJECT = {"type": "string", "minLength": 1, "maxLength": 128,
           "description": "The project's name or id."}
TENANT_ID = {"type": "string", "minLength": 1, "maxLength": 64,
             "description": "Act in this team tenant instead of your personal one."}
IDEMPOTENCY_KEY = {"type": "string", "minLength": 1, "maxLength": 128,
                   "description": "Retrying with the same key returns the first result and "
                                  "changes nothing more."}
SERVICE = {"type": "string", "minLength": 1, "maxLength": 63,
           "description": "A service of the project, e.g. web, ssr, api or worker."}
CURSOR = {"type": "string", "minLength": 1, "maxLength": 64,
          "description": "next_cursor from a previous page."}
CONFIRM_SCHEMA = {
    "type": "object",
    "properties": {"confirm": {"type": "boolean", "title": "Confirm",
                               "description": "Yes, go ahead."}},
    "required": ["confirm"],
}


def limit(default: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": maximum, "default": default,
            "description": f"How many items to return (default {default}, at most {maximum})."}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*kinds, "null"]}


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object schema with every listed property required and nothing else allowed."""
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required,
            "additionalProperties": False}


def list_of(item: dict[str, Any]) -> dict[str, Any]:
    """The one shape every list result shares."""
    return obj({"items": {"type": "array", "items": item},
                "next_cursor": {"type": ["string", "null"]},
                "truncated": {"type": "boolean"}})


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    scope: str
    title: str
    description: str
    arguments: dict[str, Any]
    required: tuple[str, ...]
    output: dict[str, Any]
    handler: Handler
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    open_world: bool = False
    tenant_scoped: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mutates(self) -> bool:
        return not self.read_only

    def input_schema(self) -> dict[str, Any]:
        properties = dict(self.arguments)
        if self.tenant_scoped:
            properties["tenant_id"] = TENANT_ID
        if self.mutates:
            properties["idempotency_key"] = IDEMPOTENCY_KEY
        return {"type": "object", "properties": properties, "required": list(self.required),
                "additionalProperties": False}

    def annotations(self) -> dict[str, Any]:
        return {"title": self.title, "readOnlyHint": self.read_only,
                "destructiveHint": self.destructive, "idempotentHint": self.idempotent,
                "openWorldHint": self.open_world}


@dataclass(slots=True)
class Call:
    """What a product handler sees: its arguments, the caller, and the resolved tenant."""

    cloud: Cloud
    args: dict[str, Any]
    ctx: CallContext
    tenant: Tenant

    @property
    def user_id(self) -> str:
        assert self.ctx.principal.user_id is not None
        return self.ctx.principal.user_id

    def project(self) -> sqlite3.Row:
        return self.cloud.project(self.tenant, self.args["project"])

    async def confirm(self, action: str) -> None:
        """Destructive tools ask the human first when the client can ask (elicitation);
        without that capability the client's own approval prompt, driven by
        destructiveHint, is the gate."""
        if not self.ctx.supports("elicitation"):
            return
        answer = await self.ctx.elicit(f"Confirm: {action}. This cannot be undone.",
                                       CONFIRM_SCHEMA)
        content = answer.get("content") if isinstance(answer, dict) else None
        accepted = isinstance(answer, dict) and answer.get("action") == "accept"
        if not (accepted and isinstance(content, dict) and content.get("confirm") is True):
            raise ToolError(f"Not confirmed, so nothing was changed: {action}.")


def product_tool(cloud: Cloud, spec: Spec) -> Tool:
    async def handler(args: dict[str, Any], ctx: CallContext) -> Any:
        principal = ctx.principal
        assert principal.user_id is not None, "product tools need an authenticated principal"
        tenant = cloud.tenant(principal.user_id, args.get("tenant_id"))
        ctx.tenant_id = tenant.id
        call = Call(cloud, args, ctx, tenant)
        try:
            result = await _run(call, spec)
        except ToolError as exc:
            raise ToolError(_mask_text(exc.message, _secrets(call))) from None
        return _mask(result, _secrets(call))

    return Tool(name=spec.name, title=spec.title, description=spec.description,
                input_schema=spec.input_schema(), output_schema=spec.output,
                annotations=spec.annotations(), handler=handler, scope=spec.scope)


async def _run(call: Call, spec: Spec) -> dict[str, Any]:
    key = call.args.get("idempotency_key")
    if key is None or not spec.mutates:
        return await spec.handler(call)
    digest = arguments_digest({k: v for k, v in call.args.items() if k != "idempotency_key"})
    row = call.cloud.store.one(
        "SELECT arguments_digest, result FROM idempotency WHERE user_id = ? AND tool = ? "
        "AND key = ?", (call.user_id, spec.name, key))
    if row is not None:
        if row["arguments_digest"] != digest:
            raise ToolError("This idempotency_key was already used with other arguments; use "
                            "a new key for a different request.")
        thawed: dict[str, Any] = _thaw(orjson.loads(row["result"]))
        return thawed
    result = await spec.handler(call)
    with call.cloud.store.transaction() as db:
        db.execute("INSERT OR IGNORE INTO idempotency VALUES (?, ?, ?, ?, ?, ?)",
                   (call.user_id, spec.name, key, digest,
                    orjson.dumps(result, default=_freeze), call.cloud.clock()))
    return result


def _freeze(value: Any) -> Any:
    if isinstance(value, Secret):
        return {"$secret": value.value}
    raise TypeError(type(value).__name__)


def _thaw(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$secret"}:
            return Secret(value["$secret"])
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_thaw(v) for v in value]
    return value


def _secrets(call: Call) -> list[str]:
    if call.ctx.principal.can_reveal:
        return []
    return call.cloud.secret_values(call.tenant.id)


def _mask_text(text: str, values: list[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, MARKER)
    return text


def _mask(value: Any, values: list[str]) -> Any:
    """Secret values inside other output (log lines, build output, messages) are masked the
    way fields are; `Secret` fields themselves are left to the encoder."""
    if not values:
        return value
    if isinstance(value, str):
        return _mask_text(value, values)
    if isinstance(value, dict):
        return {k: _mask(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, values) for v in value]
    return value
