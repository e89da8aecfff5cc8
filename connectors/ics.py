"""Calendar source for an iCalendar file or published ICS link: re-read, expand, diff with the cursor."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import ssl
import time as clock
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import icalendar
import recurring_ical_events
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.base import ConnectorContext
from daemon.errors import AuthError, ConfigError, CursorExpired, PermanentError, TransientError
from daemon.models import Attendee, Event, Period, Response, SyncResult
from daemon.secrets import load_secret

log = logging.getLogger(__name__)

CURSOR_VERSION = 1
MAX_CALENDAR_BYTES = 64 * 1024 * 1024
"""A published calendar larger than this is refused rather than read into memory."""

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_SECRET_PREFIXES = ("credential:", "file:", "env:")

_PARTSTAT = {
    "ACCEPTED": Response.ACCEPTED,
    "TENTATIVE": Response.TENTATIVE,
    "DECLINED": Response.DECLINED,
    "NEEDS-ACTION": Response.NEEDS_ACTION,
}

# Join links of the common meeting services, found in a description or location when the event
# has no URL property (Outlook and Google put them in the text).
_MEETING_LINK = re.compile(
    r"https://(?:[\w-]+\.)*(?:teams\.microsoft\.com|teams\.live\.com|meet\.google\.com|zoom\.us"
    r"|webex\.com)/[^\s<>\"']+",
    re.IGNORECASE,
)
_MEETING_PROPERTIES = ("X-MICROSOFT-SKYPETEAMSMEETINGURL", "X-GOOGLE-CONFERENCE")


class SourceOptions(BaseModel):
    """Where the calendar is: a local ``.ics`` file or a published ICS link."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path | None = Field(
        None, description="An iCalendar file on this machine, re-read on every pass."
    )
    url: str | None = Field(
        None,
        description=(
            "A published ICS link (https; webcal:// is read as https). The link is a secret: "
            "it may be given as credential:NAME, file:/path or env:NAME instead of the URL itself."
        ),
    )
    ca_file: Path | None = Field(
        None, description="Extra CA certificates (PEM) to trust for the link."
    )
    timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Seconds to wait for the server."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or value.startswith(_SECRET_PREFIXES):
            return value
        return check_url(value)

    @model_validator(mode="after")
    def _one_location(self) -> SourceOptions:
        if (self.path is None) == (self.url is None):
            raise ValueError(
                "give exactly one of path (an .ics file) or url (a published ICS link)"
            )
        return self


def check_url(value: str) -> str:
    """A usable calendar URL: https anywhere, http only on this machine; webcal means https."""
    url = value.strip()
    if url.lower().startswith("webcal://"):
        url = "https://" + url[len("webcal://") :]
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("the calendar link must start with https://")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise ValueError("the calendar link must use https:// (plain http only for 127.0.0.1)")
    return url


def open_source(options: SourceOptions, context: ConnectorContext) -> IcsSource:
    """Build the ICS source for one mailbox."""
    url = options.url
    if url is not None and url.startswith(_SECRET_PREFIXES):
        try:
            url = check_url(load_secret(url, "source.url"))
        except ValueError as exc:
            raise ConfigError(f"source.url: {exc}") from None
    return IcsSource(options, context, url)


@dataclass
class _Fetched:
    body: bytes
    etag: str = ""
    last_modified: str = ""


