"""What every adapter shares: the body limit, bounded body reads and flush-on-exit hooks."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from eagerstep.core import deferred, transport

logger = logging.getLogger("eagerstep")

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024 + 64 * 1024
"""The protocol's ~4 MB request state plus headroom; larger call requests come with ``use_api``."""

SHUTDOWN_TIMEOUT = 5.0


def read_limited(read: Callable[[int], bytes], limit: int) -> bytes:
    """Read at most ``limit + 1`` bytes, so the core can answer 413 without the whole body in memory."""
    chunks: list[bytes] = []
    remaining = limit + 1
    while remaining > 0:
        chunk = read(min(remaining, 64 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def shutdown(timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Flush pending checkpoints and deferred events; safe to call more than once."""
    try:
        transport.shutdown(timeout)
        deferred.drain(timeout)
    except Exception:  # at exit nothing may raise; say what went wrong instead
        logger.exception("eagerstep: error while flushing at shutdown")


_installed_pid = 0
_install_lock = threading.Lock()


def install_shutdown_hooks() -> None:
    """Flush at interpreter exit and on SIGTERM, keeping (and then calling) any existing SIGTERM handler.

    Installs nothing that runs work: the hooks only flush senders that requests already started.
    """
    global _installed_pid
    with _install_lock:
        if _installed_pid == os.getpid():
            return
        _installed_pid = os.getpid()
    atexit.register(shutdown)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit still covers normal exits
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, AttributeError):
        return
    if previous is signal.SIG_IGN or previous is None:
        return  # SIGTERM is ignored here (or owned by non-Python code): leave it alone

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        shutdown()
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL: terminate as the default would
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, on_sigterm)
