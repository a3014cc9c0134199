"""Per-source rate limiting of DNS queries, applied only while sources compete.

The limit is for fairness, not a cap: a source that asks alone takes nothing from
anyone and is not limited.  As soon as a second source asks within a tick, every source
draws from its own token bucket (`rate` per second, at most `burst`), until a whole tick
passes with one source only.

Why this shape: the lone case is the common one (one busy container, or a benchmark) and
costs the server's hot path one string comparison per query (`source != limiter.lone`):
no bucket, no timer.  Buckets are refilled from the time elapsed when the server loop
calls `tick`, so an idle server needs no wake-ups for them.
"""

from __future__ import annotations

TICK = 0.05  # seconds; also how long contention outlives the last competing query
MAX_SOURCES = 65536  # bound on the buckets kept


class SourceLimiter:
    __slots__ = ("rate", "burst", "tokens", "lone", "contended", "seen_other", "dropped", "_last")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens: dict[str, float] = {}  # absent = a full bucket
        self.lone: str | None = None  # the first source of this tick
        self.contended = False  # buckets apply
        self.seen_other = False  # a second source asked during this tick
        self.dropped = 0
        self._last = now

    def saw(self, source: str) -> None:
        """The hot path calls this only when `source != self.lone`."""
        if self.lone is None:
            self.lone = source
        else:
            self.seen_other = True
            self.contended = True

    def take(self, source: str) -> bool:
        """One query from `source` while contended: False = drop it."""
        left = self.tokens.get(source, self.burst) - 1.0
        if left < 0.0:
            self.dropped += 1
            return False
        self.tokens[source] = left
        return True

    def allow(self, source: str) -> bool:
        """The whole decision for one query (the UDP hot path inlines it)."""
        if source != self.lone:
            self.saw(source)
        return not self.contended or self.take(source)

    def tick(self, now: float) -> None:
        """Called by the server loop after each wake-up; acts at most once per TICK."""
        elapsed = now - self._last
        if elapsed < TICK:
            return
        self._last = now
        self.contended = self.seen_other
        self.seen_other = False
        self.lone = None
        tokens = self.tokens
        if not self.contended:
            tokens.clear()
            return
        add = self.rate * elapsed
        burst = self.burst
        for source, value in list(tokens.items()):
            value += add
            if value >= burst:
                del tokens[source]
            else:
                tokens[source] = value
        if len(tokens) > MAX_SOURCES:
            tokens.clear()
