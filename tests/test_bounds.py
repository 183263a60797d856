"""No token can stall other clients or hold unbounded memory: a tenant's large secret values
are made ready for masking off the event loop, resource subscriptions, the tool-result cache
and 2025-03-26 batches are bounded per token, and every call of a batch counts against the
token's rate limit."""

from __future__ import annotations

import secrets
import threading
from typing import Any

import anyio
import pytest

from sp00ky_mcp.tools import base

from .product_support import NOW, REDACTED, ProductEnv

pytestmark = pytest.mark.anyio
WAIT = 10.0


# --- masking ----------------------------------------------------------------------------------


def seed_large_secrets(env: ProductEnv, count: int = 60, size: int = 32 * 1024) -> str:
    """Ada's project 'api' with `count` env values of `size` characters; her token."""
    ada = env.user()
    project_id = env.make_project(ada)
    values = [secrets.token_urlsafe(size)[:size] for _ in range(count)]
    with env.store.transaction() as db:
        db.executemany(
            "INSERT INTO env_vars VALUES (?, ?, ?, ?)",
            [(project_id, f"KEY_{i}", value, NOW) for i, value in enumerate(values)],
        )
    return env.token(ada, "mcp:read")


class HeldBuild:
    """The real mask builder, held in its worker thread until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.build = base._build_masks

    def __call__(self, values: tuple[str, ...]) -> base.Masks:
        self.entered.set()
        self.release.wait(WAIT)
        return self.build(values)


async def test_a_token_with_large_secret_values_does_not_hold_up_other_tokens(
    env: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = seed_large_secrets(env)
    bob = env.token(env.user("bob@example.com"))
    held = HeldBuild()
    monkeypatch.setattr(base, "_build_masks", held)
    outcome: dict[str, Any] = {}

    async def list_ada_vars() -> None:
        outcome["ada"] = await env.call(ada, "list_env_vars", {"project": "api", "limit": 5})

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(list_ada_vars)
            await anyio.to_thread.run_sync(held.entered.wait, WAIT)
            # Ada's masks are being built; Bob is answered meanwhile.
            listed = await env.rpc(bob, "tools/list")
            assert "ada" not in outcome
            held.release.set()
    assert listed.status_code == 200
    assert "tools" in listed.json()["result"]
    items = outcome["ada"]["structuredContent"]["items"]
    assert [item["value"] for item in items] == [REDACTED] * 5