class IcsSource:
    """Re-reads the calendar on every sync and reports what changed against the cursor's digests."""

    def __init__(self, options: SourceOptions, context: ConnectorContext, url: str | None) -> None:
        self._options = options
        self._context = context
        self._url = url
        self._zone = _zone(context.time_zone)
        self._client: httpx.Client | None = None
        # The last body fetched, for conditional requests. Kept in memory only: calendar data
        # holds candidates' names and must not pile up on disk outside the state database.
        self._cached: _Fetched | None = None

    def sync(self, cursor: str | None, window: Period) -> SyncResult:
        """Everything in ``window`` when ``cursor`` is None; otherwise only what changed since it."""
        previous = _read_cursor(cursor) if cursor is not None else None
        fetched = self._fetch()
        # The same bytes over the same window give the same events: skip parsing and expanding
        # (most of an idle pass over a large calendar).
        source = hashlib.sha256(
            fetched.body + f"|{window.start.isoformat()}|{window.end.isoformat()}".encode()
        ).hexdigest()
        if cursor is not None and previous is not None and _cursor_source(cursor) == source:
            return SyncResult(events=(), removed=(), cursor=cursor, full=False)
        events = events_from_ics(fetched.body, window, self._zone, self._where())
        digests = {event.event_id: _digest(event) for event in events}
        new_cursor = json.dumps(
            {"v": CURSOR_VERSION, "etag": fetched.etag, "source": source, "events": digests},
            separators=(",", ":"),
            sort_keys=True,
        )
        if previous is None:
            return SyncResult(events=tuple(events), removed=(), cursor=new_cursor, full=True)
        changed = tuple(e for e in events if previous.get(e.event_id) != digests[e.event_id])
        removed = tuple(sorted(set(previous) - set(digests)))
        return SyncResult(events=changed, removed=removed, cursor=new_cursor, full=False)

    def close(self) -> None:
        """Release the HTTP connection pool. Safe to call more than once."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _where(self) -> str:
        if self._url is not None:
            return redact(self._url)
        return str(self._options.path)

    def _fetch(self) -> _Fetched:
        if self._url is None:
            assert self._options.path is not None
            return _Fetched(_read_file(self._options.path))
        return self._fetch_url(self._url)

    def _fetch_url(self, url: str) -> _Fetched:
        headers = {"Accept": "text/calendar, */*;q=0.5"}
        if self._cached is not None:
            if self._cached.etag:
                headers["If-None-Match"] = self._cached.etag
            if self._cached.last_modified:
                headers["If-Modified-Since"] = self._cached.last_modified
        where = redact(url)
        try:
            response, content = self._download(url, headers, where)
        except httpx.TimeoutException:
            raise TransientError(f"{where}: the calendar server did not answer in time") from None
        except httpx.HTTPError as exc:
            raise TransientError(
                f"{where}: cannot reach the calendar server ({type(exc).__name__})"
            ) from None
        status = response.status_code
        if status == 304 and self._cached is not None:
            log.debug("ics: %s unchanged (304)", where)
            return self._cached
        if status == 200:
            self._cached = _Fetched(
                content,
                etag=response.headers.get("ETag", ""),
                last_modified=response.headers.get("Last-Modified", ""),
            )
            return self._cached
        if status in (401, 403):
            raise AuthError(
                f"{where}: the server refused the calendar link (HTTP {status}); it may have been "
                "reset: publish the calendar again and put the new link in source.url"
            )
        if status in (404, 410):
            raise PermanentError(
                f"{where}: no calendar at this link (HTTP {status}); was publishing stopped?"
            )
        if status == 429 or status >= 500:
            raise TransientError(
                f"{where}: the calendar server is busy (HTTP {status})",
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        raise PermanentError(f"{where}: unexpected answer from the calendar server (HTTP {status})")

    def _download(
        self, url: str, headers: dict[str, str], where: str
    ) -> tuple[httpx.Response, bytes]:
        """GET with a deadline for the whole answer: a server trickling a byte a second would
        never trip a per-read timeout, and would hang the pass (and a clean stop) for good."""
        deadline = clock.monotonic() + 4 * self._options.timeout_seconds
        body = bytearray()
        with self._http().stream("GET", url, headers=headers) as response:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_CALENDAR_BYTES:
                    raise PermanentError(
                        f"{where}: the calendar is larger than {MAX_CALENDAR_BYTES} bytes"
                    )
                if clock.monotonic() > deadline:
                    raise TransientError(f"{where}: the calendar server is sending too slowly")
        return response, bytes(body)

    def _http(self) -> httpx.Client:
        if self._client is None:
            assert self._url is not None
            loopback = urlsplit(self._url).hostname in _LOOPBACK_HOSTS
            verify: ssl.SSLContext | bool = True
            if self._options.ca_file is not None:
                # The system's trust store plus the extra CA: a private CA adds to, not replaces, it.
                context = ssl.create_default_context()
                try:
                    context.load_verify_locations(cafile=str(self._options.ca_file))
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(
                        f"source.ca_file: cannot load {self._options.ca_file} ({exc})"
                    ) from None
                verify = context
            self._client = httpx.Client(
                timeout=self._options.timeout_seconds,
                follow_redirects=True,
                verify=verify,
                # Proxy and CA variables apply to real links; a loopback link never goes via a proxy.
                trust_env=not loopback,
            )
        return self._client


def redact(url: str) -> str:
    """The link without its secret path and query, fit for logs and error messages."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/…"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PermanentError(f"{path}: no such calendar file") from None
    except PermissionError:
        raise PermanentError(f"{path}: the service may not read this calendar file") from None
    except OSError as exc:
        raise TransientError(f"{path}: cannot read the calendar file ({exc.strerror})") from None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"time zone {name!r} is unknown: use an IANA name such as Europe/Stockholm"
        ) from None


