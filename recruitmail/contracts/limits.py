"""Budgets on everything a calendar controls (anyone can put an event into a calendar).

Every connector applies these while it reads, so that one absurd or hostile event is skipped with a
reason (``SkippedEvent``) and never costs the feed, the mailbox or the machine. The numbers are far
beyond any real interview and far below what hurts a 2-core machine.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from recruitmail.contracts.models import Event

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""Events that start before this are not real appointments (DTSTART in year 1)."""
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Events that end after this are not real appointments (DTEND:99991231)."""
MAX_DURATION = timedelta(days=366)
"""Longer events are skipped (``DURATION:P3000000D``); an interview is far shorter still."""
MAX_INTERVIEW_DURATION = timedelta(hours=12)
"""An event longer than this is not an interview."""

MAX_ATTENDEES = 200
"""An event with more attendees is skipped whole: no interview has that many."""
MAX_OCCURRENCES_PER_SERIES = 400
"""Occurrences of one recurring series expanded in one window; more are not interviews."""
MAX_OCCURRENCES_PER_PASS = 20_000
"""Events one sync may return; the rest of a calendar that big is skipped with a reason."""
MAX_TIMEZONE_PARTS = 200
"""STANDARD/DAYLIGHT parts in one VTIMEZONE; real zones have a handful."""
MAX_EVENT_BYTES = 256 * 1024
"""One event's serialised size (ICS component, JSON object) past which it is skipped."""
MAX_FEED_BYTES = 64 * 1024 * 1024
"""A whole calendar download or file, decompressed."""
PASS_SECONDS = 60.0
"""Wall time one source may spend parsing a sync before the rest is skipped with a reason."""
MAX_RETRY_AFTER = 3600.0
"""A provider's Retry-After longer than this is capped (and logged): an hour, not 95 years."""

# Field sizes: longer text is cut (with "…"), never refused, so the event still counts.
MAX_SUBJECT_CHARS = 500
MAX_LOCATION_CHARS = 500
MAX_URL_CHARS = 2048
MAX_NAME_CHARS = 200
MAX_BODY_CHARS = 64 * 1024
MAX_CATEGORIES = 50

REASON_OUT_OF_RANGE = "its dates are outside 1970–2200"
REASON_TOO_LONG = "it lasts longer than a year"
REASON_TOO_MANY_ATTENDEES = f"it has more than {MAX_ATTENDEES} attendees"
REASON_TOO_BIG = "it is larger than 256 KiB"
REASON_REPEATS_TOO_OFTEN = "it repeats more often than daily (interviews never do)"
REASON_TOO_MANY_OCCURRENCES = (
    f"its series has more than {MAX_OCCURRENCES_PER_SERIES} occurrences in the window"
)
REASON_PASS_BUDGET = "the calendar had more events than one pass reads; the rest were left out"
REASON_TIMEZONE = "its time zone definition is too large or repeats more often than daily"


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (with "…" when cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def capped_retry_after(seconds: float) -> float:
    """A provider's Retry-After, capped at ``MAX_RETRY_AFTER`` and never negative."""
    return max(0.0, min(float(seconds), MAX_RETRY_AFTER))


def event_problem(event: Event) -> str | None:
    """Why a fully built ``event`` breaks a budget, or ``None``. Connectors call it last."""
    try:
        start = event.start.astimezone(UTC)
        end = event.end.astimezone(UTC)
    except (OverflowError, ValueError):
        return REASON_OUT_OF_RANGE
    if start < EARLIEST or end > LATEST:
        return REASON_OUT_OF_RANGE
    if end - start > MAX_DURATION:
        return REASON_TOO_LONG
    if len(event.attendees) > MAX_ATTENDEES:
        return REASON_TOO_MANY_ATTENDEES
    return None


def bounded(event: Event) -> Event:
    """``event`` with every free-text field cut to its budget (so one field cannot bloat state).

    The event itself when every field is within its budget, as nearly all are.
    """
    if (
        len(event.subject) <= MAX_SUBJECT_CHARS
        and len(event.location) <= MAX_LOCATION_CHARS
        and len(event.online_url) <= MAX_URL_CHARS
        and len(event.body) <= MAX_BODY_CHARS
        and len(event.categories) <= MAX_CATEGORIES
        and all(len(c) <= MAX_NAME_CHARS for c in event.categories)
    ):
        return event
    return replace(
        event,
        subject=clip(event.subject, MAX_SUBJECT_CHARS),
        location=clip(event.location, MAX_LOCATION_CHARS),
        online_url=event.online_url if len(event.online_url) <= MAX_URL_CHARS else "",
        body=clip(event.body, MAX_BODY_CHARS),
        categories=tuple(clip(c, MAX_NAME_CHARS) for c in event.categories[:MAX_CATEGORIES]),
    )
