"""The shape of a hostile-calendar corpus entry: the hostile event, how it reaches us, and what
the service must do with it. Each entry shares its calendar with one ordinary interview, which
must always be drafted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tests.scenario.spec import Who

RECRUITER = Who("lisa.ek@nordljus.se", "Lisa Ek", "accepted")
PANEL = Who("erik.holm@nordljus.se", "Erik Holm", "accepted")
MALLORY = "mallory@example.com"
ORDINARY = "olle.ordinar@example.com"

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # Tuesday 09:00 in Stockholm
"""The instant of every pass unless an entry says otherwise."""


def utc(moment: datetime) -> str:
    """A UTC instant as the corpus writes it: ``2026-12-03T10:00:00``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


THURSDAY_11 = utc(NOW + timedelta(days=2, hours=2))  # Thursday 3 December, 11:00 in Stockholm
THURSDAY_12 = utc(NOW + timedelta(days=2, hours=3))


@dataclass(frozen=True)
class Ev:
    """A hostile event described once, written by each provider's translation.

    Times are UTC strings (``YYYY-MM-DDTHH:MM:SS``) so that absurd ones (year 1, year 9999) can be
    stated at all. ``ics_lines`` are extra iCalendar lines (RRULE, CLASS, X-…) only the ICS
    translation carries; an entry that needs them is ICS-only unless it says otherwise.
    """

    subject: str = "Intervju: Mallory Angrip"
    uid: str = "hostile-1@calendar.example"
    start: str = THURSDAY_11
    end: str = THURSDAY_12
    organizer: Who | None = RECRUITER
    attendees: tuple[Who, ...] = (RECRUITER, PANEL, Who(MALLORY, "Mallory Angrip", "accepted"))
    body: str = ""
    location: str = ""
    url: str = ""
    private: bool = False
    ics_lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Expect:
    """What must happen to the hostile event.

    ``outcome``: ``skipped`` (left out, with one of ``reasons`` in the log or in ``status``),
    ``drafted`` (each of ``victims`` gets exactly one draft), ``ignored`` (not an interview:
    none of ``victims`` gets a draft), or ``handled`` (either drafted cleanly or left out: the
    feed survives, and no victim gets more than one draft).
    """

    outcome: str
    reasons: tuple[str, ...] = ()
    victims: tuple[str, ...] = (MALLORY,)
    must: tuple[str, ...] = ()  # in the victim's draft (text or HTML)
    must_not: tuple[str, ...] = ()  # nowhere in any draft (headers, text, HTML)
    html_must_not: tuple[str, ...] = ()  # not in any HTML part (markup that must be escaped)
    not_in_state: tuple[str, ...] = ()  # never stored in the state directory
    not_in_log: tuple[str, ...] = ()  # never in the log above DEBUG
    state_max_bytes: int = 8 * 1024 * 1024
    calendar_unavailable: bool = False  # the feed itself is refused: one of ``reasons`` is logged,
    # the pass may fail, nothing is drafted from it (the ordinary interview waits too)


@dataclass(frozen=True)
class Entry:
    """One hostile calendar.

    ``event`` is translated for every provider in ``providers``; ``ics`` is raw iCalendar text
    (components) added to the ICS calendar as well or instead. ``feed`` names how an ICS calendar
    is served when not as a file (``gzip-bomb``, ``retry-after``, ``redirect``); ``mailbox``
    names a Maildir trap (``fifo-in-sent``, ``symlinked-drafts``); ``templates`` a template
    override (``raises-for-boom``). ``passes`` > 1 when the trap is repaired between passes (a
    server that stops refusing, a link replaced), as a recruiter or an administrator would.
    """

    name: str
    what: str
    expect: Expect
    event: Ev | Callable[[], Ev] | None = None
    ics: str | Callable[[], str] = ""
    providers: tuple[str, ...] = ("ics",)
    feed: str = "file"
    mailbox: str = ""
    templates: str = ""
    passes: int = 1
    heavy: bool = False
    now: datetime = NOW

    def hostile_event(self) -> Ev | None:
        """The hostile event (built on demand: some are megabytes)."""
        return self.event() if callable(self.event) else self.event

    def hostile_ics(self) -> str:
        """The raw iCalendar part (built on demand)."""
        return self.ics() if callable(self.ics) else self.ics

    def __post_init__(self) -> None:
        if self.event is None and not self.ics and self.feed == "file" and not self.mailbox:
            raise ValueError(f"{self.name}: an entry needs a hostile event")
