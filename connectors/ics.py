"""Calendar source for an iCalendar file or published ICS link: re-read, expand, diff with the cursor."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import stat
import time as clock
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recruitmail.connectors.tls import tls_context
from recruitmail.contracts import limits
from recruitmail.contracts.connector import ConnectorContext
from recruitmail.contracts.errors import (
    AuthError,
    ConfigError,
    CursorExpired,
    PermanentError,
    TransientError,
)
from recruitmail.contracts.models import Attendee, Event, Period, Response, SkippedEvent, SyncResult
from recruitmail.contracts.secrets import load_secret

if TYPE_CHECKING:
    import httpx
    import icalendar

# httpx, icalendar, recurring-ical-events and dateutil are imported where they are used: an idle
# pass over a file whose bytes did not change reads nothing with them, and a file needs no httpx.

log = logging.getLogger(__name__)

CURSOR_VERSION = 2
"""2: events' digests from ``repr`` and timestamps (a cursor of version 1 asks for a full sync)."""
MAX_CALENDAR_BYTES = limits.MAX_FEED_BYTES
"""A published calendar or file larger than this is refused rather than read into memory."""

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
        digest = hashlib.sha256(fetched.body)  # no copy of a large body
        digest.update(f"|{window.start.isoformat()}|{window.end.isoformat()}".encode())
        source = digest.hexdigest()
        if cursor is not None and previous is not None and _cursor_source(cursor) == source:
            return SyncResult(events=(), removed=(), cursor=cursor, full=False)
        parsed = read_ics(fetched.body, window, self._zone, self._where())
        events, skipped = parsed.events, tuple(parsed.skipped)
        digests = {event.event_id: _digest(event) for event in events}
        new_cursor = json.dumps(
            {"v": CURSOR_VERSION, "etag": fetched.etag, "source": source, "events": digests},
            separators=(",", ":"),
            sort_keys=True,
        )
        if previous is None:
            return SyncResult(
                events=tuple(events), removed=(), cursor=new_cursor, full=True, skipped=skipped
            )
        changed = tuple(e for e in events if previous.get(e.event_id) != digests[e.event_id])
        removed = tuple(sorted(set(previous) - set(digests)))
        return SyncResult(
            events=changed, removed=removed, cursor=new_cursor, full=False, skipped=skipped
        )

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
        # Ask for the bytes as they are: a compressed answer is a way to make a small download
        # expand to gigabytes. A server that compresses anyway is decoded with an output limit.
        headers = {"Accept": "text/calendar, */*;q=0.5", "Accept-Encoding": "identity"}
        if self._cached is not None:
            if self._cached.etag:
                headers["If-None-Match"] = self._cached.etag
            if self._cached.last_modified:
                headers["If-Modified-Since"] = self._cached.last_modified
        import httpx

        where = redact(url)
        try:
            response, content = self._download(url, headers, where)
        except httpx.TimeoutException:
            raise TransientError(f"{where}: the calendar server did not answer in time") from None
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise ConfigError(
                    f"{where}: the server's certificate is not trusted; set source.ca_file (or "
                    "SSL_CERT_FILE / REQUESTS_CA_BUNDLE) to the CA that signed it"
                ) from None
            raise TransientError(
                f"{where}: cannot reach the calendar server ({type(exc).__name__})"
            ) from None
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
                retry_after=retry_after(response.headers.get("Retry-After"), where),
            )
        if 300 <= status < 400:
            raise PermanentError(
                f"{where}: the calendar server redirected without a usable Location (HTTP {status})"
            )
        raise PermanentError(f"{where}: unexpected answer from the calendar server (HTTP {status})")

    def _download(
        self, url: str, headers: dict[str, str], where: str
    ) -> tuple[httpx.Response, bytes]:
        """GET with a deadline for the whole answer (a server trickling a byte a second would
        never trip a per-read timeout), following at most ``MAX_REDIRECTS`` redirects, each
        checked against the same policy as the configured link."""
        deadline = clock.monotonic() + 4 * self._options.timeout_seconds
        for _ in range(MAX_REDIRECTS + 1):
            with self._http().stream("GET", url, headers=headers) as response:
                if response.status_code in _REDIRECTS and "Location" in response.headers:
                    url = next_hop(url, response.headers["Location"], where)
                    log.info("ics: %s redirects to %s", where, redact(url))
                    continue
                decoder = _Decoder(response.headers.get("Content-Encoding", ""), where)
                body = bytearray()
                for chunk in response.iter_raw():
                    decoder.feed(chunk, body)
                    if clock.monotonic() > deadline:
                        raise TransientError(f"{where}: the calendar server is sending too slowly")
                decoder.finish(body)
                return response, bytes(body)
        raise PermanentError(f"{where}: more than {MAX_REDIRECTS} redirects; not followed")

    def _http(self) -> httpx.Client:
        import httpx

        if self._client is None:
            assert self._url is not None
            loopback = urlsplit(self._url).hostname in _LOOPBACK_HOSTS
            self._client = httpx.Client(
                timeout=self._options.timeout_seconds,
                follow_redirects=False,  # followed by hand: every hop is checked
                # The one trust store of every connector (ca_file, else SSL_CERT_FILE /
                # REQUESTS_CA_BUNDLE / …, else the system's).
                verify=tls_context(self._options.ca_file),
                # Proxy variables apply to real links; a loopback link never goes via a proxy.
                trust_env=not loopback,
            )
        return self._client


MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


def next_hop(current: str, location: str, where: str) -> str:
    """The URL a redirect points to, if the link policy allows it (``check_url``): https
    anywhere, plain http only on this machine, and never from another machine to this one."""
    target = urljoin(current, location.strip())
    try:
        checked = check_url(target)
    except ValueError:
        raise PermanentError(
            f"{where}: the calendar server redirected to a link that is not allowed "
            f"({redact(target)}; calendar links must use https://)"
        ) from None
    if (
        urlsplit(checked).hostname in _LOOPBACK_HOSTS
        and urlsplit(current).hostname not in _LOOPBACK_HOSTS
    ):
        raise PermanentError(
            f"{where}: the calendar server redirected to this machine ({redact(checked)}); "
            "not followed"
        )
    return checked


