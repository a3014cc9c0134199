"""The per-source limiter's policy with a driven clock (the end-to-end flood is in
test_dns_server.py::test_rate_limit_per_source)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from container_runtime.dns.ratelimit import TICK, SourceLimiter

HEAVY, LIGHT = "10.0.0.1", "10.0.0.2"


def run(limiter: SourceLimiter, schedule: list[tuple[float, str]]) -> dict[str, int]:
    """Queries at the given times (ticking as the server loop does); answered per source."""
    answered: dict[str, int] = {}
    for now, source in schedule:
        limiter.tick(now)
        if limiter.allow(source):
            answered[source] = answered.get(source, 0) + 1
    return answered


def flood(source: str, rate: float, start: float, seconds: float) -> list[tuple[float, str]]:
    n = int(rate * seconds)
    return [(start + i / rate, source) for i in range(n)]


def merged(*schedules: list[tuple[float, str]]) -> list[tuple[float, str]]:
    return sorted((q for s in schedules for q in s), key=lambda q: q[0])


def test_a_lone_source_is_never_limited() -> None:
    limiter = SourceLimiter(rate=100, burst=50)
    answered = run(limiter, flood(HEAVY, 10_000, 0.0, 2.0))
    assert answered[HEAVY] == 20_000
    assert limiter.tokens == {} and limiter.dropped == 0


def test_under_contention_the_flood_gets_its_bucket_and_the_other_source_everything() -> None:
    limiter = SourceLimiter(rate=100, burst=50)
    answered = run(limiter, merged(flood(HEAVY, 5_000, 0.0, 1.0), flood(LIGHT, 50, 0.0, 1.0)))
    assert answered[LIGHT] == 50
    # burst + rate x 1 s, give or take one tick's refill
    assert 50 + 100 * (1.0 - TICK) <= answered[HEAVY] <= 50 + 100 * (1.0 + TICK)
    assert limiter.dropped == 5_000 - answered[HEAVY]


def test_contention_ends_one_tick_after_the_other_source_stops() -> None:
    limiter = SourceLimiter(rate=100, burst=50)
    contended = merged(flood(HEAVY, 5_000, 0.0, 0.5), flood(LIGHT, 100, 0.0, 0.5))
    run(limiter, contended)
    assert limiter.contended
    after = flood(HEAVY, 5_000, 0.5, 0.5)  # the light source went quiet at 0.5 s
    answered = run(limiter, after)
    # at most ~two ticks still contended (the tick in progress and the one after it)
    assert answered[HEAVY] >= len(after) - 2 * TICK * 5_000
    assert not limiter.contended and limiter.tokens == {}


def test_buckets_refill_while_idle() -> None:
    limiter = SourceLimiter(rate=100, burst=50)
    run(limiter, merged(flood(HEAVY, 5_000, 0.0, 0.2), flood(LIGHT, 100, 0.0, 0.2)))
    assert limiter.tokens.get(HEAVY, 50) < 1  # exhausted
    # a second later both ask again: the heavy source has a full bucket
    answered = run(limiter, merged(flood(HEAVY, 5_000, 1.2, 0.01), flood(LIGHT, 500, 1.2, 0.01)))
    assert answered[HEAVY] == 50 and answered[LIGHT] == 5


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        SourceLimiter(rate=0, burst=10)
    with pytest.raises(ValueError):
        SourceLimiter(rate=10, burst=0)


@given(
    st.lists(
        st.tuples(st.floats(0.0, 0.02), st.sampled_from([HEAVY, LIGHT, "10.0.0.3"])),
        min_size=1,
        max_size=400,
    )
)
def test_drops_only_under_contention_and_buckets_stay_in_range(
    steps: list[tuple[float, str]],
) -> None:
    """Whatever the interleaving and timing: a query is dropped only while the limiter is
    contended, after a second source asked; buckets hold 0 <= tokens < burst."""
    limiter = SourceLimiter(rate=1_000, burst=20)
    now = 0.0
    seen: set[str] = set()
    for gap, source in steps:
        now += gap
        limiter.tick(now)
        seen.add(source)
        if not limiter.allow(source):
            assert limiter.contended and len(seen) > 1
        assert all(0.0 <= v < 20 for v in limiter.tokens.values())
    if len(seen) == 1:
        assert limiter.dropped == 0
