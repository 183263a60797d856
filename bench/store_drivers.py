"""Choosing the PostgreSQL driver: asyncpg against psycopg 3 (with psycopg-pool), on the two
operations the store does most, one connection each, the same throwaway server:

- a point read by primary key (a token's check on a cache miss, a project lookup);
- a small write transaction (BEGIN, the advisory lock, one upsert, the version bump, COMMIT).

Reports CPU time per operation in this process (what the server pays) and operations a
second.  Run with `python -m bench.store_drivers` (needs the [bench] and [test] extras).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.pg_support import postgres_server_url, psql

N = 2000
SETUP = """
DROP TABLE IF EXISTS bench_kv;
CREATE TABLE bench_kv (k TEXT PRIMARY KEY, v TEXT NOT NULL, at DOUBLE PRECISION NOT NULL);
INSERT INTO bench_kv SELECT 'k' || i, 'value ' || i, 0 FROM generate_series(1, 1000) i;
DROP TABLE IF EXISTS bench_version;
CREATE TABLE bench_version (n BIGINT NOT NULL);
INSERT INTO bench_version VALUES (0);
"""
READ = "SELECT k, v, at FROM bench_kv WHERE k = {}"
UPSERT = (
    "INSERT INTO bench_kv (k, v, at) VALUES ({0}, {1}, {2}) "
    "ON CONFLICT (k) DO UPDATE SET v = excluded.v, at = excluded.at"
)
LOCK = "SELECT pg_advisory_xact_lock(1)"
BUMP = "UPDATE bench_version SET n = n + 1"


async def measure(operation: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """CPU microseconds per operation in this process, and operations per second."""
    for i in range(200):
        await operation(i)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(N):
        await operation(i)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / N * 1e6, N / wall


async def with_asyncpg(url: str) -> dict[str, tuple[float, float]]:
    import asyncpg

    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    read, upsert = READ.format("$1"), UPSERT.format("$1", "$2", "$3")

    async def point_read(i: int) -> Any:
        async with pool.acquire() as connection:
            return await connection.fetchrow(read, f"k{i % 1000 + 1}")

    async def write(i: int) -> None:
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(LOCK)
            await connection.execute(upsert, f"k{i % 1000 + 1}", f"v{i}", float(i))
            await connection.execute(BUMP)

    try:
        return {"point read": await measure(point_read), "write": await measure(write)}
    finally:
        await pool.close()


async def with_psycopg(url: str) -> dict[str, tuple[float, float]]:
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(url, min_size=1, max_size=1, open=False)
    await pool.open()
    read, upsert = READ.format("%s"), UPSERT.format("%s", "%s", "%s")

    async def point_read(i: int) -> Any:
        async with pool.connection() as connection:
            cursor = await connection.execute(read, (f"k{i % 1000 + 1}",))
            return await cursor.fetchone()

    async def write(i: int) -> None:
        async with pool.connection() as connection, connection.transaction():
            await connection.execute(LOCK)
            await connection.execute(upsert, (f"k{i % 1000 + 1}", f"v{i}", float(i)))
            await connection.execute(BUMP)

    try:
        return {"point read": await measure(point_read), "write": await measure(write)}
    finally:
        await pool.close()


def table(results: dict[str, dict[str, tuple[float, float]]]) -> list[str]:
    lines = ["| driver | operation | CPU µs/op | ops/s |", "|---|---|---:|---:|"]
    for driver, operations in results.items():
        for name, (cpu, rate) in operations.items():
            lines.append(f"| {driver} | {name} | {cpu:.0f} | {rate:,.0f} |")
    return lines


def main() -> None:
    servers = postgres_server_url.__wrapped__()  # type: ignore[attr-defined]
    url = next(servers)
    try:
        psql(url, SETUP)
        results = {
            "asyncpg": asyncio.run(with_asyncpg(url)),
            "psycopg 3": asyncio.run(with_psycopg(url)),
        }
        print("\n".join(table(results)))
    finally:
        for _ in servers:
            pass


if __name__ == "__main__":
    main()
