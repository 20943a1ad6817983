"""Per-officer rate limits of enquiry agreements: a sliding window of enquiry times per (officer, agreement)."""

from __future__ import annotations

import collections
import threading


class RateLimiter:
    """Counts enquiries per officer and agreement over each agreement's window; the clock is passed in."""

    def __init__(self) -> None:
        self._times: dict[tuple[str, str], collections.deque[float]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def admit(self, officer: str, limits: list[tuple[str, int, int]], now: float) -> str | None:
        """Record one enquiry and return None, or return the id of the agreement whose limit it would exceed."""
        with self._lock:
            for agreement, per_officer, window in limits:
                times = self._times[(officer, agreement)]
                while times and times[0] <= now - window:
                    times.popleft()
                if len(times) >= per_officer:
                    return agreement
            for agreement, _, _ in limits:
                self._times[(officer, agreement)].append(now)
            return None
