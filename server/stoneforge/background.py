"""Background work yields the CPU to dispatch.

While a dispatch is under way (`foreground`: from the dispatcher's wake-up to the agent's session
opened), each step of background work (a clone the pool makes or brings up to the tip, a
landing's clean-up) waits for it to finish first, for a moment at most.

A landing's clean-up (the merged task's checkout snapshotted, published and removed) runs at a
lower scheduling priority (a higher nice value), and so do the git processes it starts: on Linux
the nice value belongs to the thread, and a child process inherits its thread's. Right after a
landing it would otherwise take turns on the CPU with the dispatch of the tasks that landing
unblocked, which an agent is waiting for. (The clone pool's filler is not lowered: on a loaded
machine it fell behind, and a dispatch that finds no prepared clone makes one itself.)
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Added to the nice value of a background thread (19 at most: the lowest priority).
BACKGROUND_NICE = 10
#: How long a step of background work waits at most for the dispatches under way (a dispatch
#: takes tens of milliseconds; a longer wait means many at once, and the pool must not starve).
FOREGROUND_MAX_WAIT_S = 0.3


def lower_this_thread() -> None:
    """Run the calling thread, and the processes it starts from now on, at lower priority.

    Only for a thread made for background work: an unprivileged thread cannot take its
    priority back. Elsewhere than Linux the nice value is the whole process's: nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):  # a sandbox may refuse it: the work runs all the same
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(nice + BACKGROUND_NICE, 19))


def in_background(work: Callable[[], T], name: str) -> T:
    """``work()`` in a thread of its own at lower priority; waits for it and returns what it
    returned (or raises what it raised)."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        lower_this_thread()
        foreground.wait_idle()
        try:
            result.append(work())
        except BaseException as exc:  # handed to the caller's thread below
            error.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class Foreground:
    """Dispatches under way, which background work waits for (`wait_idle`): delayed, never
    stopped. On a 2-core machine the git processes of the pool and of a clean-up otherwise run
    beside the few milliseconds a dispatch takes, and were measured to slow it by a third."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0

    def begin(self) -> Callable[[], None]:
        """Mark a dispatch under way; the returned function ends it (once; more calls do nothing)."""
        with self._changed:
            self._count += 1
        ended = False

        def end() -> None:
            nonlocal ended
            with self._changed:
                if ended:
                    return
                ended = True
                self._count -= 1
                if self._count == 0:
                    self._changed.notify_all()

        return end

    def busy(self) -> bool:
        return self._count > 0

    def wait_idle(self) -> None:
        """Return once no dispatch is under way, or after `FOREGROUND_MAX_WAIT_S`."""
        with self._changed:
            self._changed.wait_for(lambda: self._count == 0, timeout=FOREGROUND_MAX_WAIT_S)


#: This process's dispatches (the pool and the landings are per process too).
foreground = Foreground()
