"""One translation per provider: a corpus event as iCalendar text, as a Microsoft Graph event
resource and as a Google Calendar event resource (the JSON each provider's API returns)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from tests.hostile.model import ORDINARY, PANEL, RECRUITER, Entry, Ev, utc
from tests.scenario.spec import Who

_PARTSTAT = {
    "accepted": "ACCEPTED",
    "tentative": "TENTATIVE",
    "declined": "DECLINED",
    "needs_action": "NEEDS-ACTION",
}
_GRAPH_RESPONSE = {
    "accepted": "accepted",
    "tentative": "tentativelyAccepted",
    "declined": "declined",
    "needs_action": "notResponded",
}
_GOOGLE_RESPONSE = {
    "accepted": "accepted",
    "tentative": "tentative",
    "declined": "declined",
    "needs_action": "needsAction",
}


def ordinary(now: datetime) -> Ev:
    """The ordinary interview every corpus calendar also holds: two days ahead, 14:00 local."""
    start = now + timedelta(days=2, hours=5)
    return Ev(
        subject="Intervju: Olle Ordinär",
        uid="ordinary-1@nordljus.se",
        start=utc(start),
        end=utc(start + timedelta(hours=1)),
        organizer=RECRUITER,
        attendees=(RECRUITER, PANEL, Who(ORDINARY, "Olle Ordinär", "accepted")),
        body="Agenda:\n- Presentation\n- Frågor\n",
        location="Storgatan 1, Umeå",
    )


# --- iCalendar ---------------------------------------------------------------------------------


def ics_text(value: str) -> str:
    """A TEXT value escaped as RFC 5545 wants it."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def _param(value: str) -> str:
    return '"' + value.replace('"', "'") + '"'


def _stamp(value: str) -> str:
    return value.replace("-", "").replace(":", "") + "Z"


def _who(prop: str, who: Who, *, attendee: bool) -> str:
    params = ""
    if who.name:
        params += f";CN={_param(who.name)}"
    if attendee:
        params += f";PARTSTAT={_PARTSTAT[who.response]}"
        params += ";CUTYPE=RESOURCE" if who.resource else ";CUTYPE=INDIVIDUAL"
    return f"{prop}{params}:mailto:{who.address}"


def vevent(ev: Ev) -> str:
    """``ev`` as one VEVENT (CRLF line ends, lines unfolded: parsers must take long lines)."""
    lines = [
        "BEGIN:VEVENT",
        f"UID:{ev.uid}",
        "DTSTAMP:20261101T000000Z",
        f"SUMMARY:{ics_text(ev.subject)}",
    ]
    if ev.start:
        lines.append(f"DTSTART:{_stamp(ev.start)}")
    if ev.end:
        lines.append(f"DTEND:{_stamp(ev.end)}")
    if ev.body:
        lines.append(f"DESCRIPTION:{ics_text(ev.body)}")
    if ev.location:
        lines.append(f"LOCATION:{ics_text(ev.location)}")
    if ev.url:
        lines.append(f"URL:{ev.url}")
    if ev.private:
        lines.append("CLASS:PRIVATE")
    if ev.organizer is not None:
        lines.append(_who("ORGANIZER", ev.organizer, attendee=False))
    lines.extend(_who("ATTENDEE", who, attendee=True) for who in ev.attendees)
    lines.extend(ev.ics_lines)
    lines.append("END:VEVENT")
    return "\r\n".join(lines) + "\r\n"


def calendar(entry: Entry, now: datetime, *, hostile: bool = True) -> bytes:
    """The entry's whole ICS calendar: the ordinary interview first, then the hostile part."""
    body = vevent(ordinary(now))
    if hostile:
        event = entry.hostile_event()
        if event is not None:
            body += vevent(event)
        body += entry.hostile_ics()
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//hostile corpus//EN\r\n"
        + body
        + "END:VCALENDAR\r\n"
    )
    return text.encode("utf-8", "surrogateescape")


