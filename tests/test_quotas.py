"""The in-memory quotas: a token bucket per key, and only as many buckets as keys in use."""

from __future__ import annotations

import pytest

from sp00ky_mcp.engine.quotas import SWEEP_AT, SWEPT_PER_NEW, Bucket, LocalQuotas

pytestmark = pytest.mark.anyio


async def test_buckets_of_keys_seen_once_are_dropped_once_refilled() -> None:
    quotas = LocalQuotas()
    for n in range(SWEEP_AT):
        await quotas.throttle(f"signin:{n}", 0.0, 1.0, 5.0)
    await quotas.throttle("spent", 0.0, 1 / 60, 1.0)
    assert quotas.buckets() == SWEEP_AT + 1
    for n in range(SWEEP_AT):
        await quotas.throttle(f"later:{n}", 10.0, 1.0, 5.0)
    # The first keys refilled by t=10 and went; the spent one still has a minute to wait.
    assert quotas.buckets() == SWEEP_AT + 1
    assert await quotas.throttle("spent", 10.0, 1 / 60, 1.0) == pytest.approx(50.0)


async def test_a_dropped_bucket_comes_back_full() -> None:
    quotas = LocalQuotas()
    assert [await quotas.throttle("k", 0.0, 0.5, 2.0) for _ in range(3)] == [0.0, 0.0, 2.0]
    for n in range(SWEEP_AT):
        await quotas.throttle(f"other:{n}", 100.0, 1.0, 1.0)
    assert [await quotas.throttle("k", 100.0, 0.5, 2.0) for _ in range(3)] == [0.0, 0.0, 2.0]


async def test_a_new_key_sweeps_a_few_buckets_never_the_whole_map(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quotas = LocalQuotas()
    for n in range(3 * SWEEP_AT):
        await quotas.throttle(f"held:{n}", 0.0, 1 / 3600, 1.0)
    looked: list[Bucket] = []
    full = Bucket.full

    def counted(bucket: Bucket, now: float) -> bool:
        looked.append(bucket)
        return full(bucket, now)

    monkeypatch.setattr(Bucket, "full", counted)
    await quotas.throttle("new", 1.0, 1.0, 1.0)
    assert len(looked) == SWEPT_PER_NEW
    assert quotas.buckets() == 3 * SWEEP_AT + 1  # none refilled: all kept