class _Decoder:
    """Content-Encoding undone with an output limit per call, so memory stays bounded before
    the size check. One gzip or deflate layer is accepted; stacked encodings are refused."""

    def __init__(self, header: str, where: str) -> None:
        self._where = where
        codings = [c.strip().lower() for c in header.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if len(codings) > 1:
            raise PermanentError(
                f"{where}: the calendar server stacks encodings ({', '.join(codings)[:60]}); "
                "refused"
            )
        self._coding = codings[0] if codings else ""
        if self._coding in ("gzip", "x-gzip"):
            self._wbits = 16 + zlib.MAX_WBITS
        elif self._coding == "deflate":
            self._wbits = 32 + zlib.MAX_WBITS  # zlib or gzip header, as servers send both
        elif self._coding:
            raise PermanentError(
                f"{where}: the calendar server sent an encoding this service does not read "
                f"({self._coding[:30]}); it was asked for plain bytes"
            )
        else:
            self._wbits = 0
        self._inflater = zlib.decompressobj(self._wbits) if self._wbits else None

    def _too_big(self) -> PermanentError:
        return PermanentError(
            f"{self._where}: the calendar is larger than {limits.MAX_FEED_BYTES} bytes"
        )

    def feed(self, data: bytes, body: bytearray) -> None:
        """Append the decoded bytes of ``data`` to ``body``, at most a mebibyte at a time;
        ``PermanentError`` as soon as ``body`` would pass ``limits.MAX_FEED_BYTES``."""
        if self._inflater is None:
            if len(body) + len(data) > limits.MAX_FEED_BYTES:
                raise self._too_big()
            body += data
            return
        pending = data
        try:
            while pending:
                room = limits.MAX_FEED_BYTES - len(body)
                piece = self._inflater.decompress(pending, min(room + 1, _INFLATE_STEP))
                if len(piece) > room:
                    raise self._too_big()
                body += piece
                if self._inflater.eof:
                    # Concatenated gzip members are one stream; anything else after the end is
                    # ignored.
                    rest = self._inflater.unused_data
                    self._inflater = zlib.decompressobj(self._wbits)
                    pending = rest if rest.startswith(b"\x1f\x8b") else b""
                else:
                    pending = self._inflater.unconsumed_tail
        except zlib.error:
            raise PermanentError(
                f"{self._where}: the calendar server sent damaged {self._coding} data"
            ) from None

    def finish(self, body: bytearray) -> None:
        """Append what the decompressor still holds (bounded like ``feed``)."""
        if self._inflater is None:
            return
        while True:
            room = limits.MAX_FEED_BYTES - len(body)
            try:
                rest = self._inflater.flush(min(room + 1, _INFLATE_STEP))
            except zlib.error:
                return
            if len(rest) > room:
                raise self._too_big()
            body += rest
            if len(rest) < min(room + 1, _INFLATE_STEP):
                return


_INFLATE_STEP = 1024 * 1024
"""Decompressed bytes produced per call: the only transient copy a compressed answer costs."""


def redact(url: str) -> str:
    """The link without its secret path and query, fit for logs and error messages."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/…"


def retry_after(value: str | None, where: str) -> float | None:
    """A Retry-After header (seconds or an HTTP date) in seconds, capped at an hour (logged)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            moment = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    capped = limits.capped_retry_after(seconds)
    if capped < seconds:
        log.warning("%s asked to wait %.0f seconds; waiting %.0f at most", where, seconds, capped)
    return capped


def _read_file(path: Path) -> bytes:
    """The calendar file, refused (never read) when it is not a regular file or is larger than
    ``limits.MAX_FEED_BYTES``: a FIFO would hang the pass, a huge file would fill memory."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise PermanentError(f"{path}: no such calendar file") from None
    except PermissionError:
        raise PermanentError(f"{path}: the service may not read this calendar file") from None
    except OSError as exc:
        raise TransientError(f"{path}: cannot read the calendar file ({exc.strerror})") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise PermanentError(f"{path}: not a regular file; give an .ics file")
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            if info.st_size > limits.MAX_FEED_BYTES:
                # One huge invitation must not cost the calendar: read it as a stream, keeping
                # only the head of each oversized event (enough to skip it with its reason).
                data = _without_oversized_events(handle, path)
            else:
                data = handle.read(info.st_size + 1)
                if len(data) > info.st_size:  # it grew while being read: the rest, bounded
                    data += handle.read(limits.MAX_FEED_BYTES + 1 - len(data))
    except OSError as exc:
        raise TransientError(f"{path}: cannot read the calendar file ({exc.strerror})") from None
    finally:
        os.close(descriptor)
    if len(data) > limits.MAX_FEED_BYTES:
        raise PermanentError(
            f"{path}: the calendar file is larger than {limits.MAX_FEED_BYTES} bytes; refused"
        )
    return data


_READ_PIECE = 64 * 1024


def _without_oversized_events(handle: IO[bytes], path: Path) -> bytes:
    """A calendar file larger than the feed budget, with every event over
    ``limits.MAX_EVENT_BYTES`` cut to its first ``MAX_EVENT_BYTES + 1`` bytes: still over the
    event budget, so it is skipped with its reason while every other event is read. Memory stays
    within the feed budget whatever the file holds (lines are read in bounded pieces)."""
    out = bytearray()
    event: bytearray | None = None  # the VEVENT being read, while it is one
    at_line_start = True
    while piece := handle.readline(_READ_PIECE):
        head = piece[:12].upper() if at_line_start else b""
        at_line_start = piece.endswith(b"\n")
        if event is None:
            if head.startswith(b"BEGIN:VEVENT"):
                event = bytearray(piece)
            else:
                out += piece
        elif head.startswith(b"END:VEVENT"):
            out += event
            if not event.endswith(b"\n"):
                out += b"\r\n"
            out += piece
            event = None
        elif len(event) <= limits.MAX_EVENT_BYTES:
            event += piece[: limits.MAX_EVENT_BYTES + 1 - len(event)]
        if len(out) > limits.MAX_FEED_BYTES:
            raise PermanentError(
                f"{path}: the calendar file is larger than {limits.MAX_FEED_BYTES} bytes even "
                "without its oversized events; refused"
            )
    if event is not None:
        out += event  # a file that ends inside an event: the parser says so
    return bytes(out)


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
    as Google's stamp every event anew on each download).

    The ``repr`` of plain values (strings, numbers, booleans, tuples) and instants as POSIX
    timestamps: a few microseconds an event, where JSON and ISO dates took three times as long.
    Should another Python write a value differently, events look changed once; nothing is lost.
    """

    def person(a: Attendee | None) -> tuple[Any, ...] | None:
        if a is None:
            return None
        return (a.address, a.name, a.response.value, a.is_resource, a.is_organizer, a.optional)

    fields = (
        event.event_id,
        event.ical_uid,
        event.recurrence_id,
        event.subject,
        event.start.timestamp(),
        event.end.timestamp(),
        event.body,
        event.all_day,
        event.cancelled,
        event.location,
        event.online_url,
        person(event.organizer),
        tuple(map(person, event.attendees)),
        tuple(event.categories),
    )
    text = repr(fields).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=12).hexdigest()


# --- iCalendar to events (shared with other sources that receive iCalendar, such as CalDAV) ---
#
# Anyone can put an event into a calendar (an invitation is enough), so everything a calendar
# controls is bounded before the iCalendar library sees it: the document is cut into its
# top-level components on the byte level, each component is measured and checked (size,
# attendees, recurrence frequency, time zone) and parsed on its own, and each series is expanded
# by a generator that stops at the budget. One bad component is skipped with a reason
# (``SkippedEvent``); it never costs the others, the feed or the mailbox.

# The one scan of a document (``_split``): every BEGIN and END line, and the lines the checks
# before parsing read. It looks for line breaks rather than line starts (``^`` is tried at every
# byte), so the first line of the document is matched on its own by ``_FIRST_LINE``.
_SCAN_LINE = re.compile(
    rb"\n(?:(BEGIN|END):([A-Za-z0-9-]+)[ \t]*\r?$"
    rb"|(UID|DTSTART|DTEND|RRULE|EXRULE|RDATE|RECURRENCE-ID)[;:])",
    re.MULTILINE | re.IGNORECASE,
)
_FIRST_LINE = re.compile(
    rb"(?:(BEGIN|END):([A-Za-z0-9-]+)[ \t]*\r?$"
    rb"|(UID|DTSTART|DTEND|RRULE|EXRULE|RDATE|RECURRENCE-ID)[;:])",
    re.MULTILINE | re.IGNORECASE,
)
_PARAMETERS = re.compile(rb"(?:;[^:\r\n]*)?:")
"""From the end of a property's name to the start of its value (no colon among the parameters)."""
_TZID_LINE = re.compile(rb"^TZID(?:;[^:\r\n]*)?:", re.MULTILINE | re.IGNORECASE)
_ATTENDEE_LINE = re.compile(rb"^ATTENDEE[;:]", re.MULTILINE | re.IGNORECASE)
_ATTENDEES_ROOM = len(b"\nATTENDEE:") * (limits.MAX_ATTENDEES + 1)
"""The fewest bytes a component with more than ``MAX_ATTENDEES`` attendee lines can have: a
smaller one is not searched for them."""
_ZONE_PART_LINE = re.compile(
    rb"^BEGIN:(?:STANDARD|DAYLIGHT)[ \t]*\r?$", re.MULTILINE | re.IGNORECASE
)
_TZID_PARAM = re.compile(rb";TZID=(\"[^\"\r\n]*\"|[^;:\r\n]*)", re.IGNORECASE)
_SUB_DAILY = frozenset({"SECONDLY", "MINUTELY", "HOURLY"})
_ZONE_FREQUENCIES = frozenset({"YEARLY", "MONTHLY"})
"""Real VTIMEZONE parts change offset at most a few times a year; the iCalendar library lists
every transition of a part's rule up to 2038 when it builds the zone."""


