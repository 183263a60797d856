"""The official Python SDK client (mcp 2.x) against the conformance profile, in both of its
connection modes: `legacy` (handshake era, 2025-11-25) and `auto` (negotiates 2026-07-28)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.client import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from sp00ky_mcp.engine.server import McpServer

pytestmark = [pytest.mark.anyio, pytest.mark.clients]
MODES = pytest.mark.parametrize("mode", ["legacy", "auto"])


async def accept_elicitation(
    ctx: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"response": "yes", "name": "Ada"})


async def answer_sampling(
    ctx: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant",
        model="test-model",
        content=types.TextContent(type="text", text="Paris"),
        stop_reason="endTurn",
    )


@asynccontextmanager
async def connect(server: McpServer, mode: str, **options: Any) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient() as http:
        transport = streamable_http_client(server.url, http_client=http)
        async with Client(transport, mode=mode, cache=None, **options) as client:
            yield client


@MODES
async def test_client_negotiates_the_era_its_mode_asks_for(
    conformance_server: McpServer, mode: str
) -> None:
    async with connect(conformance_server, mode) as client:
        expected = {"legacy": "2025-11-25", "auto": "2026-07-28"}[mode]
        assert client.protocol_version == expected
        assert client.server_info is not None
        assert client.server_info.name == "sp00ky-mcp"


@MODES
async def test_tools_are_listed_in_registration_order(
    conformance_server: McpServer, mode: str
) -> None:
    async with connect(conformance_server, mode) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
    assert names[:3] == ["test_simple_text", "test_image_content", "test_audio_content"]
    assert len(names) == len(set(names))


@MODES
async def test_simple_text_tool_returns_its_text(conformance_server: McpServer, mode: str) -> None:
    async with connect(conformance_server, mode) as client:
        result = await client.call_tool("test_simple_text", {})
    assert result.is_error is False
    assert [c.model_dump(exclude_none=True) for c in result.content] == [
        {"type": "text", "text": "This is a simple text response for testing."}
    ]


@MODES
async def test_progress_notifications_reach_the_caller(
    conformance_server: McpServer, mode: str
) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connect(conformance_server, mode) as client:
        await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
    assert seen == [
        (0, 100, "Completed step 0 of 100"),
        (50, 100, "Completed step 50 of 100"),
        (100, 100, "Completed step 100 of 100"),
    ]


@MODES
async def test_log_messages_reach_the_client(conformance_server: McpServer, mode: str) -> None:
    messages: list[tuple[str, Any]] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        messages.append((params.level, params.data))

    async with connect(conformance_server, mode, logging_callback=on_log, log_level="info") as c:
        result = await c.call_tool("test_tool_with_logging", {})
    assert result.content[0].model_dump()["text"] == "Tool with logging executed successfully"
    assert messages == [
        ("info", "Tool execution started"),
        ("info", "Tool processing data"),
        ("info", "Tool execution completed"),
    ]


@MODES
async def test_elicitation_reaches_the_user_and_returns_the_answer(
    conformance_server: McpServer, mode: str
) -> None:
    async with connect(conformance_server, mode, elicitation_callback=accept_elicitation) as c:
        result = await c.call_tool("test_elicitation", {"message": "Shall we?"})
    text = result.content[0].model_dump()["text"]
    assert text == 'User response: action=accept, content={"response":"yes","name":"Ada"}'


@MODES
async def test_sampling_reaches_the_model_and_returns_its_reply(
    conformance_server: McpServer, mode: str
) -> None:
    async with connect(conformance_server, mode, sampling_callback=answer_sampling) as client:
        result = await client.call_tool("test_sampling", {"prompt": "Capital of France?"})
    assert result.content[0].model_dump()["text"] == "LLM response: Paris"


@MODES
async def test_failing_tool_is_an_error_result_not_a_protocol_error(
    conformance_server: McpServer, mode: str
) -> None:
    async with connect(conformance_server, mode) as client:
        result = await client.call_tool("test_error_handling", {})
    assert result.is_error is True
    assert result.content[0].model_dump()["text"] == (
        "This tool intentionally returns an error for testing"
    )


@MODES
async def test_unknown_tool_is_invalid_params(conformance_server: McpServer, mode: str) -> None:
    async with connect(conformance_server, mode) as client:
        with pytest.raises(MCPError) as raised:
            await client.session.call_tool("no_such_tool", {})
    assert raised.value.error.code == -32602
    assert raised.value.error.message == (
        "Unknown tool: 'no_such_tool'. Call tools/list to see the available tools."
    )


@MODES
async def test_resources_read_as_text_blob_and_template(
    conformance_server: McpServer, mode: str
) -> None:
    async with connect(conformance_server, mode) as client:
        listed = [str(r.uri) for r in (await client.list_resources()).resources]
        text = (await client.read_resource("test://static-text")).contents[0]
        blob = (await client.read_resource("test://static-binary")).contents[0]
        templated = (await client.read_resource("test://template/42/data")).contents[0]
    assert listed == ["test://static-text", "test://static-binary", "test://watched-resource"]
    assert text.model_dump()["text"] == "This is the content of the static text resource."
    assert blob.model_dump()["mime_type"] == "image/png"
    assert templated.model_dump()["text"] == (
        '{"id":"42","templateTest":true,"data":"Data for ID: 42"}'
    )


@MODES
async def test_prompt_with_arguments_renders_them(conformance_server: McpServer, mode: str) -> None:
    async with connect(conformance_server, mode) as client:
        prompt = await client.get_prompt("test_prompt_with_arguments", {"arg1": "a", "arg2": "b"})
    assert [m.model_dump(exclude_none=True) for m in prompt.messages] == [
        {
            "role": "user",
            "content": {"type": "text", "text": "Prompt with arguments: arg1='a', arg2='b'"},
        }
    ]


async def test_input_required_round_trip_completes_in_the_stateless_era(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server, "auto", elicitation_callback=accept_elicitation) as c:
        result = await c.call_tool("test_input_required_result_elicitation", {})
    assert result.content[0].model_dump()["text"] == "Hello, Ada!"


async def test_missing_client_capability_is_a_protocol_error_in_the_stateless_era(
    conformance_server: McpServer,
) -> None:
    async with connect(conformance_server, "auto") as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("test_missing_capability", {})
    assert raised.value.error.code == -32021
    assert raised.value.error.data == {"requiredCapabilities": {"sampling": {}}}
