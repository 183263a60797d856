"""`make bench`: micro benchmarks, then the side-by-side macro run; writes bench/results.md."""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from . import macro, micro

RESULTS = Path(__file__).parent / "results.md"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def report(
    micros: list[tuple[str, float]],
    macros: dict[str, macro.Sample],
    memory: tuple[float, float],
    sdk_memory: tuple[float, float],
    redis_session: float,
) -> str:
    ours = macros["sp00ky-mcp (handshake, JSON)"]
    modern = macros["sp00ky-mcp (2026-07-28)"]
    sdk_json = macros["official SDK (JSON replies)"]
    sdk_sse = macros["official SDK (default SSE)"]
    sdk_modern = macros["official SDK (2026-07-28)"]
    bare = macros["bare h11 ceiling"]
    product = macros["sp00ky-mcp product path (list_env_vars, 50 vars)"]
    product_pg = macros["sp00ky-mcp product path on PostgreSQL (list_env_vars, 50 vars)"]
    write = macros["sp00ky-mcp write path (set_env_var)"]
    write_pg = macros["sp00ky-mcp write path on PostgreSQL (set_env_var)"]
    sse_reply = macros["sp00ky-mcp (handshake, SSE reply)"]
    progress = macros["sp00ky-mcp (handshake, progress over SSE)"]
    alone = macros["sp00ky-mcp (handshake, JSON)" + macro.ONE_CONNECTION]
    sdk_alone = macros["official SDK (JSON replies)" + macro.ONE_CONNECTION]
    on_uvloop = macros["sp00ky-mcp (handshake, JSON, uvloop)"]
    bare_uvloop = macros["bare h11 ceiling (uvloop)"]
    on_redis = macros["sp00ky-mcp (handshake, JSON, sessions on Redis)"]
    observed = macros["sp00ky-mcp (handshake, JSON, metrics and JSON access logs)"]
    modern_redis = macros["sp00ky-mcp (2026-07-28, calls in flight counted on Redis)"]
    one_worker = macros["sp00ky-mcp (2026-07-28, on Redis, 1 worker, cores 0-1)"]
    two_workers = macros["sp00ky-mcp (2026-07-28, on Redis, --workers 2, cores 0-1)"]
    lines = [
        "# Benchmark results",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{platform.machine()}; servers pinned to core 0, wrk (16 connections unless a row says "
        "otherwise, one thread each) to core 1; each connection is its own client, with its own "
        "session in the handshake era; tools/call of `test_simple_text` unless a row says "
        "otherwise; medians of alternating rounds.",
        "",
        "| server | req/s | p99 ms | CPU µs/request | error responses |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {s.rps:,.0f} | {s.p99_ms:.2f} | {s.cpu_us:.0f} | {s.errors} |"
        for name, s in macros.items()
    ]
    lines += [
        "",
        "| goal | measured | target |",
        "|---|---:|---:|",
        f"| handshake vs SDK JSON | {ratio(ours.rps, sdk_json.rps)} | ≥ 3x |",
        f"| handshake vs bare h11 | {ours.rps / bare.rps:.0%} | ≥ 75% |",
        f"| handshake vs SDK default SSE | {ratio(ours.rps, sdk_sse.rps)} | ≥ 6x |",
        f"| handshake vs bare h11, both on uvloop | {on_uvloop.rps / bare_uvloop.rps:.0%} | "
        "≥ 75% |",
        f"| uvloop (`--loop uvloop`) vs asyncio, handshake | "
        f"{on_uvloop.rps / ours.rps - 1:+.0%} | kept if it wins |",
        f"| p99 vs SDK JSON, 16 connections | {ratio(ours.p99_ms, sdk_json.p99_ms)} | ≤ 0.33x |",
        f"| p99 vs SDK JSON, 1 connection (no queue; for reference) | "
        f"{ratio(alone.p99_ms, sdk_alone.p99_ms)} | — |",
        f"| 2026-07-28 vs SDK 2026-07-28 | {ratio(modern.rps, sdk_modern.rps)} | ≥ 3x |",
        f"| product path vs fixture call, CPU per call | "
        f"+{product.cpu_us / ours.cpu_us - 1:.0%} | ≤ +25% |",
        f"| product path, PostgreSQL vs SQLite, CPU per call | "
        f"{ratio(product_pg.cpu_us, product.cpu_us)} | ≤ 1.3x |",
        f"| write path (set_env_var), req/s on SQLite / on PostgreSQL | "
        f"{write.rps:,.0f} / {write_pg.rps:,.0f} | reported |",
        f"| handshake tools/call vs bare h11 (store behind a port) | {ours.rps / bare.rps:.0%} | "
        "≥ 80% |",
        f"| SSE reply vs JSON reply, CPU per call | "
        f"{ratio(sse_reply.cpu_us, ours.cpu_us)} | ≤ 2x |",
        f"| progress (3 notifications) over SSE vs JSON reply, CPU per call | "
        f"{ratio(progress.cpu_us, ours.cpu_us)} | ≤ 2x |",
        f"| handshake tools/call, metrics and JSON access logs on vs off, CPU per call | "
        f"{observed.cpu_us / ours.cpu_us - 1:+.0%} | ≤ +5% |",
        f"| handshake tools/call, sessions on Redis vs in memory, CPU per call | "
        f"{on_redis.cpu_us / ours.cpu_us - 1:+.0%} | ≤ +30% |",
        f"| 2026-07-28 tools/call, calls in flight on Redis vs in memory, CPU per call | "
        f"{modern_redis.cpu_us / modern.cpu_us - 1:+.0%} | reported |",
        f"| 2026-07-28, `--workers 2` vs 1 (2 cores, wrk on one of them) | "
        f"{two_workers.rps / one_worker.rps:.2f}x | reported |",
        f"| Redis memory per idle handshake-era session | {redis_session:,.0f} bytes | reported |",
        f"| memory at rest | {memory[0]:.1f} MiB (SDK {sdk_memory[0]:.1f}) | ≤ 30 MiB |",
        f"| per idle session | {memory[1]:.1f} KiB (SDK {sdk_memory[1]:.1f}) | ≤ 4 KiB |",
        "",
        "p99 at 16 connections is the latency of a server's queue at full load; the "
        "one-connection rows show the latency of one request with no queue in front of it.",
        "",
        "## Micro benchmarks (in process)",
        "",
        "| piece | µs/op |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value:.2f} |" for name, value in micros]
    return "\n".join(lines) + "\n"


def main() -> None:
    micros = micro.run()
    for name, value in micros:
        print(f"{name}: {value:.2f} µs/op", flush=True)
    quick = "--quick" in sys.argv
    macros = macro.run(rounds=1 if quick else 3, seconds=2 if quick else 5)
    memory = macro.idle_memory(macro.TARGETS["sp00ky-mcp (handshake, JSON)"], 200)
    sdk_memory = macro.idle_memory(macro.TARGETS["official SDK (JSON replies)"], 200)
    redis_session = macro.redis_session_bytes(200)
    micros += macro.shared_quota_costs()
    text = report(micros, macros, memory, sdk_memory, redis_session)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
