"""How far a template may go, and the data it reads: the limits ``render`` and ``sandbox`` share.

A leaf without Jinja2, so that ``render`` can hold a mail's budget at import time and ``sandbox``
(which imports Jinja2) is loaded only when the first template is needed.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

MAX_RENDER_SECONDS = 2.0
"""One mail (subject, text and HTML) must render within this much CPU time of its thread; real
mails take milliseconds. CPU time, not wall time: on a machine busy with other work a rendering
waits without spending, and the shipped templates must not be refused for that."""
MAX_VALUE_CHARS = 1_000_000
"""A string a template builds or reads larger than this stops the rendering (``"x" * 10**9``)."""
MAX_RANGE = 10_000
"""``range()`` in a template yields at most this many numbers."""


class Record(SimpleNamespace):
    """A mapping shown to templates as an object.

    Templates say ``company.values``; on a plain ``dict`` Jinja would find the ``dict.values``
    method before the key, so every mapping in a context becomes one of these.
    """


PLAIN_DATA = frozenset({str, int, float, bool, type(None), tuple, Record})
"""Values a ``Record`` attribute is returned as directly (no method, no ``str.format``)."""


class OverBudget(Exception):
    """A rendering went over its time or size budget."""


class Budget:
    """The CPU-time deadline of the mail being rendered (per thread: runners render in parallel)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def start(self) -> None:
        self._local.deadline = time.thread_time() + MAX_RENDER_SECONDS
        # The thread's CPU clock is a system call (~0.6 µs, hundreds of checks per mail); the
        # wall clock is cheap, and a thread cannot spend more CPU than wall time passes. So the
        # CPU clock is only read once the wall clock says the budget could be spent.
        self._local.look_at = time.monotonic() + MAX_RENDER_SECONDS

    def check(self) -> None:
        look_at = getattr(self._local, "look_at", None)
        if look_at is None or time.monotonic() <= look_at:
            return
        left = self._local.deadline - time.thread_time()
        if left <= 0:
            raise OverBudget(f"rendering took more than {MAX_RENDER_SECONDS:g} s of CPU time")
        self._local.look_at = time.monotonic() + left


def sized(value: Any) -> Any:
    """``value``, unless it is a string or sequence past ``MAX_VALUE_CHARS``."""
    if isinstance(value, str | list | tuple) and len(value) > MAX_VALUE_CHARS:
        raise OverBudget(f"a value grew past {MAX_VALUE_CHARS} characters")
    return value
