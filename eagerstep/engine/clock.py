"""Injectable time for the engine: the real clock, and a manual clock tests move by hand."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """What the engine asks of time. ``now`` is seconds since the epoch (float)."""

    def now(self) -> float: ...

    def wait_timeout(self, due: float) -> float | None:
        """How long to wait in real seconds for ``due`` to arrive; None: until told (``on_change``)."""
        ...

    def on_change(self, callback: Callable[[], None]) -> None:
        """Register ``callback``; called (from any thread) whenever time jumps."""
        ...


class RealClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    def wait_timeout(self, due: float) -> float | None:
        return max(0.0, due - time.time())

    def on_change(self, callback: Callable[[], None]) -> None:
        return None


class ManualClock:
    """Time that only moves when a test calls :meth:`advance` or :meth:`set`.

    Starts at the current wall-clock time (SDKs compute sleep deadlines from their own clock,
    so the two begin aligned); thread-safe, so sync tests can move it while the engine runs.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def wait_timeout(self, due: float) -> float | None:
        return 0.0 if due <= self.now() else None

    def on_change(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            callbacks = list(self._callbacks)
            now = self._now
        for callback in callbacks:
            callback()
        return now

    def set(self, when: float) -> None:
        with self._lock:
            self._now = max(self._now, when)
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()
