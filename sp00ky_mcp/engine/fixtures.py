"""The conformance profile: the fixture tools, resources and prompts that the official
`@modelcontextprotocol/conformance` suite exercises, by the names and behaviour its scenarios
check.  They are registered through the same catalogue as every product tool; the engine knows
nothing of them.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from .catalogue import Catalogue, Prompt, PromptArgument, Resource, ResourceTemplate, Tool
from .context import CallContext, InputRequired
from .errors import MISSING_CAPABILITY, JsonRpcError, ToolError
from .protocol import ToolResult, text

PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAF"
    "BQIAX8jx0gAAAABJRU5ErkJggg=="
)
WAV_SILENCE = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
CONFIRM_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


def image() -> dict[str, Any]:
    return {"type": "image", "data": PNG_1X1, "mimeType": "image/png"}


def embedded(uri: str, mime_type: str, body: str) -> dict[str, Any]:
    return {"type": "resource", "resource": {"uri": uri, "mimeType": mime_type, "text": body}}


def string_args(**properties: str) -> dict[str, Any]:
    props = {name: {"type": "string", "description": doc} for name, doc in properties.items()}
    return {"type": "object", "properties": props, "required": list(properties)}


def elicit_request(message: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "elicitation/create",
        "params": {"mode": "form", "message": message, "requestedSchema": schema},
    }


def sampling_request(prompt: str, max_tokens: int) -> dict[str, Any]:
    message = {"role": "user", "content": {"type": "text", "text": prompt}}
    return {
        "method": "sampling/createMessage",
        "params": {"messages": [message], "maxTokens": max_tokens},
    }


ROOTS_REQUEST: dict[str, Any] = {"method": "roots/list", "params": {}}


def answer_content(answer: Any) -> dict[str, Any]:
    content = answer.get("content") if isinstance(answer, dict) else None
    return content if isinstance(content, dict) else {}


# --- content tools -----------------------------------------------------------------------


async def simple_text(args: dict[str, Any], ctx: CallContext) -> Any:
    return "This is a simple text response for testing."


async def image_content(args: dict[str, Any], ctx: CallContext) -> Any:
    return ToolResult([image()])


async def audio_content(args: dict[str, Any], ctx: CallContext) -> Any:
    return ToolResult([{"type": "audio", "data": WAV_SILENCE, "mimeType": "audio/wav"}])


async def embedded_resource(args: dict[str, Any], ctx: CallContext) -> Any:
    body = "This is an embedded resource content."
    return ToolResult([embedded("test://embedded-resource", "text/plain", body)])


async def multiple_content(args: dict[str, Any], ctx: CallContext) -> Any:
    body = '{"test": "data", "value": 123}'
    return ToolResult(
        [
            text("Multiple content types test:"),
            image(),
            embedded("test://mixed-content-resource", "application/json", body),
        ]
    )


async def error_handling(args: dict[str, Any], ctx: CallContext) -> Any:
    raise ToolError("This tool intentionally returns an error for testing")


# --- notifications and server-to-client requests -----------------------------------------


async def with_logging(args: dict[str, Any], ctx: CallContext) -> Any:
    for step in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.log("info", step)
    return "Tool with logging executed successfully"


async def with_progress(args: dict[str, Any], ctx: CallContext) -> Any:
    for done in (0, 50, 100):
        await ctx.progress(done, 100, f"Completed step {done} of 100")
    return str(ctx.progress_token if ctx.progress_token is not None else 0)


async def sampling(args: dict[str, Any], ctx: CallContext) -> Any:
    request = sampling_request(args["prompt"], 100)
    result = await ctx.sample(request["params"])
    content = result.get("content") if isinstance(result, dict) else None
    reply = content.get("text") if isinstance(content, dict) else None
    return f"LLM response: {reply if isinstance(reply, str) else 'No response'}"


USER_RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {"response": {"type": "string", "description": "User's response"}},
    "required": ["response"],
}

DEFAULTS_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
}

ENUMS_SCHEMA = {
    "type": "object",
    "properties": {
        "untitledSingle": {
            "type": "string",
            "description": "Simple enum without titles",
            "enum": ["active", "inactive", "pending"],
        },
        "titledSingle": {
            "type": "string",
            "description": "Enum with titled options (oneOf)",
            "oneOf": [
                {"const": "low", "title": "Low Priority"},
                {"const": "medium", "title": "Medium Priority"},
                {"const": "high", "title": "High Priority"},
            ],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Multi-select without titles",
            "items": {"type": "string", "enum": ["read", "write", "execute"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Multi-select with titled options",
            "items": {
                "anyOf": [
                    {"const": "feature", "title": "New Feature"},
                    {"const": "bug", "title": "Bug Fix"},
                    {"const": "docs", "title": "Documentation"},
                ]
            },
        },
        "legacyEnum": {
            "type": "string",
            "description": "Legacy enum with enumNames",
            "enum": ["small", "medium", "large"],
            "enumNames": ["Small Size", "Medium Size", "Large Size"],
        },
    },
    "required": ["untitledSingle", "titledSingle", "untitledMulti", "titledMulti", "legacyEnum"],
}


def describe_elicitation(result: Any) -> tuple[str, str]:
    action = result.get("action", "cancel") if isinstance(result, dict) else "cancel"
    content = answer_content(result) if action == "accept" else {}
    return str(action), orjson.dumps(content).decode()


async def elicitation(args: dict[str, Any], ctx: CallContext) -> Any:
    action, content = describe_elicitation(await ctx.elicit(args["message"], USER_RESPONSE_SCHEMA))
    return f"User response: action={action}, content={content}"


async def elicitation_defaults(args: dict[str, Any], ctx: CallContext) -> Any:
    result = await ctx.elicit("Please provide user information", DEFAULTS_SCHEMA)
    action, content = describe_elicitation(result)
    return f"Elicitation result: action={action}, content={content}"


async def elicitation_enums(args: dict[str, Any], ctx: CallContext) -> Any:
    message = "Please select values using different enum schema types"
    action, content = describe_elicitation(await ctx.elicit(message, ENUMS_SCHEMA))
    return f"Elicitation completed: action={action}, content={content}"


async def reconnection(args: dict[str, Any], ctx: CallContext) -> Any:
    """SSE polling (2025-11-25, SEP-1699): the server ends the HTTP response mid-call and the
    client resumes the stream with Last-Event-ID."""
    await ctx.log("info", "Before disconnect")
    ctx.peer.interrupt()
    await ctx.log("info", "After reconnect")
    return "Reconnection test completed"


async def missing_capability(args: dict[str, Any], ctx: CallContext) -> Any:
    if not ctx.supports("sampling"):
        raise JsonRpcError(
            MISSING_CAPABILITY,
            "This tool requires the client 'sampling' capability",
            {"requiredCapabilities": {"sampling": {}}},
        )
    return "Client declared sampling capability; proceeding."


async def streaming_elicitation(args: dict[str, Any], ctx: CallContext) -> Any:
    """Asks the user through whatever the era provides: an elicitation/create request on the
    reply stream (handshake era) or an input_required result (stateless era)."""
    await ctx.progress(0, 1, "Asking the user")
    action, content = describe_elicitation(await ctx.elicit("Please confirm", CONFIRM_SCHEMA))
    return f"Elicitation completed: action={action}, content={content}"


async def logging_tool(args: dict[str, Any], ctx: CallContext) -> Any:
    await ctx.log("info", "Logging tool ran")
    return "Logging tool completed"


async def x_mcp_header(args: dict[str, Any], ctx: CallContext) -> Any:
    return f"region={args.get('region', '<none>')}"


async def trigger_tool_change(args: dict[str, Any], ctx: CallContext) -> Any:
    ctx.announce("notifications/tools/list_changed", {})
    return "tool list changed"


async def trigger_prompt_change(args: dict[str, Any], ctx: CallContext) -> Any:
    ctx.announce("notifications/prompts/list_changed", {})
    return "prompt list changed"


async def json_schema_tool(args: dict[str, Any], ctx: CallContext) -> Any:
    return "json_schema_2020_12_tool"


JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

# --- multi-round-trip (input_required) fixtures ------------------------------------------


async def mrtr_elicitation(args: dict[str, Any], ctx: CallContext) -> Any:
    if "user_name" in ctx.input_responses:
        name = answer_content(ctx.input_responses["user_name"]).get("name", "stranger")
        return f"Hello, {name}!"
    return InputRequired({"user_name": elicit_request("What is your name?", NAME_SCHEMA)})


async def mrtr_sampling(args: dict[str, Any], ctx: CallContext) -> Any:
    answer = ctx.input_responses.get("capital_question")
    if answer is not None:
        content = answer.get("content") if isinstance(answer, dict) else None
        said = content.get("text", "?") if isinstance(content, dict) else "?"
        return f"Model said: {said}"
    request = sampling_request("What is the capital of France?", 100)
    return InputRequired({"capital_question": request})


async def mrtr_roots(args: dict[str, Any], ctx: CallContext) -> Any:
    answer = ctx.input_responses.get("client_roots")
    if answer is not None:
        roots = answer.get("roots") if isinstance(answer, dict) else None
        return f"Client exposed {len(roots) if isinstance(roots, list) else 0} root(s)."
    return InputRequired({"client_roots": ROOTS_REQUEST})


async def mrtr_request_state(args: dict[str, Any], ctx: CallContext) -> Any:
    if "confirm" in ctx.input_responses and ctx.request_state == "request-state-nonce":
        return "state-ok: confirmation received"
    confirm = elicit_request("Please confirm", CONFIRM_SCHEMA)
    return InputRequired({"confirm": confirm}, state="request-state-nonce")


async def mrtr_multiple(args: dict[str, Any], ctx: CallContext) -> Any:
    if {"user_name", "greeting", "client_roots"} <= ctx.input_responses.keys():
        return "All inputs received."
    return InputRequired(
        {
            "user_name": elicit_request("What is your name?", NAME_SCHEMA),
            "greeting": sampling_request("Generate a greeting", 50),
            "client_roots": ROOTS_REQUEST,
        },
        state="multiple-inputs",
    )


COLOR_SCHEMA = {
    "type": "object",
    "properties": {"color": {"type": "string"}},
    "required": ["color"],
}


async def mrtr_multi_round(args: dict[str, Any], ctx: CallContext) -> Any:
    state = orjson.loads(ctx.request_state) if ctx.request_state else {"round": 0}
    responses = ctx.input_responses
    if state.get("round") == 1 and "step1" in responses:
        name = answer_content(responses["step1"]).get("name")
        step2 = elicit_request("Step 2: What is your favorite color?", COLOR_SCHEMA)
        return InputRequired({"step2": step2}, orjson.dumps({"round": 2, "name": name}).decode())
    if state.get("round") == 2 and "step2" in responses:
        color = answer_content(responses["step2"]).get("color")
        return f"{state.get('name')} likes {color}."
    step1 = elicit_request("Step 1: What is your name?", NAME_SCHEMA)
    return InputRequired({"step1": step1}, orjson.dumps({"round": 1}).decode())


async def mrtr_tampered(args: dict[str, Any], ctx: CallContext) -> Any:
    if ctx.request_state is None:
        return InputRequired(
            {"confirm": elicit_request("Please confirm", CONFIRM_SCHEMA)}, state="round-1"
        )
    return f"state-ok: {ctx.request_state}"


async def mrtr_capabilities(args: dict[str, Any], ctx: CallContext) -> Any:
    requests: dict[str, dict[str, Any]] = {}
    if ctx.supports("sampling"):
        requests["sample"] = sampling_request("Say hello", 50)
    if ctx.supports("elicitation"):
        requests["ask"] = elicit_request("What is your name?", NAME_SCHEMA)
    if not requests:
        return "The client declared neither sampling nor elicitation."
    return InputRequired(requests, state="capability-gated")


def tool(name: str, description: str, handler: Any, schema: dict[str, Any] | None = None) -> Tool:
    return Tool(name=name, description=description, input_schema=schema or NO_ARGS, handler=handler)


TOOLS = (
    tool("test_simple_text", "Tests simple text content response", simple_text),
    tool("test_image_content", "Tests image content response", image_content),
    tool("test_audio_content", "Tests audio content response", audio_content),
    tool("test_embedded_resource", "Tests embedded resource content response", embedded_resource),
    tool(
        "test_multiple_content_types",
        "Tests response with multiple content types (text, image, resource)",
        multiple_content,
    ),
    tool(
        "test_tool_with_logging",
        "Tests tool that emits log messages during execution",
        with_logging,
    ),
    tool(
        "test_tool_with_progress", "Tests tool that reports progress notifications", with_progress
    ),
    tool(
        "test_sampling",
        "Tests server-initiated sampling (LLM completion request)",
        sampling,
        string_args(prompt="The prompt to send to the LLM"),
    ),
    tool(
        "test_elicitation",
        "Tests server-initiated elicitation (user input request)",
        elicitation,
        string_args(message="The message to show the user"),
    ),
    tool(
        "test_elicitation_sep1034_defaults",
        "Tests elicitation with default values for all primitive types (SEP-1034)",
        elicitation_defaults,
    ),
    tool(
        "test_elicitation_sep1330_enums",
        "Tests elicitation with enum schema variations per SEP-1330",
        elicitation_enums,
    ),
    tool("test_error_handling", "Tests error response handling", error_handling),
    tool(
        "test_reconnection", "Tests SSE polling by closing stream mid-call (SEP-1699)", reconnection
    ),
    tool(
        "test_missing_capability",
        "Tests that a missing required client capability is a JSON-RPC error",
        missing_capability,
    ),
    tool(
        "test_x_mcp_header",
        "Tests SEP-2243 Mcp-Param-* server-side validation",
        x_mcp_header,
        {
            "type": "object",
            "properties": {
                "region": {
                    "type": "string",
                    "description": "Mirrored into the Mcp-Param-Region header",
                    "x-mcp-header": "Region",
                }
            },
        },
    ),
    tool(
        "test_streaming_elicitation",
        "Asks the user to confirm through the era's elicitation mechanism",
        streaming_elicitation,
    ),
    tool("test_logging_tool", "Emits a log message at info level", logging_tool),
    tool(
        "test_trigger_tool_change",
        "Announces a tool list change to subscriptions/listen streams",
        trigger_tool_change,
    ),
    tool(
        "test_trigger_prompt_change",
        "Announces a prompt list change to subscriptions/listen streams",
        trigger_prompt_change,
    ),
    tool(
        "json_schema_2020_12_tool",
        "Tests JSON Schema 2020-12 keyword preservation in tools/list",
        json_schema_tool,
        JSON_SCHEMA_2020_12,
    ),
    tool(
        "test_input_required_result_elicitation",
        "Tests InputRequiredResult with a single elicitation request",
        mrtr_elicitation,
    ),
    tool(
        "test_input_required_result_sampling",
        "Tests InputRequiredResult with a single sampling request",
        mrtr_sampling,
    ),
    tool(
        "test_input_required_result_list_roots",
        "Tests InputRequiredResult with a single roots/list request",
        mrtr_roots,
    ),
    tool(
        "test_input_required_result_request_state",
        "Tests requestState round-tripping in the InputRequiredResult flow",
        mrtr_request_state,
    ),
    tool(
        "test_input_required_result_multiple_inputs",
        "Tests InputRequiredResult carrying elicitation, sampling and roots requests together",
        mrtr_multiple,
    ),
    tool(
        "test_input_required_result_multi_round",
        "Tests a three-round InputRequiredResult flow with evolving requestState",
        mrtr_multi_round,
    ),
    tool(
        "test_input_required_result_tampered_state",
        "Tests that the server rejects a tampered requestState echo",
        mrtr_tampered,
    ),
    tool(
        "test_input_required_result_capabilities",
        "Tests that inputRequests only include methods the client declared support for",
        mrtr_capabilities,
    ),
)

# --- resources ---------------------------------------------------------------------------


def text_contents(uri: str, mime_type: str, body: str) -> list[dict[str, Any]]:
    return [{"uri": uri, "mimeType": mime_type, "text": body}]


async def read_static_text(uri: str, variables: Any, ctx: CallContext) -> list[dict[str, Any]]:
    return text_contents(uri, "text/plain", "This is the content of the static text resource.")


async def read_static_binary(uri: str, variables: Any, ctx: CallContext) -> list[dict[str, Any]]:
    blob = base64.b64encode(base64.b64decode(PNG_1X1)).decode()
    return [{"uri": uri, "mimeType": "image/png", "blob": blob}]


async def read_template(uri: str, variables: Any, ctx: CallContext) -> list[dict[str, Any]]:
    item = variables["id"]
    body = orjson.dumps({"id": item, "templateTest": True, "data": f"Data for ID: {item}"})
    return text_contents(uri, "application/json", body.decode())


async def read_watched(uri: str, variables: Any, ctx: CallContext) -> list[dict[str, Any]]:
    return text_contents(uri, "text/plain", "Watched resource content")


RESOURCES = (
    Resource(
        "test://static-text",
        "static-text",
        read_static_text,
        title="Static Text Resource",
        description="A static text resource for testing",
        mime_type="text/plain",
    ),
    Resource(
        "test://static-binary",
        "static-binary",
        read_static_binary,
        title="Static Binary Resource",
        description="A static binary resource (image) for testing",
        mime_type="image/png",
    ),
    Resource(
        "test://watched-resource",
        "watched-resource",
        read_watched,
        title="Watched Resource",
        description="A resource that can be subscribed to for updates",
        mime_type="text/plain",
    ),
)

TEMPLATES = (
    ResourceTemplate(
        "test://template/{id}/data",
        "template",
        read_template,
        title="Resource Template",
        description="A resource template with parameter substitution",
        mime_type="application/json",
    ),
)

# --- prompts -----------------------------------------------------------------------------


def user(content: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": content}


async def simple_prompt(args: dict[str, str], ctx: CallContext) -> dict[str, Any]:
    return {"messages": [user(text("This is a simple prompt for testing."))]}


async def prompt_with_arguments(args: dict[str, str], ctx: CallContext) -> dict[str, Any]:
    body = f"Prompt with arguments: arg1='{args['arg1']}', arg2='{args['arg2']}'"
    return {"messages": [user(text(body))]}


async def prompt_with_resource(args: dict[str, str], ctx: CallContext) -> dict[str, Any]:
    resource = embedded(args["resourceUri"], "text/plain", "Embedded resource content for testing.")
    return {"messages": [user(resource), user(text("Please process the embedded resource above."))]}


async def prompt_with_image(args: dict[str, str], ctx: CallContext) -> dict[str, Any]:
    return {"messages": [user(image()), user(text("Please analyze the image above."))]}


async def prompt_input_required(args: dict[str, str], ctx: CallContext) -> dict[str, Any]:
    if "user_context" in ctx.input_responses:
        said = answer_content(ctx.input_responses["user_context"]).get("context", "?")
        return {"messages": [user(text(f"Use the following context: {said}"))]}
    schema = {
        "type": "object",
        "properties": {"context": {"type": "string"}},
        "required": ["context"],
    }
    ask = elicit_request("What context should the prompt use?", schema)
    raise InputRequired({"user_context": ask})


PROMPTS = (
    Prompt("test_simple_prompt", simple_prompt, description="A simple prompt without arguments"),
    Prompt(
        "test_prompt_with_arguments",
        prompt_with_arguments,
        description="A prompt with required arguments",
        arguments=(
            PromptArgument("arg1", "First test argument", required=True),
            PromptArgument("arg2", "Second test argument", required=True),
        ),
    ),
    Prompt(
        "test_prompt_with_embedded_resource",
        prompt_with_resource,
        description="A prompt that includes an embedded resource",
        arguments=(PromptArgument("resourceUri", "URI of the resource to embed", required=True),),
    ),
    Prompt(
        "test_prompt_with_image",
        prompt_with_image,
        description="A prompt that includes image content",
    ),
    Prompt(
        "test_input_required_result_prompt",
        prompt_input_required,
        description="Tests InputRequiredResult from prompts/get (SEP-2322 non-tool request)",
    ),
)


def conformance_catalogue() -> Catalogue:
    return Catalogue(TOOLS, RESOURCES, TEMPLATES, PROMPTS, list_changed=True)
