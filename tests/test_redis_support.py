"""The suite's throwaway Redis: the session's server, emptied per test, and a server of a test's
own that goes away and comes back at the same address."""

from __future__ import annotations

import pytest
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .redis_support import OwnRedis

pytestmark = pytest.mark.anyio


def connect(url: str) -> redis.asyncio.Redis:
    """A client that fails at once when nothing answers, rather than retrying for seconds."""
    return redis.asyncio.Redis.from_url(url, retry=Retry(NoBackoff(), 0))


async def test_a_value_set_is_read_back(redis_url: str) -> None:
    async with connect(redis_url) as client:
        await client.set("greeting", "hello")
        assert await client.get("greeting") == b"hello"


async def test_own_server_stopped_refuses_and_started_again_serves(own_redis: OwnRedis) -> None:
    url = own_redis.url
    own_redis.stop()
    async with connect(url) as client:
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.ping()
    own_redis.start()
    assert own_redis.url == url
    async with connect(url) as client:
        assert await client.ping()