# --- Microsoft Graph ---------------------------------------------------------------------------


def _id(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def graph_event(ev: Ev, mailbox: str) -> dict[str, Any]:
    """``ev`` as Graph's calendarView returns it (times in UTC, the zone Prefer header absent)."""
    organizer_is_box = ev.organizer is not None and ev.organizer.address.lower() == mailbox
    me = next((w for w in ev.attendees if w.address.lower() == mailbox), None)
    response = "organizer" if organizer_is_box else _GRAPH_RESPONSE[me.response] if me else "none"
    return {
        "id": "AAMk" + _id(mailbox, ev.uid)[:40],
        "iCalUId": "040000008200E00074C5B7101A82E008" + _id(ev.uid)[:32],
        "type": "singleInstance",
        "seriesMasterId": None,
        "subject": ev.subject,
        "bodyPreview": ev.body[:255],
        "body": {"contentType": "text", "content": ev.body},
        "start": {"dateTime": ev.start + ".0000000", "timeZone": "UTC"},
        "end": {"dateTime": ev.end + ".0000000", "timeZone": "UTC"},
        "isAllDay": False,
        "isCancelled": False,
        "isOrganizer": organizer_is_box,
        "sensitivity": "private" if ev.private else "normal",
        "location": {"displayName": ev.location, "locationType": "default"},
        "isOnlineMeeting": bool(ev.url),
        "onlineMeeting": {"joinUrl": ev.url} if ev.url else None,
        "onlineMeetingUrl": None,
        "organizer": (
            {"emailAddress": {"name": ev.organizer.name, "address": ev.organizer.address}}
            if ev.organizer is not None
            else None
        ),
        "attendees": [
            {
                "type": "resource" if who.resource else "required",
                "status": {
                    "response": _GRAPH_RESPONSE[who.response],
                    "time": "2026-11-01T00:00:00Z",
                },
                "emailAddress": {"name": who.name, "address": who.address},
            }
            for who in ev.attendees
        ],
        "categories": [],
        "responseStatus": {"response": response, "time": "0001-01-01T00:00:00Z"},
        "lastModifiedDateTime": "2026-11-01T00:00:00Z",
        "changeKey": _id("change", ev.uid)[:16],
    }


# --- Google Calendar ---------------------------------------------------------------------------


def google_event(ev: Ev, user: str) -> dict[str, Any]:
    """``ev`` as Google Calendar's events.list returns it for ``user``'s primary calendar."""
    organizer = ev.organizer
    resource: dict[str, Any] = {
        "kind": "calendar#event",
        "etag": '"' + _id("etag", ev.uid)[:16] + '"',
        "id": _id(user, ev.uid)[:26],  # base32hex: 0-9a-v
        "iCalUID": ev.uid,
        "status": "confirmed",
        "summary": ev.subject,
        "description": ev.body,
        "location": ev.location,
        "created": "2026-11-01T00:00:00.000Z",
        "updated": "2026-11-01T00:00:00.000Z",
        "start": {"dateTime": ev.start + "Z", "timeZone": "UTC"},
        "end": {"dateTime": ev.end + "Z", "timeZone": "UTC"},
        "visibility": "private" if ev.private else "default",
        "sequence": 0,
        "eventType": "default",
        "attendees": [
            {
                "email": who.address,
                **({"displayName": who.name} if who.name else {}),
                "responseStatus": _GOOGLE_RESPONSE[who.response],
                **({"organizer": True} if organizer and who.address == organizer.address else {}),
                **({"self": True} if who.address.lower() == user else {}),
                **({"resource": True} if who.resource else {}),
            }
            for who in ev.attendees
        ],
    }
    if organizer is not None:
        resource["organizer"] = {
            "email": organizer.address,
            **({"displayName": organizer.name} if organizer.name else {}),
            **({"self": True} if organizer.address.lower() == user else {}),
        }
        resource["creator"] = dict(resource["organizer"])
    if ev.url:
        resource["hangoutLink"] = ev.url
    return resource