@dataclass
class PassBudget:
    """What one sync may still spend on parsing: wall time and events returned.

    One budget is shared by every document a sync reads (CalDAV reads one per calendar object), so
    that a calendar of many small hostile objects is bounded like one large file.
    """

    deadline: float
    occurrences_left: int = limits.MAX_OCCURRENCES_PER_PASS

    @classmethod
    def start(cls, seconds: float = limits.PASS_SECONDS) -> PassBudget:
        return cls(deadline=clock.monotonic() + seconds)

    def spent(self) -> bool:
        return self.occurrences_left <= 0 or clock.monotonic() > self.deadline


@dataclass
class Parsed:
    """The events of an iCalendar document in a window, and what was left out and why."""

    events: list[Event] = field(default_factory=list)
    skipped: list[SkippedEvent] = field(default_factory=list)


@dataclass(slots=True)
class _Raw:
    """One top-level component of the document, as byte offsets, with what the checks before
    parsing read of its lines (gathered by ``_split``'s one scan of the document: the component's
    bytes are not searched again, once per question)."""

    name: str
    start: int
    end: int
    uids: list[int] = field(default_factory=list)
    """Where the value of each UID line begins."""
    dtstart: int = -1
    """Where the value of the first DTSTART line begins (-1: none); DTEND likewise."""
    dtend: int = -1
    rules: list[int] = field(default_factory=list)
    """Where each RRULE or EXRULE line continues after its name."""
    series: bool = False
    """Whether it has an RRULE, RDATE, EXRULE or RECURRENCE-ID line."""


def check_calendar_bytes(data: bytes, where: str) -> None:
    """``PermanentError`` unless ``data`` looks like an iCalendar document (and not a web page)."""
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n")[:15].upper()  # a slice: no copy
    if not head.startswith(b"BEGIN:VCALENDAR"):
        start = data[:30].decode("utf-8", "replace")
        shown = " ".join(start.split())
        raise PermanentError(
            f"{where}: not an iCalendar file (it starts with {shown!r}); "
            "check that the link is the ICS link, not the web page"
        )


def _split(data: bytes) -> tuple[bytes, list[_Raw]]:
    """The calendar's own properties (as one VCALENDAR without components) and the offsets of its
    top-level components, without copying them. Several VCALENDARs in one file are read as one."""
    properties: list[bytes] = []
    size = 0
    components: list[_Raw] = []
    stack: list[str] = []  # the names of the components open at this point
    gap = 0  # where the calendar's own properties resume after a component
    raw: _Raw | None = None  # the open top-level component
    first = _FIRST_LINE.match(data)
    matches = _SCAN_LINE.finditer(data)
    for match in itertools.chain((first,) if first is not None else (), matches):
        if match.lastindex == 3:  # a line the checks read
            if raw is not None:
                _note(data, raw, match.group(3).upper(), match.end())
            continue
        begin = match.group(1).upper() == b"BEGIN"
        name = match.group(2).upper().decode("ascii")
        line_start = match.start(1)
        line_end = data.find(b"\n", match.end())
        after = len(data) if line_end < 0 else line_end + 1
        if begin:
            stack.append(name)
            if len(stack) == 1:
                gap = after
            elif len(stack) == 2:
                chunk = data[gap:line_start]
                if size + len(chunk) <= limits.MAX_EVENT_BYTES:
                    properties.append(chunk)
                    size += len(chunk)
                raw = _Raw(name, line_start, line_start)
            continue
        if name not in stack:
            continue  # a stray END: left in place for the parser to refuse that component
        depth = len(stack)
        while stack.pop() != name:
            pass
        if depth >= 2 and len(stack) < 2:
            assert raw is not None
            raw.end = after
            components.append(raw)
            raw = None
            gap = after
        if not stack:
            chunk = data[gap:line_start]
            if size + len(chunk) <= limits.MAX_EVENT_BYTES:
                properties.append(chunk)
                size += len(chunk)
    if stack:
        # Cut off in the middle (a download that broke off): reading what is there would report
        # every event after the cut as removed.
        raise ValueError("the calendar ends in the middle")
    shell = (
        b"BEGIN:VCALENDAR\r\n" + b"".join(p for p in properties if p.strip()) + b"END:VCALENDAR\r\n"
    )
    return shell, components


def _note(data: bytes, raw: _Raw, name: bytes, after: int) -> None:
    """Record a line of the open component ``raw`` whose name and first ``;`` or ``:`` end at
    ``after``."""
    if name in (b"UID", b"DTSTART", b"DTEND"):
        parameters = _PARAMETERS.match(data, after - 1)
        if parameters is None:
            return  # a colon among the parameters: not read before parsing
        if name == b"UID":
            raw.uids.append(parameters.end())
        elif name == b"DTSTART":
            if raw.dtstart < 0:
                raw.dtstart = parameters.end()
        elif raw.dtend < 0:
            raw.dtend = parameters.end()
    else:
        raw.series = True
        if name in (b"RRULE", b"EXRULE"):
            raw.rules.append(after)


def _unfolded(data: bytes, start: int, end: int, limit: int = 4096) -> bytes:
    """The rest of the content line that begins its value at ``start``, folded lines joined."""
    line = bytearray()
    while len(line) <= limit:
        newline = data.find(b"\n", start, end)
        stop = end if newline < 0 else newline
        line += data[start:stop].rstrip(b"\r")
        if newline < 0 or data[newline + 1 : newline + 2] not in (b" ", b"\t"):
            break
        start = newline + 2
    return bytes(line[:limit])


def _first_value(pattern: re.Pattern[bytes], data: bytes, raw: _Raw) -> str:
    match = pattern.search(data, raw.start, raw.end)
    if match is None:
        return ""
    return _unfolded(data, match.end(), raw.end, 500).strip().decode("utf-8", "replace")


def _uid_value(data: bytes, raw: _Raw) -> str:
    """The value of the component's first UID line (folded lines joined), or ""."""
    if not raw.uids:
        return ""
    return _unfolded(data, raw.uids[0], raw.end, 500).strip().decode("utf-8", "replace")


def _rules(data: bytes, raw: _Raw) -> Iterator[dict[str, list[str]]]:
    """Every RRULE and EXRULE of a component (folded lines joined), as upper-case parts."""
    for after in raw.rules:
        line = _unfolded(data, after, raw.end)
        text = line.decode("ascii", "replace").upper()
        text = text.rpartition(":")[2] if ":" in text else text
        parts: dict[str, list[str]] = {}
        for item in text.split(";"):
            key, _, value = item.partition("=")
            parts[key.strip()] = [v for v in value.split(",") if v.strip()]
        yield parts


def _sub_daily(rule: dict[str, list[str]]) -> bool:
    """A rule that may fire more than once a day: a sub-daily FREQ, or several hours, minutes or
    seconds per day (``FREQ=DAILY;BYMINUTE=0,1,…,59``), or a FREQ nobody can read."""
    freq = (rule.get("FREQ") or [""])[0].strip()
    if freq in _SUB_DAILY or freq not in ("DAILY", "WEEKLY", "MONTHLY", "YEARLY"):
        return True
    per_day = 1
    for part in ("BYHOUR", "BYMINUTE", "BYSECOND"):
        per_day *= max(1, len(rule.get(part, [])))
    return per_day > 1


def _rule_problem(component: icalendar.cal.Component) -> str:
    """Why the RRULEs of ``component`` are refused before expansion, or "".

    The rule library searches for the next match step by step and checks the end of a rule only
    on matches: ``INTERVAL=0`` never advances, and a rule no day can satisfy (``FREQ=DAILY;
    BYMONTH=2;BYMONTHDAY=30``) is searched day by day up to the year 9999 (seconds per event).
    """
    rules: list[Any] = []
    for name in ("RRULE", "EXRULE"):
        value = component.get(name)
        if value is not None:
            rules.extend(value if isinstance(value, list) else [value])
    for rule in rules:
        for value in rule.get("INTERVAL", []):
            if not isinstance(value, int) or value < 1:
                return "its recurrence rule cannot be read (INTERVAL)"
        if _never_matches(rule):
            return "its recurrence rule matches no day"
    return ""


