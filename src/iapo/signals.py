"""Ctrl-C and SIGTERM during start-up.

Importing JAX and compiling take seconds, and a KeyboardInterrupt raised in the middle of them can
land in a callback that swallows it (XLA's garbage-collection hook), so that the run goes on as
if nothing had happened, or in native code that dies of it. So a training process defers these
signals from its first line until its loop is ready to stop cleanly: `defer_during_startup`
records them, and the trainer, once its own handlers are in place, takes the recorded one with
`take_pending` and stops.
"""

from __future__ import annotations

import signal

_pending: list[int] = []


def _record(signum, frame) -> None:
    _pending.append(signum)


def defer_during_startup() -> dict:
    """Record SIGINT and SIGTERM instead of acting on them (main thread only); returns the
    handlers they had, for `restore`."""
    _pending.clear()
    return {sig: signal.signal(sig, _record) for sig in (signal.SIGINT, signal.SIGTERM)}


def restore(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def take_pending() -> int | None:
    """The first signal recorded since `defer_during_startup`, if any (and forget them all)."""
    first = _pending[0] if _pending else None
    _pending.clear()
    return first
