"""Named crash points for the reliability suite: ``RECRUITMAIL_CRASH_AT=<point>[:<n>]`` makes the
process SIGKILL itself the n-th time (default first) it reaches that point.

The points are the steps of two-phase draft creation and of the cursor save; the suite kills the
process at each of them and checks that nothing is duplicated or lost. Without the variable this
costs one dictionary lookup per step.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "sync-before-commit",  # inside the transaction that saves events and the cursor
    "sync-after-commit",
    "skip-before-commit",  # before a stale mail is recorded as skipped
    "attempt-after-commit",  # the ledger says "attempting"; the mailbox was not touched yet
    "create-before-call",  # the key was looked up and not found; the create is about to go out
    "create-after-call",  # the provider answered; the ledger does not know yet
    "draft-after-commit",  # the ledger says "drafted"
)

_target, _, _count = os.environ.get("RECRUITMAIL_CRASH_AT", "").partition(":")
_remaining = int(_count) if _count.isdigit() else 1


def crash_point(name: str) -> None:
    """Die here, as hard as a power cut or the OOM killer would, when the suite asks for it."""
    global _remaining
    if name != _target:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