_DAY_FILTERS = ("BYMONTH", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYDAY")


def _rule_text(parts: dict[str, Any]) -> str:
    from icalendar.prop import vRecur

    recur: Any = vRecur(parts)
    return str(recur.to_ical().decode("ascii", "replace"))


def _never_matches(rule: Any) -> bool:
    """Whether no day at all satisfies the rule's day filters, tried as a yearly rule (a superset:
    ordinals and BYSETPOS left out) over the last thirty years the rule library knows, which
    hold every combination of leap year and weekday. A few milliseconds."""
    from dateutil.rrule import rrulestr

    parts = {str(k).upper(): v for k, v in rule.items()}
    if not any(name in parts for name in _DAY_FILTERS):
        return False
    probe = ["FREQ=YEARLY", "COUNT=1"]
    for name in _DAY_FILTERS:
        if name not in parts:
            continue
        values = _rule_text({name: parts[name]}).partition("=")[2]
        if name == "BYDAY":
            values = ",".join(v.lstrip("+-0123456789") for v in values.split(","))
        probe.append(f"{name}={values}")
    if "WKST" in parts:
        probe.append(_rule_text({"WKST": parts["WKST"]}))
    try:
        found = list(rrulestr(";".join(probe), dtstart=datetime(9970, 1, 1)))
    except (ValueError, TypeError, OverflowError, IndexError):
        return True  # the filters themselves cannot be read
    return not found


def _zone_problem(data: bytes, raw: _Raw) -> str:
    """Why a VTIMEZONE is ignored, or ""."""
    if raw.end - raw.start > limits.MAX_EVENT_BYTES:
        return "it is larger than 256 KiB"
    parts = sum(1 for _ in _ZONE_PART_LINE.finditer(data, raw.start, raw.end))
    if parts > limits.MAX_TIMEZONE_PARTS:
        return f"it has more than {limits.MAX_TIMEZONE_PARTS} parts"
    for rule in _rules(data, raw):
        if _sub_daily(rule) or (rule.get("FREQ") or [""])[0].strip() not in _ZONE_FREQUENCIES:
            return "its offsets change more often than monthly"
    return ""


def _known_zone(tzid: str) -> bool:
    """Whether the iCalendar library resolves ``tzid`` without the calendar's VTIMEZONE."""
    import icalendar.timezone

    try:
        return icalendar.timezone.tzp.timezone(tzid.strip().strip('"').strip("/")) is not None
    except Exception:  # noqa: BLE001 - a lookup of an odd name may fail in any way
        return False


_MARGIN = timedelta(days=2)
"""More than any UTC offset: a date read without its zone is still on the right side."""


def _line_date(data: bytes, raw: _Raw, at: int) -> date | None:
    """The calendar date of a DTSTART or DTEND value that begins at ``at`` (-1: none), read from
    the bytes (``DTSTART;TZID=…:20260310T100000`` → 2026-03-10), or None."""
    if at < 0:
        return None
    value = data[at : min(raw.end, at + 8)]
    if len(value) < 8 or not value.isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


_EARLIEST_DAY = limits.EARLIEST.date()
_LATEST_DAY = limits.LATEST.date()


def _outside(data: bytes, raw: _Raw, first_day: date, last_day: date) -> bool:
    """A single event (no series, no override) that starts after ``last_day`` or ends before
    ``first_day`` (the window's, widened by ``_MARGIN``), by its dates alone: it cannot have an
    occurrence in the window, so it is not parsed."""
    if raw.series:
        return False
    start = _line_date(data, raw, raw.dtstart)
    if start is None or not _EARLIEST_DAY <= start < _LATEST_DAY:
        return False  # absurd dates are read, so that the event is reported as skipped
    if start > last_day:
        return True
    end = _line_date(data, raw, raw.dtend)
    return end is not None and end < first_day


def _event_precheck(data: bytes, raw: _Raw, ignored_zones: set[str]) -> str:
    """Why a VEVENT is skipped before it is parsed (size, attendees, rules, zone), or ""."""
    if raw.end - raw.start > limits.MAX_EVENT_BYTES:
        return limits.REASON_TOO_BIG
    if raw.end - raw.start >= _ATTENDEES_ROOM:
        lines = _ATTENDEE_LINE.finditer(data, raw.start, raw.end)
        if next(itertools.islice(lines, limits.MAX_ATTENDEES, None), None) is not None:
            return limits.REASON_TOO_MANY_ATTENDEES
    if raw.rules and any(_sub_daily(rule) for rule in _rules(data, raw)):
        return limits.REASON_REPEATS_TOO_OFTEN
    if ignored_zones:
        for match in _TZID_PARAM.finditer(data, raw.start, raw.end):
            tzid = match.group(1).strip(b'"').decode("utf-8", "replace").strip().strip("/")
            if tzid in ignored_zones:
                return limits.REASON_TIMEZONE
    return ""


def _as_utc(value: date) -> datetime:
    """A comparable instant for a range check: dates at midnight, floating times as UTC."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _range_problem(component: _Properties) -> str:
    """Dates outside 1970–2200 or a duration over a year, checked before any expansion (a series
    from year 1, or an end in year 9999, costs the expansion or overflows it)."""
    moments: dict[str, datetime] = {}
    for name in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        value = getattr(component.get(name), "dt", None)
        if isinstance(value, date):
            try:
                moment = _as_utc(value)
            except (OverflowError, ValueError):
                return limits.REASON_OUT_OF_RANGE
            if moment > limits.LATEST:
                return limits.REASON_OUT_OF_RANGE
            if moment < limits.EARLIEST and not (name != "RECURRENCE-ID" and _yearly(component)):
                # A birthday series may start in 1950 (its expansion to today is a few dozen
                # steps); a daily one from year 1 is hundreds of thousands.
                return limits.REASON_OUT_OF_RANGE
            moments[name] = moment
    duration = getattr(component.get("DURATION"), "dt", None)
    if isinstance(duration, timedelta) and abs(duration) > limits.MAX_DURATION:
        return limits.REASON_TOO_LONG
    if (
        "DTSTART" in moments
        and "DTEND" in moments
        and moments["DTEND"] - moments["DTSTART"] > limits.MAX_DURATION
    ):
        return limits.REASON_TOO_LONG
    return ""


def _yearly(component: _Properties) -> bool:
    """A series that repeats once a year (a birthday), and nothing else."""
    rules = component.get("RRULE")
    if rules is None or component.get("RDATE") is not None or component.get("EXRULE") is not None:
        return False
    for rule in rules if isinstance(rules, list) else [rules]:
        if [str(f).upper() for f in rule.get("FREQ", [])] != ["YEARLY"]:
            return False
        for key, values in rule.items():
            if str(key).upper().startswith("BY") and (
                str(key).upper() not in ("BYMONTH", "BYMONTHDAY") or len(values) > 1
            ):
                return False
    return True


# --- Plain single events, read without the iCalendar library ---
#
# Most of a calendar is single events (no recurrence, no override) in the plainest form of the
# grammar. The library reads one in about a millisecond, most of it splitting content lines
# character by character; the reader below takes a few dozen microseconds and builds the same
# property values (with the library's own unescaping and date-time functions), so every check and
# ``_event`` run on it unchanged. It accepts only what it reads exactly as the library does:
# anything else (a recurrence, an override, DURATION, a nested VALARM, a parameter with escapes,
# a time zone the library would not resolve to the same zone, an event near the window's edges,
# any problem at all) returns None and the component is parsed by the library as before.
# ``tests/test_ics_prefilter.py`` compares both readings.

_PLAIN_LINE = re.compile(
    r"([A-Za-z0-9-]+)"
    r"((?:;[A-Za-z0-9-]+=(?:\"[^\"\\^%\x00-\x1f\x7f]*\""
    r"|(?:[^\";:,\\^%\x00-\x20\x7f](?:[^\";:,\\^%\x00-\x1f\x7f]*[^\";:,\\^%\x00-\x20\x7f])?)?))*)"
    r":([^\x00-\x08\x0a-\x1f\x7f]*)"
)
# The library's own patterns (icalendar.parser.content_line and .property), copied so that a pass
# that parses nothing need not import the library.
_LIBRARY_UNFOLD = re.compile(r"(?:(?<!\n)\r\n|(?<![\r\n])\n)(?:\r?\n)*[ \t]")
_LIBRARY_ESCAPE = re.compile(r"\\([\\,;:nN])")
_SIMPLE_UNFOLD = re.compile(r"\r?\n[ \t]")


def _unescape_backslash(value: str) -> str:
    """Text unescaped as the library does (``icalendar.parser.property.unescape_backslash``)."""
    return _LIBRARY_ESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


_PLAIN_NAME = re.compile(r"([A-Za-z0-9-]+)[;:]")
_PLAIN_PARAM = re.compile(r";([A-Za-z0-9-]+)=(\"[^\"]*\"|[^;]*)")
_PLAIN_MOMENT = {
    "": re.compile(r"\d{8}(?:T\d{6}Z?)?"),
    "DATE": re.compile(r"\d{8}"),
    "DATE-TIME": re.compile(r"\d{8}T\d{6}Z?"),
}
_PLAIN_TEXT = frozenset(
    {"UID", "SUMMARY", "DESCRIPTION", "LOCATION", "STATUS", "CLASS", "URL", "ORGANIZER", "ATTENDEE"}
)
_PLAIN_RAW = frozenset(_MEETING_PROPERTIES)  # the library keeps unknown X- values verbatim
_PLAIN_MOMENTS = frozenset({"DTSTART", "DTEND", "LAST-MODIFIED"})
_PLAIN_READ = _PLAIN_TEXT | _PLAIN_RAW | _PLAIN_MOMENTS | {"CATEGORIES"}
_NOT_PLAIN = frozenset(
    {
        "BEGIN",
        "END",
        "RRULE",
        "RDATE",
        "EXRULE",
        "EXDATE",
        "RECURRENCE-ID",
        "DURATION",
        "X-ALT-DESC",
    }
)
"""Properties that make an event more than a plain one (or nest a component in it)."""


class _Properties(Protocol):
    """What the checks and ``_event`` read of a component: the library's ``Component``, or the
    properties of a plain event read without it."""

    def get(self, key: str, default: Any = None, /) -> Any: ...


class _PlainValue(str):
    """A text or address value with its parameters, as the library's value types carry them."""

    __slots__ = ("params", "people")
    params: dict[str, str]
    people: dict[bool, Attendee | None]
    """An ORGANIZER's or ATTENDEE's person, by ``is_organizer`` (``_person``): a remembered line
    is read once, the person it names is made once."""


@dataclass(frozen=True)
class _PlainMoment:
    """A DTSTART, DTEND or LAST-MODIFIED value with its parameters."""

    dt: date
    params: dict[str, str]


@dataclass(frozen=True)
class _PlainCategories:
    """One CATEGORIES line, split as the library splits it."""

    cats: list[str]
    params: dict[str, str]


def _plain_value(name: str, params: dict[str, str], raw: str) -> Any:
    """The value of property ``name`` as the library reads it, or None when in doubt."""
    if "VALUE" in params and name not in _PLAIN_MOMENTS:
        return None  # another value type than the library's default for the name
    if name in _PLAIN_TEXT:
        value = _PlainValue(_unescape_backslash(raw) if "\\" in raw else raw)
        value.params = params
        if name in ("ORGANIZER", "ATTENDEE"):
            value.people = {}
        return value
    if name in _PLAIN_RAW:
        value = _PlainValue(raw)
        value.params = params
        return value
    if name == "CATEGORIES":
        from icalendar.parser.property import split_on_unescaped_comma

        try:
            return _PlainCategories(split_on_unescaped_comma(raw), params)
        except ValueError:
            return None
    kind = params.get("VALUE", "").upper()
    pattern = _PLAIN_MOMENT.get(kind)
    if pattern is None or not pattern.fullmatch(raw):
        return None
    tzid = params.get("TZID") if name != "LAST-MODIFIED" else None
    try:
        moment = _plain_moment(name, kind, raw, tzid)
    except (ValueError, TypeError, OverflowError):
        return None
    return _PlainMoment(moment, params) if isinstance(moment, date) else None


def _plain_moment(name: str, kind: str, raw: str, tzid: str | None) -> Any:
    """A date or date-time as the library's value types read it (``vDDDTypes.from_ical``): built
    directly in the forms where the library puts a zoneinfo zone on the wall-clock time, through
    the library otherwise."""
    import icalendar.timezone

    if kind != "DATE" and len(raw) in (15, 16):
        fields = (
            int(raw[:4]),
            int(raw[4:6]),
            int(raw[6:8]),
            int(raw[9:11]),
            int(raw[11:13]),
            int(raw[13:15]),
        )
        zone: tzinfo | None = None
        if tzid:
            zone = icalendar.timezone.tzp.timezone(tzid)
        elif len(raw) == 16:
            zone = _library_utc()
        if zone is None and not tzid and len(raw) == 15:
            return datetime(*fields)  # floating
        if isinstance(zone, ZoneInfo):
            return datetime(*fields, tzinfo=zone)
    elif len(raw) == 8 and not tzid:
        return date(int(raw[:4]), int(raw[4:6]), int(raw[6:8]))
    factory: Any = icalendar.cal.Event.types_factory.for_property(name, kind or None)
    return factory.from_ical(raw, tzid) if tzid else factory.from_ical(raw)


_UTC: list[tzinfo] = []


def _library_utc() -> tzinfo | None:
    """The zone the library gives a UTC date-time (``…Z``)."""
    if not _UTC:
        import icalendar

        moment = icalendar.prop.vDDDTypes.from_ical("20000101T000000Z")  # type: ignore[no-untyped-call]
        if moment.tzinfo is not None:
            _UTC.append(moment.tzinfo)
    return _UTC[0] if _UTC else None


_KNOWN_NAMES = frozenset({"ORGANIZER", "ATTENDEE", "DTSTART", "DTEND", "CATEGORIES"})
"""Properties whose lines recur from event to event (the same colleagues, the same hours)."""
_KNOWN_LINE_CHARS = 320
_KNOWN_LINES = 4096
"""At most this many lines of at most ``_KNOWN_LINE_CHARS`` are remembered during one reading
(a few megabytes even for lines crafted to be all distinct and of four-byte characters)."""
_IGNORED = object()
"""A remembered line of a property no field of an event is made of."""


def _remember(known: dict[str, tuple[str, Any]] | None, line: str, name: str, value: Any) -> None:
    if known is not None and len(line) <= _KNOWN_LINE_CHARS and len(known) < _KNOWN_LINES:
        known[line] = (name, value)


def _plain_properties(
    chunk: bytes, known: dict[str, tuple[str, Any]] | None = None
) -> dict[str, Any] | None:
    """The properties of a plain VEVENT that an ``Event`` is made of, or None.

    ``known`` remembers lines already read (one reading of a calendar meets the same organiser,
    attendee and time lines thousands of times): their values are immutable and shared.
    """
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\n " in text or "\n\t" in text:  # every fold is a line break then a space or tab
        # Without blank lines a run of line breaks is one line break: the simple pattern
        # removes what the library's does.
        simple = "\n\n" not in text and "\n\r\n" not in text
        text = (_SIMPLE_UNFOLD if simple else _LIBRARY_UNFOLD).sub("", text)
    # As the library splits lines (``\r?\n``): at LF, and a CR just before it goes with it.
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    if len(lines) < 2 or lines[0].upper() != "BEGIN:VEVENT" or lines[-1].upper() != "END:VEVENT":
        return None
    properties: dict[str, Any] = {}
    for line in lines[1:-1]:
        remembered = known.get(line) if known is not None else None
        if remembered is not None:
            name, value = remembered
            if value is _IGNORED:
                continue
        else:
            named = _PLAIN_NAME.match(line)
            if named is None:
                return None
            name = named.group(1).upper()
            if name in _NOT_PLAIN:
                return None
            if name not in _PLAIN_READ:
                # A property no field of an event is made of (DTSTAMP, SEQUENCE, …): the library
                # reads its name as this does; a value it cannot read only adds to its warnings.
                _remember(known, line, name, _IGNORED)
                continue
            match = _PLAIN_LINE.fullmatch(line)
            if match is None:
                return None
            params = (
                {
                    key.upper(): value[1:-1] if value.startswith('"') else value
                    for key, value in _PLAIN_PARAM.findall(match.group(2))
                }
                if match.group(2)
                else {}
            )
            value = _plain_value(name, params, match.group(3))
            if value is None:
                return None
            if name in _KNOWN_NAMES:
                _remember(known, line, name, value)
        # As the library adds a repeated property: the values become a list.
        present = properties.get(name)
        if present is None:
            properties[name] = value
        elif isinstance(present, list):
            present.append(value)
        else:
            properties[name] = [present, value]
    return properties


def _exact_uid(data: bytes, raw: _Raw) -> str | None:
    """The UID of a component as the library reads it, when its bytes say so without doubt (one
    short UID line, no escapes, no surrounding spaces), else None."""
    if len(raw.uids) != 1:
        return None
    value = _unfolded(data, raw.uids[0], raw.end, 500)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(value) >= 500 or "\\" in text or not text or text != text.strip():
        return None
    return text


def _floating_in(named: ZoneInfo | None, moment: date) -> date:
    """A date-time as recurring-ical-events reads it under X-WR-TIMEZONE ``named`` (through
    x-wr-timezone: UTC times move to that zone, floating times are placed in it)."""
    if named is None or not isinstance(moment, datetime):
        return moment
    zone_name = moment.tzname()
    if zone_name is None:
        return moment.replace(tzinfo=named)
    if zone_name.upper() == "UTC":
        return moment.astimezone(named)
    return moment


def _approximate(moment: date) -> datetime:
    """An instant within a day of ``moment`` whatever zone a date or floating time is read in."""
    if not isinstance(moment, datetime):
        return datetime.combine(moment, time(0), tzinfo=UTC)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class _Plain:
    """What a plain single event gives: its event, a skip, or nothing (not in the window)."""

    uid: str
    event: Event | None = None
    skipped: SkippedEvent | None = None


def _plain_sound(properties: dict[str, Any]) -> bool:
    """True only when ``_problem`` and ``_range_problem`` find nothing wrong with a plain event
    (one UID, one DTSTART and one DTEND of one kind, in order, within 1970–2200 and a year of
    each other): the checks most events pass, without their generic reading of the properties.
    False leaves the answer to them."""
    uid, start, end = properties.get("UID"), properties.get("DTSTART"), properties.get("DTEND")
    if type(uid) is not _PlainValue or not uid.strip():
        return False
    if type(start) is not _PlainMoment or type(end) is not _PlainMoment:
        return False
    first, last = start.dt, end.dt
    if isinstance(first, datetime) != isinstance(last, datetime):
        return False
    if isinstance(first, datetime) and isinstance(last, datetime):
        if (first.tzinfo is None) != (last.tzinfo is None):
            return False
        if first.tzinfo is None and ("TZID" in start.params or "TZID" in end.params):
            return False  # a zone nobody knows
    if last < first:
        return False
    try:
        begins, ends = _as_utc(first), _as_utc(last)
    except (OverflowError, ValueError):
        return False
    return (
        limits.EARLIEST <= begins <= limits.LATEST
        and limits.EARLIEST <= ends <= limits.LATEST
        and ends - begins <= limits.MAX_DURATION
    )


def _read_plain(
    chunk: bytes,
    uid: str,
    window: Period,
    zone: ZoneInfo,
    named: ZoneInfo | None,
    known: dict[str, tuple[str, Any]] | None = None,
) -> _Plain | None:
    """A plain single event read without the library, or None to let the library read it."""
    properties = _plain_properties(chunk, known)
    if properties is None or "DTEND" not in properties:
        return None
    if not _plain_sound(properties):
        try:
            if _problem(properties) or _range_problem(properties):
                return None  # the library's reading gives the reason
        except Exception:  # noqa: BLE001 - in doubt, the library reads it
            return None
    if _uid(properties) != uid:
        return None
    if named is not None:
        for name in ("DTSTART", "DTEND"):  # what the expansion hands on (not LAST-MODIFIED)
            value = properties.get(name)
            if isinstance(value, _PlainMoment):
                properties[name] = _PlainMoment(_floating_in(named, value.dt), value.params)
    raw_start, raw_end = properties["DTSTART"].dt, properties["DTEND"].dt
    if type(raw_start) is not type(raw_end) or getattr(raw_start, "tzinfo", None) is not getattr(
        raw_end, "tzinfo", None
    ):
        return None  # the expansion moves the end into the start's zone
    start, end = _approximate(raw_start), _approximate(raw_end)
    if end <= start:
        return None  # a zero-length event: the expansion's own rules decide
    if end <= window.start - _MARGIN or start >= window.end + _MARGIN:
        return _Plain(uid)
    if start < window.start + _MARGIN or end > window.end - _MARGIN:
        return None  # near an edge of the window: the expansion decides
    try:
        event = _event(properties, zone, in_series=False)
    except (_BrokenEvent, OverflowError, ValueError):
        return None
    problem = limits.event_problem(event)
    if problem:
        return _Plain(uid, skipped=SkippedEvent(event.event_id, problem))
    return _Plain(uid, event=limits.bounded(event))


def parse_calendar(data: bytes, where: str) -> icalendar.Calendar:
    """Parse one whole iCalendar document without budgets (for trusted data such as the demo);
    ``PermanentError`` (with the line, when known) if it is not one. Calendar feeds go through
    ``read_ics``."""
    import icalendar

    check_calendar_bytes(data, where)
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
    """The event occurrences of an iCalendar document that overlap ``window`` (see ``read_ics``;
    what was skipped is logged and dropped)."""
    return read_ics(data, window, zone, where).events


def read_ics(
    data: bytes,
    window: Period,
    zone: ZoneInfo,
    where: str,
    budget: PassBudget | None = None,
    *,
    prefilter: bool = True,
) -> Parsed:
    """The event occurrences of an iCalendar document that overlap ``window``, within budgets.

    Floating times are read in ``zone`` (unless the calendar names its own X-WR-TIMEZONE), and
    all-day events span local midnights in ``zone``. An event that is malformed or breaks a budget
    of ``daemon.limits`` is left out with a ``SkippedEvent`` (every component of its UID, so that
    a bad override cannot show a moved occurrence at its old time); a VTIMEZONE that breaks one is
    ignored and the events that use it are skipped, unless its TZID is a zone the iCalendar
    library knows by name (then that zone is used, as for any calendar without VTIMEZONEs). Only
    a document that is not iCalendar at all raises ``PermanentError``.

    With ``prefilter`` (the default) plain single events are read without the iCalendar library
    and, once the events met so far fill the pass budget, the components of further UIDs are
    skipped with that reason unparsed; the events returned are the same as without it.
    """
    import icalendar

    budget = budget if budget is not None else PassBudget.start()
    check_calendar_bytes(data, where)
    if len(data) > limits.MAX_FEED_BYTES:
        raise PermanentError(f"{where}: the calendar is larger than {limits.MAX_FEED_BYTES} bytes")
    try:
        shell_bytes, raws = _split(data)
    except ValueError:
        raise PermanentError(
            f"{where}: the calendar cannot be read: it ends in the middle (no END:VCALENDAR)"
        ) from None
    result = Parsed()
    try:
        calendar = icalendar.Calendar.from_ical(shell_bytes)
        if not isinstance(calendar, icalendar.Calendar):
            raise ValueError("no VCALENDAR")
    except Exception:  # noqa: BLE001 - the calendar's own properties are optional
        line = _first_bad_line(shell_bytes)
        if line:  # the same line's number in the file
            text = shell_bytes.splitlines()[line - 1]
            line = data.count(b"\n", 0, max(0, data.find(text))) + 1
        log.warning(
            "ics: %s: the calendar's own properties cannot be read (a malformed line%s); "
            "ignoring them",
            where,
            f" near line {line}" if line else "",
        )
        calendar = icalendar.Calendar()
    calendar.subcomponents = []

    ignored_zones: set[str] = set()
    zones: list[icalendar.cal.Component] = []
    for raw in (r for r in raws if r.name == "VTIMEZONE"):
        tzid = _first_value(_TZID_LINE, data, raw).strip('"').strip("/")
        problem = _zone_problem(data, raw) if not budget.spent() else "the pass ran out of time"
        if not problem:
            try:
                zones.append(icalendar.cal.Component.from_ical(data[raw.start : raw.end]))
            except Exception:  # noqa: BLE001 - one unreadable zone is one ignored zone
                problem = "it cannot be read"
        if problem:
            ignored_zones.add(tzid)
            log.warning("ics: %s: ignoring time zone %r: %s", where, tzid[:60], problem)
    # A zone the library knows by name is used by name anyway: only unknown names are lost.
    ignored_zones = {tzid for tzid in ignored_zones if not _known_zone(tzid)}

    _check_named_zone(calendar, zone, where)
    named: ZoneInfo | None = None  # the X-WR-TIMEZONE the expansion reads floating times in
    if prefilter and calendar.get("X-WR-TIMEZONE") is not None:
        try:
            named = ZoneInfo(str(calendar.get("X-WR-TIMEZONE")))
        except (ZoneInfoNotFoundError, ValueError):
            prefilter = False  # the expansion refuses it: let it say so

    bad: dict[str, str] = {}  # UID -> reason
    by_uid: dict[str, list[icalendar.cal.Component]] = {}
    # Every UID in the order the expansion meets it: a plain event read here, or None for a
    # series (or an event) the library reads.
    units: dict[str, _Plain | None] = {}
    plain_raws: dict[str, _Raw] = {}
    surplus: set[str] = set()  # UIDs past the pass budget, left unparsed
    known: dict[
        str, tuple[str, Any]
    ] = {}  # lines the plain reader has read (``_plain_properties``)
    certain = 0  # events the plain units met so far return for sure
    first_day, last_day = (window.start - _MARGIN).date(), (window.end + _MARGIN).date()
    raw_uids = [(raw, _uid_value(data, raw) or "(no UID)") for raw in raws if raw.name == "VEVENT"]
    # A series with more overrides than its occurrence budget is skipped before any is parsed.
    components = Counter(uid for _, uid in raw_uids)
    for uid, count in components.items():
        if count > limits.MAX_OCCURRENCES_PER_SERIES:
            bad[uid] = limits.REASON_TOO_MANY_OCCURRENCES
    # Two UIDs written differently that the library reads alike are one series.
    alike = Counter(_unescape_backslash(uid) for uid in components) if prefilter else Counter()
    for raw, uid in raw_uids:
        if uid in bad or uid in surplus:
            continue
        if budget.spent():
            bad[uid] = limits.REASON_PASS_BUDGET
            continue
        if _outside(data, raw, first_day, last_day):
            continue  # a single event far from the window: never parsed (most of a long history)
        problem = _event_precheck(data, raw, ignored_zones)
        if not problem and prefilter:
            if (
                uid not in units
                and certain >= budget.occurrences_left
                and _exact_uid(data, raw) == uid
            ):
                # The events met so far fill the pass: this UID would be skipped for the budget
                # after its parse and expansion; it is skipped without them.
                surplus.add(uid)
                units[uid] = _Plain(uid)
                continue
            plain = None
            if components[uid] == 1 and alike[uid] == 1 and uid not in units:
                plain = _read_plain(data[raw.start : raw.end], uid, window, zone, named, known)
            if plain is not None:
                units[uid] = plain
                plain_raws[uid] = raw
                certain += plain.event is not None
                continue
        if not problem:
            try:
                component = icalendar.cal.Component.from_ical(data[raw.start : raw.end])
            except Exception:  # noqa: BLE001 - the parser's errors vary; none may escape
                problem = "it cannot be read (a malformed line)"
            else:
                uid = _uid(component) if str(component.get("UID", "")).strip() else uid
                try:
                    problem = (
                        _problem(component) or _range_problem(component) or _rule_problem(component)
                    )
                except Exception:  # noqa: BLE001 - a property the parser kept but cannot read
                    problem = "it cannot be read (a malformed value)"
                if not problem and _unreadable_sequence(component):
                    # The expansion compares SEQUENCE numbers: an unreadable one would stop the
                    # whole calendar. Only the expansion reads it; the event is whole without it.
                    del component["SEQUENCE"]
                if not problem and component.errors:
                    # The parser kept going past lines it could not read; the times are sound,
                    # so the event stays, but someone should look at the feed.
                    names = sorted({str(n or "unreadable line") for n, _ in component.errors})
                    log.warning(
                        "ics: %s: an event has lines that cannot be read (%s); using the rest",
                        where,
                        ", ".join(names)[:120],
                    )
        if not problem and units.get(uid) is not None and uid not in surplus:
            # A plain event read above shares its UID with this component after all (written
            # differently): the library reads both, as one series.
            first = plain_raws[uid]
            try:
                by_uid[uid] = [icalendar.cal.Component.from_ical(data[first.start : first.end])]
                units[uid] = None
            except Exception:  # noqa: BLE001 - as if it had been parsed in its place
                problem = "it cannot be read (a malformed line)"
        if problem:
            bad[uid] = problem
            by_uid.pop(uid, None)
            units.pop(uid, None)
        else:
            by_uid.setdefault(uid, []).append(component)
            units.setdefault(uid, None)

    for uid, reason in bad.items():
        result.skipped.append(SkippedEvent(uid, reason))
        log.debug("ics: %s: skipping event %s: %s", where, uid, reason)
    if bad:
        log.warning("ics: %s: %d events skipped (see recruitmail status)", where, len(bad))

    calendar.subcomponents = zones + [c for group in by_uid.values() for c in group]
    _expand(calendar, units, window, zone, where, budget, result)
    result.events.sort(key=lambda e: (e.start.timestamp(), e.event_id))
    return result


def _expand(
    calendar: icalendar.Calendar,
    units: dict[str, _Plain | None],
    window: Period,
    zone: ZoneInfo,
    where: str,
    budget: PassBudget,
    result: Parsed,
) -> None:
    """Expand each series on its own, stopping at the per-series and per-pass budgets.

    ``units`` gives the order in which the budget is spent: a plain event read without the
    library counts where the expansion would have met it; None is a series of ``calendar``.
    """
    import recurring_ical_events

    # The expansion stamps a RECURRENCE-ID on every occurrence, single events included; only
    # members of a series (or a lone override of one) carry it on into the event's identity.
    series_uids = {
        _uid(c)
        for c in calendar.walk("VEVENT")
        if any(c.get(name) is not None for name in ("RRULE", "RDATE", "RECURRENCE-ID"))
    }
    try:
        query = recurring_ical_events.of(calendar, skip_bad_series=True)
        start, end = query.to_datetime(window.start), query.to_datetime(window.end)
        all_series = list(query.series)
    except Exception as exc:  # the library's error types vary by version; none may escape
        raise PermanentError(
            f"{where}: the calendar's recurrences cannot be expanded ({_short(exc)})"
        ) from None
    by_series = {str(getattr(series, "uid", "") or "(no UID)"): series for series in all_series}
    # The library's series in the order of the document, plain events in their places (and any
    # series under a UID of its own reading last).
    order: list[tuple[str, _Plain | None]] = [
        (uid, plain) for uid, plain in units.items() if plain is not None or uid in by_series
    ]
    order += [(uid, None) for uid in by_series if uid not in units]
    events: dict[str, Event] = {}
    for uid, plain in order:
        if budget.spent():
            result.skipped.append(SkippedEvent(uid, limits.REASON_PASS_BUDGET))
            continue
        if plain is not None:
            if plain.skipped is not None:
                result.skipped.append(plain.skipped)
            elif plain.event is not None:
                events[plain.event.event_id] = plain.event
                budget.occurrences_left -= 1
            continue
        series = by_series[uid]
        found: dict[str, Event] = {}
        reason = ""
        try:
            for occurrence in series.between(start, end):
                if len(found) >= limits.MAX_OCCURRENCES_PER_SERIES:
                    reason = limits.REASON_TOO_MANY_OCCURRENCES
                    break
                if clock.monotonic() > budget.deadline:
                    reason = limits.REASON_PASS_BUDGET
                    break
                component = occurrence.as_component(False)
                try:
                    event = _event(component, zone, in_series=uid in series_uids)
                except (_BrokenEvent, OverflowError, ValueError) as exc:
                    log.debug("ics: %s: skipping an occurrence of %s: %s", where, uid, exc)
                    result.skipped.append(SkippedEvent(uid, str(exc) or "it cannot be read"))
                    continue
                problem = limits.event_problem(event)
                if problem:
                    result.skipped.append(SkippedEvent(event.event_id, problem))
                    continue
                found[event.event_id] = limits.bounded(event)
        except Exception as exc:  # noqa: BLE001 - one series that cannot be expanded is one skip
            log.debug("ics: %s: series %s cannot be expanded: %s", where, uid, _short(exc))
            reason = "its recurrences cannot be expanded"
        if reason:
            log.debug("ics: %s: skipping series %s: %s", where, uid, reason)
            result.skipped.append(SkippedEvent(uid, reason))
            continue
        allowed = min(len(found), budget.occurrences_left)
        kept = list(found.values())
        for event in kept[:allowed]:
            events[event.event_id] = event
        budget.occurrences_left -= allowed
        for event in kept[allowed:]:
            result.skipped.append(SkippedEvent(event.event_id, limits.REASON_PASS_BUDGET))
    result.events.extend(events.values())


class _BrokenEvent(Exception):
    """One VEVENT that cannot become an ``Event``."""


def _uid(component: _Properties) -> str:
    return str(component.get("UID", "(no UID)"))


def _problem(component: _Properties) -> str:
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
            return "it names a time zone nobody knows"
        values[name] = value
    if "DTSTART" not in values:
        return "it has no DTSTART"
    duration = getattr(component.get("DURATION"), "dt", None)
    if isinstance(duration, timedelta) and duration < timedelta(0):
        return "it ends before it starts"
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
        if end < start:  # the same zone compares wall clocks: a DST gap does not reorder them
            return "it ends before it starts"
    return ""


def _unreadable_sequence(component: icalendar.cal.Component) -> bool:
    """Whether the component has a SEQUENCE that is not one integer."""
    value = component.get("SEQUENCE")
    if value is None:
        return False
    return isinstance(value, list) or any(name == "SEQUENCE" for name, _ in component.errors)


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


def _event(component: _Properties, zone: ZoneInfo, *, in_series: bool) -> Event:
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
    start, end = _past_gaps(start, end)

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
        private=str(component.get("CLASS", "")).strip().upper() in ("PRIVATE", "CONFIDENTIAL"),
    )


