"""The signals that stop a run (Ctrl-C, SIGTERM, SIGHUP), and what happens to them during start-up.

Each of them stops a run the same way: a checkpoint, the resume hint, and exit status 128 + the
signal's number (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP: a closed terminal, some batch
schedulers), as a shell expects of a process a signal ended.


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

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_status(signum: int) -> int:
    """The exit status of a process that `signum` stopped: 128 + its number."""
    return 128 + int(signum)


def is_stop_status(returncode: int | None) -> bool:
    """Whether a child's return code says one of `STOP_SIGNALS` stopped it (its own exit status
    for that, or killed by it)."""
    return returncode is not None and any(returncode in (exit_status(s), -int(s)) for s in STOP_SIGNALS)


def _record(signum, frame) -> None:
    _pending.append(signum)


def defer_during_startup() -> dict:
    """Record the stop signals instead of acting on them (main thread only); returns the handlers
    they had, for `restore`."""
    _pending.clear()
    return {sig: signal.signal(sig, _record) for sig in STOP_SIGNALS}


def restore(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def take_pending() -> int | None:
    """The first signal recorded since `defer_during_startup`, if any (and forget them all)."""
    first = _pending[0] if _pending else None
    _pending.clear()
    return first
