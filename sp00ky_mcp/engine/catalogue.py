"""What a server offers: one flat table each of tools, resources and prompts.  Pure.

Tools are data (name, one required scope, schemas, annotations, handler).  The listing for a
set of scopes is computed once and kept as pre-encoded JSON, so `tools/list` is a dictionary
lookup (design: "Tools are data").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .schema import Check, compile_schema

if TYPE_CHECKING:
    from .context import CallContext

ToolHandler = Callable[[dict[str, Any], "CallContext"], Awaitable[Any]]
ResourceReader = Callable[[str, Mapping[str, str], "CallContext"], Awaitable[list[dict[str, Any]]]]
PromptRenderer = Callable[[dict[str, str], "CallContext"], Awaitable[dict[str, Any]]]
Completer = Callable[[str, Mapping[str, str]], list[str]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    handler: ToolHandler
    scope: str | None = None
    title: str | None = None
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    check_arguments: Check = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "check_arguments", compile_schema(self.input_schema))

    @property
    def requires(self) -> bool:
        """Whether empty arguments can fail the input schema (it names required ones)."""
        return bool(self.input_schema.get("required")) or "type" not in self.input_schema

    def descriptor(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"name": self.name}
        if self.title is not None:
            wire["title"] = self.title
        wire["description"] = self.description
        wire["inputSchema"] = self.input_schema
        if self.output_schema is not None:
            wire["outputSchema"] = self.output_schema
        if self.annotations is not None:
            wire["annotations"] = self.annotations
        return wire


@dataclass(frozen=True, slots=True)
class Resource:
    uri: str
    name: str
    reader: ResourceReader
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None

    def descriptor(self) -> dict[str, Any]:
        return _compact(
            uri=self.uri,
            name=self.name,
            title=self.title,
            description=self.description,
            mimeType=self.mime_type,
        )


@dataclass(frozen=True, slots=True)
class ResourceTemplate:
    uri_template: str
    name: str
    reader: ResourceReader
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    completers: Mapping[str, Completer] = field(default_factory=dict)

    def descriptor(self) -> dict[str, Any]:
        return _compact(
            uriTemplate=self.uri_template,
            name=self.name,
            title=self.title,
            description=self.description,
            mimeType=self.mime_type,
        )


@dataclass(frozen=True, slots=True)
class PromptArgument:
    name: str
    description: str | None = None
    required: bool = False
    completer: Completer | None = None

    def descriptor(self) -> dict[str, Any]:
        return _compact(name=self.name, description=self.description, required=self.required)


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str
    renderer: PromptRenderer
    title: str | None = None
    description: str | None = None
    arguments: tuple[PromptArgument, ...] = ()

    def descriptor(self) -> dict[str, Any]:
        wire = _compact(name=self.name, title=self.title, description=self.description)
        if self.arguments:
            wire["arguments"] = [a.descriptor() for a in self.arguments]
        return wire


def _compact(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def grants(tool: Tool, scopes: frozenset[str] | None) -> bool:
    """None means an unauthenticated profile (conformance): every tool is visible."""
    return scopes is None or tool.scope is None or tool.scope in scopes


class Catalogue:
    """The flat tables.  Built once at start; the listings are immutable afterwards."""

    def __init__(
        self,
        tools: Iterable[Tool] = (),
        resources: Iterable[Resource] = (),
        templates: Iterable[ResourceTemplate] = (),
        prompts: Iterable[Prompt] = (),
        list_changed: bool = False,
    ) -> None:
        self.tools: dict[str, Tool] = _unique(tools, lambda t: t.name, "tool")
        self.resources: dict[str, Resource] = _unique(resources, lambda r: r.uri, "resource")
        self.templates = tuple(templates)
        self.prompts: dict[str, Prompt] = _unique(prompts, lambda p: p.name, "prompt")
        # Whether the lists may change while the server runs (capabilities' listChanged).
        self.list_changed = list_changed
        self._tool_lists: dict[frozenset[str] | None, tuple[dict[str, Any], ...]] = {}
        self._tool_bytes: dict[frozenset[str] | None, orjson.Fragment] = {}

    def visible_tools(
        self, scopes: frozenset[str] | None, only: frozenset[str] | None = None
    ) -> tuple[dict[str, Any], ...]:
        if only is not None:
            # Narrowed by the connection: filtered each time, since the sets a client may ask
            # for are too many to keep.
            return tuple(d for d in self.visible_tools(scopes) if d["name"] in only)
        listing = self._tool_lists.get(scopes)
        if listing is None:
            # Registration order: deterministic (2026-07-28 tools: SHOULD be) and chosen by
            # whoever builds the catalogue.
            listing = tuple(t.descriptor() for t in self.tools.values() if grants(t, scopes))
            self._tool_lists[scopes] = listing
        return listing

    def visible_tools_json(
        self, scopes: frozenset[str] | None, only: frozenset[str] | None = None
    ) -> orjson.Fragment:
        """The same listing, encoded once per scope set: tools/list writes these bytes as
        they are."""
        if only is not None:
            return orjson.Fragment(orjson.dumps(self.visible_tools(scopes, only)))
        encoded = self._tool_bytes.get(scopes)
        if encoded is None:
            encoded = orjson.Fragment(orjson.dumps(self.visible_tools(scopes)))
            self._tool_bytes[scopes] = encoded
        return encoded

    @property
    def has_resources(self) -> bool:
        return bool(self.resources or self.templates)


def _unique(items: Iterable[Any], key: Callable[[Any], str], kind: str) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for item in items:
        if key(item) in table:
            raise ValueError(f"duplicate {kind} in the catalogue: {key(item)}")
        table[key(item)] = item
    return table