def _cursor_source(cursor: str) -> str:
    """The digest of the bytes and window a cursor was made from ("" for older cursors)."""
    source = json.loads(cursor).get("source", "")
    return source if isinstance(source, str) else ""


def _read_cursor(cursor: str) -> dict[str, str]:
    try:
        data = json.loads(cursor)
    except ValueError:
        raise CursorExpired("the ICS cursor is not readable; a full sync is needed") from None
    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
        raise CursorExpired("the ICS cursor is from another version; a full sync is needed")
    events = data.get("events")
    if not isinstance(events, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in events.items()
    ):
        raise CursorExpired("the ICS cursor is damaged; a full sync is needed")
    return events


def _digest(event: Event) -> str:
    """What the planner cares about in an event; ``updated`` is left out on purpose (feeds such
    as Google's stamp every event anew on each download)."""

    def moment(value: datetime) -> str:
        return value.astimezone(UTC).isoformat()

    def person(a: Attendee | None) -> list[Any] | None:
        if a is None:
            return None
        return [a.address, a.name, a.response.value, a.is_resource, a.is_organizer, a.optional]

    fields = [
        event.event_id,
        event.ical_uid,
        event.recurrence_id,
        event.subject,
        moment(event.start),
        moment(event.end),
        event.body,
        event.all_day,
        event.cancelled,
        event.location,
        event.online_url,
        person(event.organizer),
        [person(a) for a in event.attendees],
        list(event.categories),
    ]
    text = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


# --- iCalendar to events (shared with other sources that receive iCalendar, such as CalDAV) ---


