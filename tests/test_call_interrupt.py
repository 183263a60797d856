"""CallInterrupt: stops the call it wraps, and only that call; any other cancellation of the
task passes through."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from sp00ky_mcp.engine.runtime import CallInterrupt

pytestmark = pytest.mark.anyio


async def test_an_interrupted_call_ends_with_none_and_the_task_goes_on() -> None:
    started = anyio.Event()

    async def call() -> str:
        started.set()
        await anyio.Event().wait()
        return "never"

    interrupt = CallInterrupt()

    async def stop_when_started() -> None:
        await started.wait()
        interrupt.cancel()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stop_when_started)
        with anyio.fail_after(5):
            assert await interrupt.run(call()) is None
    await anyio.lowlevel.checkpoint()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_call_interrupted_before_it_awaits_keeps_its_result_and_the_task_goes_on() -> None:
    interrupt = CallInterrupt()

    async def call() -> str:
        interrupt.cancel()
        return "done"

    assert await interrupt.run(call()) == "done"
    await anyio.lowlevel.checkpoint()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_an_interrupt_after_the_call_ended_does_nothing() -> None:
    interrupt = CallInterrupt()

    async def call() -> str:
        return "done"

    assert await interrupt.run(call()) == "done"
    interrupt.cancel()
    await anyio.lowlevel.checkpoint()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancellation_from_elsewhere_passes_through() -> None:
    reached = anyio.Event()
    outcome: list[str] = []

    async def call() -> str:
        reached.set()
        await anyio.Event().wait()
        return "never"

    async def wrapped() -> None:
        try:
            await CallInterrupt().run(call())
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wrapped)
            await reached.wait()
            tasks.cancel_scope.cancel()
    assert outcome == ["cancelled"]
