"""Signing keys come from configuration: the newest signs, a retired one verifies for a stated
window, and every server on one secret key file verifies what another signed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sp00ky_mcp.engine.keys import KeyRing
from sp00ky_mcp.engine.mrtr import STATE_TTL_SECONDS, RequestStateSigner
from sp00ky_mcp.product.secretbox import Key, create_keys, load_box, replace_keys
from sp00ky_mcp.product.signing import REQUEST_STATE, FileKeyRing, derive
from sp00ky_mcp.product.store import open_store

from .product_support import product_server

OLD, NEW = b"o" * 32, b"n" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_newest_key_signs_and_every_configured_key_verifies() -> None:
    ring = KeyRing([NEW, OLD])
    older = RequestStateSigner(KeyRing([OLD]))
    signer = RequestStateSigner(ring)
    assert signer.key == NEW
    assert signer.verify(older.sign({"a": 1})) == {"a": 1}


def test_a_key_left_out_of_the_configuration_verifies_for_the_window_and_then_no_more() -> None:
    clock = Clock()
    ring = KeyRing([OLD], window=600.0, clock=clock)
    signed = RequestStateSigner(ring).sign({"a": 1})
    ring.replace([NEW])
    clock.now += 599.0
    within = RequestStateSigner(ring).verify(signed)
    clock.now += 1.0
    after = RequestStateSigner(ring).verify(signed)
    assert (within, after) == ({"a": 1}, None)


def test_a_key_configured_again_is_no_longer_counted_as_retired() -> None:
    clock = Clock()
    ring = KeyRing([OLD], window=600.0, clock=clock)
    ring.replace([NEW])
    ring.replace([NEW, OLD])
    clock.now += 10_000.0
    assert ring.verifying() == [NEW, OLD]


def test_a_ring_cannot_be_left_without_a_key() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        KeyRing([OLD]).replace([])


def test_a_ring_without_configured_keys_makes_one_of_its_own() -> None:
    first, second = KeyRing(), KeyRing()
    assert len(first.signing) == 32
    assert first.signing != second.signing


def key_file(path: Path, *keys: Key) -> Path:
    create_keys(path, list(keys))
    return path


def test_the_signing_key_is_derived_from_the_key_files_newest_key_and_is_not_it(
    tmp_path: Path,
) -> None:
    key = Key.new()
    box = load_box(key_file(tmp_path / "secret.key", key), ())
    ring = FileKeyRing(lambda: box, REQUEST_STATE)
    assert ring.signing == derive(key, REQUEST_STATE)
    assert ring.signing != key.secret
    assert derive(key, b"another purpose") != ring.signing


def test_servers_given_one_key_file_verify_each_others_signatures(tmp_path: Path) -> None:
    path = key_file(tmp_path / "secret.key", Key.new())
    here, there = load_box(path, ()), load_box(path, ())
    signed = RequestStateSigner(FileKeyRing(lambda: here)).sign({"a": 1})
    assert RequestStateSigner(FileKeyRing(lambda: there)).verify(signed) == {"a": 1}


def test_a_rotated_key_file_is_followed_and_the_key_it_retired_verifies_for_the_window(
    tmp_path: Path,
) -> None:
    old, new = Key.new(), Key.new()
    path = key_file(tmp_path / "secret.key", old)
    box = load_box(path, ())
    clock = Clock()
    ring = FileKeyRing(lambda: box)
    ring.clock = clock
    signed = RequestStateSigner(ring).sign({"a": 1})
    replace_keys(path, [new])
    signer_now = ring.signing
    clock.now += STATE_TTL_SECONDS - 1
    within = RequestStateSigner(ring).verify(signed)
    clock.now += 1
    after = RequestStateSigner(ring).verify(signed)
    assert signer_now == derive(new, REQUEST_STATE)
    assert (within, after) == ({"a": 1}, None)


def test_a_key_file_gone_bad_while_serving_leaves_the_keys_already_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = Key.new()
    path = key_file(tmp_path / "secret.key", key)
    box = load_box(path, ())
    ring = FileKeyRing(lambda: box)
    path.write_text("not a key\n")
    assert ring.signing == derive(key, REQUEST_STATE)
    assert "cannot be read again" in caplog.text


async def first_round(env: Any, token: str, arguments: dict[str, Any]) -> dict[str, Any]:
    params = {"name": "destroy_project", "arguments": arguments}
    response = await env.rpc(token, "tools/call", params, {"elicitation": {}})
    result: dict[str, Any] = response.json()["result"]
    assert result["resultType"] == "input_required", result
    return result


@pytest.mark.anyio
async def test_a_prompt_asked_by_one_server_is_answered_through_another_on_the_same_key_file(
    tmp_path: Path,
) -> None:
    """The 2026-07-28 round trip of a confirmation, across two servers on one data
    directory (one database, one key file): the retry lands on the other server."""
    here, there = await open_store(tmp_path), await open_store(tmp_path)
    try:
        async with product_server(here, tmp_path) as a, product_server(there, tmp_path) as b:
            user = await a.user()
            token = await a.token(user)
            await a.make_project(user)
            arguments = {"project": "api"}
            asked = await first_round(a, token, arguments)
            answers = {
                key: {"action": "accept", "content": {"confirm": True}}
                for key in asked["inputRequests"]
            }
            params = {
                "name": "destroy_project",
                "arguments": arguments,
                "inputResponses": answers,
                "requestState": asked["requestState"],
            }
            retried = await b.rpc(token, "tools/call", params, {"elicitation": {}})
            listed = await a.structured(token, "list_projects", {})
    finally:
        await here.close()
        await there.close()
    result = retried.json()["result"]
    assert result.get("isError") is not True, result
    assert listed["items"] == []