def parse_calendar(data: bytes, where: str) -> icalendar.Calendar:
    """Parse one iCalendar document; ``PermanentError`` (with the line, when known) if it is not one."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].upper()
    if not head.startswith(b"BEGIN:VCALENDAR"):
        start = data[:30].decode("utf-8", "replace")
        shown = " ".join(start.split())
        raise PermanentError(
            f"{where}: not an iCalendar file (it starts with {shown!r}); "
            "check that the link is the ICS link, not the web page"
        )
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except (ValueError, KeyError, IndexError, TypeError):
        # The parser's message quotes the offending line, which may hold a candidate's name:
        # name the line number instead.
        line = _first_bad_line(data)
        at = f" near line {line}" if line else ""
        raise PermanentError(
            f"{where}: the calendar cannot be read: a malformed line{at}"
        ) from None
    if not isinstance(calendar, icalendar.Calendar):
        raise PermanentError(f"{where}: the file holds no VCALENDAR")
    return calendar


def events_from_ics(data: bytes, window: Period, zone: ZoneInfo, where: str) -> list[Event]:
    """The event occurrences of an iCalendar document that overlap ``window``.

    Floating times are read in ``zone`` (unless the calendar names its own X-WR-TIMEZONE), and
    all-day events span local midnights in ``zone``. A broken VEVENT is skipped with a warning.
    """
    return events_from_calendar(parse_calendar(data, where), window, zone, where)


def events_from_calendar(
    calendar: icalendar.Calendar, window: Period, zone: ZoneInfo, where: str
) -> list[Event]:
    """Like ``events_from_ics`` for an already parsed calendar (which is modified)."""
    _drop_broken_events(calendar, where)
    _check_named_zone(calendar, zone, where)
    # The expansion stamps a RECURRENCE-ID on every occurrence, single events included; only
    # members of a series (or a lone override of one) carry it on into the event's identity.
    series = {
        _uid(c)
        for c in calendar.walk("VEVENT")
        if any(c.get(name) is not None for name in ("RRULE", "RDATE", "RECURRENCE-ID"))
    }
    try:
        query = recurring_ical_events.of(calendar, skip_bad_series=True)
        components = list(query.between(window.start, window.end))
    except Exception as exc:  # the library's error types vary by version; none may escape
        raise PermanentError(
            f"{where}: the calendar's recurrences cannot be expanded ({_short(exc)})"
        ) from None
    events: dict[str, Event] = {}
    for component in components:
        try:
            event = _event(component, zone, in_series=_uid(component) in series)
        except _BrokenEvent as exc:
            log.warning("ics: %s: skipping event %s: %s", where, _uid(component), exc)
            continue
        events[event.event_id] = event
    return sorted(events.values(), key=lambda e: (e.start.astimezone(UTC), e.event_id))


class _BrokenEvent(Exception):
    """One VEVENT that cannot become an ``Event``."""


def _uid(component: icalendar.cal.Component) -> str:
    return str(component.get("UID", "(no UID)"))


def _drop_broken_events(calendar: icalendar.Calendar, where: str) -> None:
    """Remove every component of a UID with a broken VEVENT, so that one bad event (or one bad
    override of a series) cannot break the expansion of the others or show a moved occurrence at
    its old time."""
    broken: dict[str, str] = {}
    for component in calendar.walk("VEVENT"):
        problem = _problem(component)
        if problem:
            broken.setdefault(_uid(component), problem)
        elif component.errors:
            # The parser kept going past lines it could not read; the times are sound, so the
            # event stays, but someone should look at the feed.
            names = sorted({str(name or "unreadable line") for name, _ in component.errors})
            log.warning(
                "ics: %s: event %s has lines that cannot be read (%s); using the rest",
                where,
                _uid(component),
                ", ".join(names)[:120],
            )
    if not broken:
        return
    for uid, problem in broken.items():
        log.warning("ics: %s: skipping event %s: %s", where, uid, problem)
    calendar.subcomponents = [
        c for c in calendar.subcomponents if not (c.name == "VEVENT" and _uid(c) in broken)
    ]


def _problem(component: icalendar.cal.Component) -> str:
    if not str(component.get("UID", "")).strip():
        return "it has no UID"
    values: dict[str, date] = {}
    for name in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        prop = component.get(name)
        if prop is None:
            continue
        if isinstance(prop, list):
            return f"it has more than one {name}"
        value = getattr(prop, "dt", None)
        if not isinstance(value, date):
            return f"{name} is not a date or time"
        if isinstance(value, datetime) and value.tzinfo is None and "TZID" in prop.params:
            return f"{name} names an unknown time zone {str(prop.params['TZID'])[:60]!r}"
        values[name] = value
    if "DTSTART" not in values:
        return "it has no DTSTART"
    start, end = values["DTSTART"], values.get("DTEND")
    if end is not None:
        if isinstance(start, datetime) != isinstance(end, datetime):
            return "DTSTART and DTEND mix a date with a time"
        if (
            isinstance(start, datetime)
            and isinstance(end, datetime)
            and (start.tzinfo is None) != (end.tzinfo is None)
        ):
            return "DTSTART and DTEND mix floating and zoned times"
        if end < start:
            return "it ends before it starts"
    return ""


def _check_named_zone(calendar: icalendar.Calendar, zone: ZoneInfo, where: str) -> None:
    """Drop an X-WR-TIMEZONE nobody knows, so that its floating times fall back to ``zone``.

    recurring-ical-events applies a valid X-WR-TIMEZONE to floating times itself; the ones left
    floating after expansion are read in the recruiter's zone by ``_moment``.
    """
    named = calendar.get("X-WR-TIMEZONE")
    if named is None:
        return
    try:
        ZoneInfo(str(named).strip())
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("ics: %s: unknown X-WR-TIMEZONE %r; using %s", where, str(named)[:60], zone.key)
        del calendar["X-WR-TIMEZONE"]


def _event(component: icalendar.cal.Component, zone: ZoneInfo, *, in_series: bool) -> Event:
    uid = _uid(component)
    start_value = component.get("DTSTART")
    if start_value is None:
        raise _BrokenEvent("it has no DTSTART")
    raw_start = start_value.dt
    all_day = not isinstance(raw_start, datetime)
    start = _moment(raw_start, zone)
    end = _end(component, raw_start, start, zone)
    if end < start:
        raise _BrokenEvent("it ends before it starts")

    recurrence_id = ""
    occurrence = component.get("RECURRENCE-ID")
    if occurrence is not None and in_series:
        recurrence_id = _moment(occurrence.dt, zone).astimezone(UTC).isoformat()
    event_id = f"{uid}/{recurrence_id}" if recurrence_id else uid

    body = _text(component.get("DESCRIPTION"))
    if not body.strip():
        body = _html_description(component)
    location = " ".join(_text(component.get("LOCATION")).split())
    return Event(
        event_id=event_id,
        ical_uid=uid,
        subject=" ".join(_text(component.get("SUMMARY")).split()),
        start=start,
        end=end,
        recurrence_id=recurrence_id,
        body=body,
        all_day=all_day,
        cancelled=str(component.get("STATUS", "")).upper() == "CANCELLED",
        location=location,
        online_url=_online_url(component, body, location),
        organizer=_organizer(component),
        attendees=tuple(_attendees(component)),
        categories=tuple(_categories(component)),
        updated=_updated(component),
    )


def _moment(value: date, zone: tzinfo) -> datetime:
    """An aware datetime: dates become local midnight in ``zone``, floating times get ``zone``."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=zone)
    if value.tzinfo is None:
        return value.replace(tzinfo=zone)
    return value


