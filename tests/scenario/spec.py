"""Provider-neutral calendar events for tests: each connector's test harness writes them in its format.

``EventSpec`` describes an event the way a person would; ``to_ics`` writes specs as one iCalendar
document (used by the ICS and CalDAV harnesses). The Graph and Google fakes translate specs into
their JSON shapes themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar

STOCKHOLM = ZoneInfo("Europe/Stockholm")


@dataclass(frozen=True)
class Who:
    address: str
    name: str = ""
    response: str = "accepted"  # accepted | tentative | declined | needs_action
    resource: bool = False


@dataclass(frozen=True)
class Moved:
    """One occurrence of a series moved: the original start, and where it went."""

    original_start: datetime
    start: datetime
    end: datetime


@dataclass(frozen=True)
class EventSpec:
    uid: str
    subject: str
    start: datetime
    end: datetime
    organizer: Who
    attendees: tuple[Who, ...] = ()
    body: str = ""
    location: str = ""
    online_url: str = ""
    categories: tuple[str, ...] = ()
    cancelled: bool = False
    all_day: bool = False
    rrule: str = ""  # e.g. "FREQ=WEEKLY;COUNT=4"
    exdates: tuple[datetime, ...] = ()
    moved: tuple[Moved, ...] = field(default_factory=tuple)
    sequence: int = 0
    # The TZID an iCalendar file names the times in, when not the IANA name: Outlook publishes
    # calendars with Windows names such as "W. Europe Standard Time" (and a VTIMEZONE of that id).
    tzid: str = ""


_PARTSTAT = {
    "accepted": "ACCEPTED",
    "tentative": "TENTATIVE",
    "declined": "DECLINED",
    "needs_action": "NEEDS-ACTION",
}


def _vevent(spec: EventSpec, start: datetime | date, end: datetime | date) -> icalendar.Event:
    ev = icalendar.Event()
    ev.add("uid", spec.uid)
    ev.add("dtstamp", datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")))
    ev.add("summary", spec.subject)
    ev.add("dtstart", start)
    ev.add("dtend", end)
    if spec.tzid and isinstance(start, datetime):
        ev["dtstart"].params["TZID"] = spec.tzid
        ev["dtend"].params["TZID"] = spec.tzid
    ev.add("sequence", spec.sequence)
    if spec.body:
        ev.add("description", spec.body)
    if spec.location:
        ev.add("location", spec.location)
    if spec.online_url:
        ev.add("url", spec.online_url)
    if spec.categories:
        ev.add("categories", list(spec.categories))
    if spec.cancelled:
        ev.add("status", "CANCELLED")
    organizer = icalendar.vCalAddress(f"mailto:{spec.organizer.address}")
    if spec.organizer.name:
        organizer.params["CN"] = spec.organizer.name
    ev.add("organizer", organizer)
    for who in spec.attendees:
        attendee = icalendar.vCalAddress(f"mailto:{who.address}")
        if who.name:
            attendee.params["CN"] = who.name
        attendee.params["PARTSTAT"] = _PARTSTAT[who.response]
        attendee.params["CUTYPE"] = "RESOURCE" if who.resource else "INDIVIDUAL"
        attendee.params["ROLE"] = "NON-PARTICIPANT" if who.resource else "REQ-PARTICIPANT"
        ev.add("attendee", attendee, encode=0)
    return ev


def vevents(spec: EventSpec) -> list[icalendar.Event]:
    """The VEVENT components of one spec: the master, then one per moved occurrence."""
    if spec.all_day:
        master = _vevent(spec, spec.start.date(), spec.end.date())
    else:
        master = _vevent(spec, spec.start, spec.end)
    if spec.rrule:
        master.add("rrule", icalendar.vRecur.from_ical(spec.rrule))
        for ex in spec.exdates:
            master.add("exdate", ex)
    out = [master]
    for move in spec.moved:
        occurrence = _vevent(spec, move.start, move.end)
        occurrence.add("recurrence-id", move.original_start)
        out.append(occurrence)
    return out


def to_ics(specs: list[EventSpec] | tuple[EventSpec, ...], name: str = "Recruiting") -> bytes:
    """Write ``specs`` as one VCALENDAR, with the VTIMEZONE blocks real clients add."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//recruitmail tests//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", name)
    for spec in specs:
        for ev in vevents(spec):
            cal.add_component(ev)
    cal.add_missing_timezones()  # also one for each ``tzid``, from the times' own zone
    return cal.to_ical()


def one_ics(spec: EventSpec) -> bytes:
    """One event (with its moved occurrences) as its own VCALENDAR, as CalDAV stores it."""
    return to_ics([spec])


def at(day: date, hhmm: str, zone: ZoneInfo = STOCKHOLM) -> datetime:
    """A local wall-clock time on ``day``, e.g. ``at(monday, "14:00")``."""
    hours, minutes = (int(p) for p in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hours, minutes, tzinfo=zone)


def hour_later(start: datetime, minutes: int = 60) -> datetime:
    return start + timedelta(minutes=minutes)
