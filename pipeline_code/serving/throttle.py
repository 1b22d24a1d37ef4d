"""Token buckets by key, the algorithm API Gateway throttles with (standard library only).

Each key's bucket holds at most ``burst`` tokens and starts full; it refills at ``rate`` tokens per
second; an event spends one token, or is refused when less than one is left. So ``burst`` events may
pass at once, and ``rate`` per second on average after that. API Gateway throttles this way, one token
per request, with the burst as the bucket's size:
https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-request-throttling.html
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Hashable


class TokenBuckets:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < rate < float("inf") or burst < 1:
            raise ValueError("rate must be a positive number and burst at least 1")
        self.rate, self.burst, self.clock = float(rate), int(burst), clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._lock = threading.Lock()

    def take(self, key: Hashable) -> float:
        """Spend one of ``key``'s tokens: 0.0 when there was one, else the seconds until there is."""
        now = self.clock()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - stamp) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