def _existing(moment: datetime) -> datetime:
    """``moment`` as a wall time that exists: RFC 5545 §3.3.5 reads a local time inside a DST
    gap with the offset before the gap, i.e. shifted forward by the gap (02:30 on the spring-
    forward night in Stockholm is 03:30 CEST)."""
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC).astimezone(moment.tzinfo)
    except (OverflowError, ValueError):
        return moment


_GAPLESS_ZONES = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT"})


def _gapless(zone: tzinfo | None) -> bool:
    """Whether every wall time exists in ``zone``: a fixed offset such as UTC."""
    return isinstance(zone, timezone) or getattr(zone, "key", None) in _GAPLESS_ZONES


def _past_gaps(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Start and end moved out of a DST gap as a careful client does. When the start is shifted
    past an end that (on the wall clock) was after it, the event keeps its wall-clock length:
    an interview booked 02:30–03:00 on that night takes place 03:30–04:00."""
    if _gapless(start.tzinfo) and _gapless(end.tzinfo):
        return start, end  # most feeds give UTC times
    new_start, new_end = _existing(start), _existing(end)
    if new_end.astimezone(UTC) < new_start.astimezone(UTC):
        wall_length = end.replace(tzinfo=None) - start.replace(tzinfo=None)
        new_end = (new_start.astimezone(UTC) + max(wall_length, timedelta(0))).astimezone(
            new_start.tzinfo
        )
    return new_start, new_end


def _moment(value: date, zone: tzinfo) -> datetime:
    """An aware datetime: dates become local midnight in ``zone``, floating times get ``zone``."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=zone)
    if value.tzinfo is None:
        return value.replace(tzinfo=zone)
    return value


def _end(component: _Properties, raw_start: date, start: datetime, zone: ZoneInfo) -> datetime:
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


def _html_description(component: _Properties) -> str:
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


def _online_url(component: _Properties, body: str, location: str) -> str:
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


def _addresses(component: _Properties, name: str) -> Iterator[Any]:
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
    people = getattr(value, "people", None)
    if people is None:
        return _person_read(value, is_organizer=is_organizer)
    if is_organizer not in people:
        people[is_organizer] = _person_read(value, is_organizer=is_organizer)
    found: Attendee | None = people[is_organizer]
    return found


def _person_read(value: Any, *, is_organizer: bool) -> Attendee | None:
    params = getattr(value, "params", {})
    key = (
        _address(value),
        str(params.get("CN", "")),
        str(params.get("PARTSTAT", "")),
        str(params.get("CUTYPE", "")),
        str(params.get("ROLE", "")),
        is_organizer,
    )
    if sum(len(part) for part in key[:5]) > _SHORT_PERSON:
        return _person_of(*key)
    # The same few colleagues recur in thousands of events; an Attendee is immutable.
    return _known_person(*key)


_SHORT_PERSON = 512
"""Attendee lines up to this length are remembered (longer ones would bloat the memory)."""


def _person_of(
    value: str, cn: str, partstat: str, cutype: str, role: str, is_organizer: bool
) -> Attendee | None:
    address = without_final_dot(value)
    if "@" not in address:
        return None
    return Attendee(
        address=address,
        name=" ".join(cn.split()),
        response=_PARTSTAT.get(partstat.upper(), Response.NONE),
        is_resource=cutype.upper() in ("ROOM", "RESOURCE"),
        is_organizer=is_organizer,
        optional=role.upper() == "OPT-PARTICIPANT",
    )


_known_person = lru_cache(maxsize=4096)(_person_of)


def without_final_dot(address: str) -> str:
    """``anna@example.se.`` is ``anna@example.se``: a fully qualified domain's final dot names
    the same domain, and would otherwise make the same person a new candidate."""
    text = address.strip()
    return text[:-1] if "@" in text and text.endswith(".") else text


def _organizer(component: _Properties) -> Attendee | None:
    for value in _addresses(component, "ORGANIZER"):
        return _person(value, is_organizer=True)
    return None


def _attendees(component: _Properties) -> Iterable[Attendee]:
    seen: set[str] = set()
    for value in _addresses(component, "ATTENDEE"):
        attendee = _person(value, is_organizer=False)
        if attendee is not None and attendee.address not in seen:
            seen.add(attendee.address)
            yield attendee


def _categories(component: _Properties) -> Iterable[str]:
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


def _updated(component: _Properties) -> datetime | None:
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
