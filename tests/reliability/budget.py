"""How big the reliability suite is: every figure comes from an environment variable.

The defaults are the short CI run (``make reliability``); ``make soak`` raises them.
"""

from __future__ import annotations

import math
import os
import random


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


KILLS = _int("RELIABILITY_KILLS", 200)
"""Minimum number of SIGKILLed ``recruitmail once`` processes (both kill modes together)."""

FAULTS = _int("RELIABILITY_FAULTS", 2000)
"""Minimum number of injected faults (HTTP calendar and Maildir together)."""

FAULT_SECONDS = _int("RELIABILITY_FAULT_SECONDS", 0)
"""Keep injecting faults for at least this long (the soak's "hour of faults")."""

EXAMPLES = _int("RELIABILITY_EXAMPLES", 60)
"""Hypothesis examples (each a whole calendar of generated events) per hostile-input test."""

WORKERS = max(1, _int("RELIABILITY_WORKERS", os.cpu_count() or 1))
"""Scenario chains run side by side (each in its own directory, as its own processes)."""

SEED = _int("RELIABILITY_SEED", 0) or random.SystemRandom().randrange(1, 2**31)
"""Seed of every random choice; printed by each test so a failing run can be repeated."""


def timeout(seconds_per_unit: float, units: int, floor: int = 600) -> int:
    """A pytest-timeout for a test whose length grows with its budget (a hang guard, not a check)."""
    return max(floor, int(seconds_per_unit * units))


def share(total: int, parts: int) -> int:
    """One connector's part of a budget split evenly over ``parts`` (rounded up: the parts
    together are never less than the total)."""
    return -(-total // parts)


FAULT_SHARES = {"ics": 0.7, "microsoft": 0.1, "google": 0.1925, "imap": 0.0075}
"""How RELIABILITY_FAULTS is split over the connectors: by what one fault costs (an ICS fault is
a local HTTP answer; a Graph one a TLS session and a token; an IMAP one a Dovecot restart,
and only a pass with something to write meets it)."""


def fault_share(connector: str) -> int:
    """The injected faults ``connector`` must reach (the shares together cover ``FAULTS``)."""
    return math.ceil(round(FAULTS * FAULT_SHARES[connector], 6))