def _end(
    component: icalendar.cal.Component, raw_start: date, start: datetime, zone: ZoneInfo
) -> datetime:
    end_value = component.get("DTEND")
    if end_value is not None:
        raw_end = end_value.dt
        if isinstance(raw_start, datetime) != isinstance(raw_end, datetime):
            raise _BrokenEvent("DTSTART and DTEND mix a date with a time")
        return _moment(raw_end, zone)
    duration = component.get("DURATION")
    if duration is not None and isinstance(duration.dt, timedelta):
        if isinstance(raw_start, datetime):
            # RFC 5545: a duration in days keeps the wall clock across DST; one in hours does not.
            return (start.astimezone(UTC) + duration.dt).astimezone(start.tzinfo)
        return _moment(raw_start + duration.dt, zone)
    if isinstance(raw_start, datetime):
        return start
    return _moment(raw_start + timedelta(days=1), zone)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).replace("\r\n", "\n").replace("\r", "\n")


def _html_description(component: icalendar.cal.Component) -> str:
    alt = component.get("X-ALT-DESC")
    if alt is None:
        return ""
    if isinstance(alt, list):
        alt = next((a for a in alt if "html" in str(a.params.get("FMTTYPE", "")).lower()), alt[0])
    return html_to_text(str(alt))


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.chunks.append("\n")
        if tag == "li":
            self.chunks.append("- ")
        if tag == "a":
            href = dict(attrs).get("href") or ""
            if href.startswith("https://"):
                self.chunks.append(f" {href} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCKS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML description: block elements become lines, tags go."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = [" ".join(line.split()) for line in "".join(extractor.chunks).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _online_url(component: icalendar.cal.Component, body: str, location: str) -> str:
    url = _text(component.get("URL")).strip()
    if url.startswith("https://"):
        return url
    for name in _MEETING_PROPERTIES:
        value = _text(component.get(name)).strip()
        if value.startswith("https://"):
            return value
    for text in (location, body):
        match = _MEETING_LINK.search(text)
        if match:
            return match.group(0).rstrip(".,;:)]>")
    return ""


def _addresses(component: icalendar.cal.Component, name: str) -> Iterator[Any]:
    value = component.get(name)
    if value is None:
        return
    yield from value if isinstance(value, list) else [value]


def _address(value: Any) -> str:
    text = str(value).strip()
    if text.lower().startswith("mailto:"):
        return text
    # Some servers put a urn:uuid in the value and the address in the EMAIL parameter.
    return str(getattr(value, "params", {}).get("EMAIL", text))


def _person(value: Any, *, is_organizer: bool) -> Attendee | None:
    address = _address(value)
    if "@" not in address:
        return None
    params = getattr(value, "params", {})
    cutype = str(params.get("CUTYPE", "")).upper()
    return Attendee(
        address=address,
        name=" ".join(str(params.get("CN", "")).split()),
        response=_PARTSTAT.get(str(params.get("PARTSTAT", "")).upper(), Response.NONE),
        is_resource=cutype in ("ROOM", "RESOURCE"),
        is_organizer=is_organizer,
        optional=str(params.get("ROLE", "")).upper() == "OPT-PARTICIPANT",
    )


def _organizer(component: icalendar.cal.Component) -> Attendee | None:
    for value in _addresses(component, "ORGANIZER"):
        return _person(value, is_organizer=True)
    return None


def _attendees(component: icalendar.cal.Component) -> Iterable[Attendee]:
    seen: set[str] = set()
    for value in _addresses(component, "ATTENDEE"):
        attendee = _person(value, is_organizer=False)
        if attendee is not None and attendee.address not in seen:
            seen.add(attendee.address)
            yield attendee


def _categories(component: icalendar.cal.Component) -> Iterable[str]:
    value = component.get("CATEGORIES")
    if value is None:
        return
    seen: set[str] = set()
    for group in value if isinstance(value, list) else [value]:
        for category in getattr(group, "cats", [group]):
            name = " ".join(str(category).split())
            if name and name not in seen:
                seen.add(name)
                yield name


def _updated(component: icalendar.cal.Component) -> datetime | None:
    value = component.get("LAST-MODIFIED")
    moment = getattr(value, "dt", None)
    if isinstance(moment, datetime):
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return None


def _first_bad_line(data: bytes) -> int:
    """The number of the first physical line that is not an iCalendar content line, or 0."""
    content_line = re.compile(rb"^[A-Za-z0-9-]+[;:]")
    for number, line in enumerate(data.splitlines(), start=1):
        if line.startswith((b" ", b"\t")) or not line.strip():
            continue  # a folded continuation, or a stray blank line most readers forgive
        if not content_line.match(line):
            return number
    return 0


def _short(exc: BaseException) -> str:
    """An exception's message cut short: parser messages quote whole lines of calendar data."""
    text = " ".join(str(exc).split())
    return text[:120] + ("…" if len(text) > 120 else "")
