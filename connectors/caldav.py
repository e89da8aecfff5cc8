"""CalDAV calendar source: RFC 6578 sync tokens where offered, else a time-range query + ETag diff.

The calendar objects are read with the ``caldav`` library and turned into events by the same
iCalendar mapping the ICS source uses (``connectors.ics.read_ics``), so both sources see
recurring series, moved and cancelled occurrences, rooms and answers alike, within the same
budgets: each calendar object is read on its own, one that is malformed or hostile is skipped
with a reason, and one pass budget (time, events) is shared by all the objects a sync reads.

The cursor is JSON: the sync token (when the server offers RFC 6578), the window it was expanded
for, and for every calendar object (by href) its ETag, whether it recurs, and a digest per event
it yielded. Deletions on the server thus map to removed ``event_id`` values, and when the window
slides, objects entering or leaving it (and recurring series, whose occurrences shift) are
expanded again without reading the whole calendar.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Absolute imports reach the library even though this module is itself named caldav.
from caldav.collection import Calendar
from caldav.davclient import DAVClient
from caldav.elements import dav
from caldav.lib import error as dav_error
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recruitmail.connectors.ics import Parsed, PassBudget, check_url, read_ics
from recruitmail.connectors.tls import ca_bundle
from recruitmail.contracts import limits
from recruitmail.contracts.connector import ConnectorContext
from recruitmail.contracts.errors import (
    AuthError,
    ConfigError,
    CursorExpired,
    PermanentError,
    TransientError,
)
from recruitmail.contracts.models import Event, Period, SkippedEvent, SyncResult
from recruitmail.contracts.secrets import load_secret

log = logging.getLogger(__name__)

CURSOR_VERSION = 1
MULTIGET_BATCH = 100
"""Calendar objects asked for in one calendar-multiget REPORT."""

_SECRET_PREFIXES = ("credential:", "file:", "env:")
_CALDAV_CALENDAR = "{urn:ietf:params:xml:ns:caldav}calendar"
_RECURRING = (b"\nRRULE", b"\nRDATE", b"\nRECURRENCE-ID")


class SourceOptions(BaseModel):
    """Options of the ``caldav`` source (``[mailboxes.source]`` with ``type = "caldav"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        description="The CalDAV server (e.g. https://caldav.fastmail.com/dav/) or a calendar's own URL."
    )
    calendar: str | None = Field(
        None, description="Calendar name to use when the URL names a server with several calendars."
    )
    username: str | None = Field(None, description="Login name, usually the recruiter's address.")
    password: str | None = Field(
        None,
        description="Secret reference to the password or app password, e.g. credential:caldav.",
    )
    auth: Literal["basic", "digest"] = Field(
        "basic", description="HTTP authentication: basic (sent at once; most servers) or digest."
    )
    ca_file: Path | None = Field(
        None, description="CA bundle (PEM) to trust instead of the system's."
    )
    verify_tls: bool = Field(True, description="Check the server's certificate (leave on).")
    sync_tokens: bool = Field(
        True, description="Use RFC 6578 sync tokens when the server offers them (off: ETag diff)."
    )
    timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Seconds to wait for the server."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("password")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_SECRET_PREFIXES):
            raise ValueError(
                "give a secret reference (credential:NAME, file:/path or env:NAME), not the password"
            )
        return value


def open_source(options: SourceOptions, context: ConnectorContext) -> CalDavSource:
    """Build the source; the password is read now so that a wrong reference fails at start-up."""
    password = None
    if options.password is not None:
        password = load_secret(options.password, f"mailbox {context.mailbox}: caldav password")
    if not options.verify_tls:
        log.warning("CalDAV source for %s does not check the server's certificate", context.mailbox)
    return CalDavSource(options, context, password)


@dataclass
class _Known:
    """What the cursor remembers of one calendar object."""

    etag: str
    recurring: bool = False
    events: dict[str, str] = field(default_factory=dict)  # event_id -> digest


@dataclass
class _Cursor:
    mode: str  # "sync" (RFC 6578) or "etag"
    token: str | None
    window: tuple[str, str]
    objects: dict[str, _Known]

    def dump(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "mode": self.mode,
                "token": self.token,
                "window": list(self.window),
                "objects": {
                    href: [k.etag, int(k.recurring), k.events] for href, k in self.objects.items()
                },
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def load(cls, text: str) -> _Cursor:
        try:
            data = json.loads(text)
            if data.get("v") != CURSOR_VERSION or data["mode"] not in ("sync", "etag"):
                raise ValueError("another version")
            objects = {
                str(href): _Known(
                    str(etag), bool(recurring), {str(k): str(v) for k, v in ids.items()}
                )
                for href, (etag, recurring, ids) in data["objects"].items()
            }
            token = data["token"]
            start, end = data["window"]
            return cls(data["mode"], None if token is None else str(token), (start, end), objects)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CursorExpired(
                "the CalDAV cursor is not readable; a full sync is needed"
            ) from None


def _window_key(window: Period) -> tuple[str, str]:
    return (window.start.astimezone(UTC).isoformat(), window.end.astimezone(UTC).isoformat())


def _href(url: Any) -> str:
    """One spelling per object: servers and the library disagree on percent-encoding (``@``)."""
    return unquote(urlsplit(str(url)).path)


def _digest(event: Event) -> str:
    """A fingerprint of everything the planner reads (``updated`` is left out: it changes alone)."""
    text = repr(replace(event, updated=None))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class CalDavSource:
    """One recruiter's CalDAV calendar (a ``CalendarSource``)."""

    def __init__(
        self, options: SourceOptions, context: ConnectorContext, password: str | None
    ) -> None:
        self._options = options
        self._context = context
        self._password = password
        try:
            self._zone = ZoneInfo(context.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"time zone {context.time_zone!r} is unknown") from None
        self._host = urlsplit(options.url).netloc
        self._client: DAVClient | None = None
        # The library types its objects as "sync or async"; this source uses them synchronously.
        self._calendar: Any = None
        # What one sync may spend on parsing, shared by every object it reads; and what it left out.
        self._budget = PassBudget.start()
        self._skipped: list[SkippedEvent] = []

    # -- CalendarSource ---------------------------------------------------------------------

    def sync(self, cursor: str | None, window: Period) -> SyncResult:
        """Everything in ``window`` when ``cursor`` is None; otherwise only what changed since it."""
        self._budget = PassBudget.start()
        self._skipped = []
        if cursor is None:
            return self._full(window)
        previous = _Cursor.load(cursor)
        with self._errors("reading changes"):
            return self._incremental(previous, window)

    def close(self) -> None:
        """Release the HTTP session. Safe to call more than once."""
        client, self._client, self._calendar = self._client, None, None
        if client is not None:
            client.close()

    # -- the two kinds of pass --------------------------------------------------------------

    def _full(self, window: Period) -> SyncResult:
        with self._errors("reading the calendar"):
            calendar = self._open()
            token: str | None = None
            mode = "etag"
            if self._options.sync_tokens:
                try:
                    collection = calendar.get_objects_by_sync_token(
                        sync_token=None, load_objects=False, disable_fallback=True
                    )
                    # Only the token is kept: objects outside the window are read when the
                    # window reaches them.
                    token = str(collection.sync_token) if collection.sync_token else None
                    mode = "sync" if token else "etag"
                except dav_error.DAVError as exc:
                    if isinstance(exc, dav_error.AuthorizationError) and not _expired_token(exc):
                        raise
                    log.info(
                        "CalDAV %s offers no sync-collection (%s); using ETags", self._host, exc
                    )
            in_window = self._etags_in(calendar, window)
            state = _Cursor(mode, token, _window_key(window), {})
            events, _ = self._read(calendar, state, sorted(in_window), window)
        log.info("caldav: full sync of %s: %d events (%s)", self._host, len(events), mode)
        if self._skipped:
            log.warning("caldav: %s: %d events skipped", self._host, len(self._skipped))
        return SyncResult(
            events=tuple(events),
            removed=(),
            cursor=state.dump(),
            full=True,
            skipped=tuple(self._skipped),
        )

    def _incremental(self, state: _Cursor, window: Period) -> SyncResult:
        calendar = self._open()
        window_moved = state.window != _window_key(window)
        to_read: set[str] = set()
        gone: set[str] = set()
        if state.mode == "sync":
            try:
                collection = calendar.get_objects_by_sync_token(
                    sync_token=state.token, load_objects=False, disable_fallback=True
                )
            except dav_error.DAVError as exc:
                if _expired_token(exc):
                    raise CursorExpired(
                        f"CalDAV {self._host} no longer accepts the sync token; a full sync is needed"
                    ) from None
                raise
            deleted = {_href(u) for u in getattr(collection, "deleted_urls", ()) or ()}
            gone |= deleted & set(state.objects)
            for obj in collection:
                href = _href(obj.url)
                if href not in deleted:
                    to_read.add(href)
            state.token = str(collection.sync_token) if collection.sync_token else state.token
            if window_moved:
                in_window = self._etags_in(calendar, window)
                to_read |= self._to_expand_again(state, in_window)
                left = {h for h, k in state.objects.items() if k.events and h not in in_window}
                for href in left - to_read:
                    # Wholly outside the new window now: its events leave the calendar window.
                    gone.add(href)
        else:
            in_window = self._etags_in(calendar, window)
            gone |= set(state.objects) - set(in_window)
            for href, etag in in_window.items():
                known = state.objects.get(href)
                if known is None or known.etag != etag:
                    to_read.add(href)
            if window_moved:
                to_read |= self._to_expand_again(state, in_window)

        removed: list[str] = []
        for href in sorted(gone):
            known = state.objects.pop(href, None)
            if known is not None:
                removed.extend(known.events)
        events, vanished = self._read(calendar, state, sorted(to_read), window, report_changes=True)
        removed.extend(vanished)
        state.window = _window_key(window)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "caldav: %s: read %d objects, %d events changed, %d removed",
                self._host,
                len(to_read),
                len(events),
                len(removed),
            )
        if self._skipped:
            log.warning("caldav: %s: %d events skipped", self._host, len(self._skipped))
        return SyncResult(
            events=tuple(events),
            removed=tuple(sorted(set(removed))),
            cursor=state.dump(),
            full=False,
            skipped=tuple(self._skipped),
        )

    def _to_expand_again(self, state: _Cursor, in_window: dict[str, str]) -> set[str]:
        """Objects whose events may differ in a moved window: series (occurrences shift) and
        objects that had nothing in the old window but overlap the new one."""
        return {
            href
            for href in in_window
            if href not in state.objects
            or state.objects[href].recurring
            or not state.objects[href].events
        }

    # -- reading objects --------------------------------------------------------------------

    def _read(
        self,
        calendar: Any,
        state: _Cursor,
        hrefs: list[str],
        window: Period,
        *,
        report_changes: bool = False,
    ) -> tuple[list[Event], list[str]]:
        """Fetch ``hrefs``, expand them in ``window`` and update ``state``.

        Returns the events (all of them, or with ``report_changes`` only new and changed ones) and
        the event ids that disappeared from the objects read.
        """
        events: list[Event] = []
        vanished: list[str] = []
        found: dict[str, tuple[str, bytes]] = {}
        skipped = self._skipped
        for start in range(0, len(hrefs), MULTIGET_BATCH):
            batch = hrefs[start : start + MULTIGET_BATCH]
            urls = [calendar.url.join(href) for href in batch]
            for obj in calendar.multiget(urls):
                data = obj.data
                if data:
                    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
                    found[_href(obj.url)] = (_etag(obj), raw)
        for href in hrefs:
            old = state.objects.get(href)
            if href not in found:
                # Deleted between the listing and the read.
                if old is not None:
                    vanished.extend(old.events)
                    del state.objects[href]
                continue
            etag, raw = found[href]
            # Each object on its own: one that cannot be read, or breaks a budget, is skipped
            # with a reason and never costs the others (the budget of the pass is shared).
            try:
                parsed = read_ics(raw, window, self._zone, f"caldav {self._host}", self._budget)
            except PermanentError as exc:
                log.debug("caldav: skipping object %s: %s", href, exc)
                skipped.append(SkippedEvent(href, _object_reason(exc)))
                parsed = Parsed()
            except Exception as exc:  # noqa: BLE001 - one object must never fail the sync
                log.debug("caldav: skipping object %s: %s", href, type(exc).__name__)
                skipped.append(SkippedEvent(href, "it cannot be read"))
                parsed = Parsed()
            skipped.extend(parsed.skipped)
            expanded = parsed.events
            digests = {e.event_id: _digest(e) for e in expanded}
            before = old.events if old is not None else {}
            for event in expanded:
                if not report_changes or before.get(event.event_id) != digests[event.event_id]:
                    events.append(event)
            vanished.extend(i for i in before if i not in digests)
            recurring = any(marker in raw.replace(b"\r\n", b"\n") for marker in _RECURRING)
            state.objects[href] = _Known(etag, recurring, digests)
        events.sort(key=lambda e: (e.start.astimezone(UTC), e.event_id))
        return events, vanished

    def _etags_in(self, calendar: Any, window: Period) -> dict[str, str]:
        """href -> ETag of every event object with an occurrence in ``window`` (no data read)."""
        start = window.start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        end = window.end.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        query = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            "<D:prop><D:getetag/></D:prop>"
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f'<C:time-range start="{start}" end="{end}"/>'
            "</C:comp-filter></C:comp-filter></C:filter>"
            "</C:calendar-query>"
        )
        assert self._client is not None
        response = self._client.report(str(calendar.url), query, depth=1)
        if response.status in (401, 403):
            raise dav_error.AuthorizationError(url=str(calendar.url), reason=str(response.status))
        out: dict[str, str] = {}
        for result in response.parse_calendar_query():
            href = _href(calendar.url.join(result.href))
            if result.status == 200 and href.rstrip("/") != _href(calendar.url).rstrip("/"):
                out[href] = result.etag or ""
        return out

    # -- connection and discovery -----------------------------------------------------------

    def _open(self) -> Any:
        if self._calendar is not None:
            return self._calendar
        opts = self._options
        verify: bool | str = opts.verify_tls
        if opts.verify_tls:
            # The one trust store of every connector: ca_file, else SSL_CERT_FILE /
            # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, else the system's.
            bundle = ca_bundle(opts.ca_file)
            if bundle is not None:
                verify = str(bundle)
        self._client = DAVClient(
            url=opts.url,
            username=opts.username,
            password=self._password,
            # Named up front, the credentials go with the first request instead of after a 401
            # (which some servers, Radicale among them, answer only after a deliberate delay).
            auth_type=opts.auth if opts.username else None,
            timeout=int(opts.timeout_seconds) or 1,
            ssl_verify_cert=verify,
            enable_rfc6764=False,  # the URL is given: no DNS discovery
            # Never sleep inside a pass on the server's word: a Retry-After goes to the core,
            # capped at an hour (see _retry_after).
            rate_limit_handle=False,
        )
        self._calendar = self._discover(self._client)
        log.debug("caldav: using calendar %s", self._calendar.url)
        return self._calendar

    def _discover(self, client: DAVClient) -> Any:
        direct: Any = Calendar(client=client, url=self._options.url)
        try:
            kinds = direct.get_properties([dav.ResourceType()]).get(dav.ResourceType.tag) or []
        except dav_error.NotFoundError:
            raise ConfigError(f"caldav url {self._options.url}: nothing there (HTTP 404)") from None
        except dav_error.PropfindError:
            kinds = []
        if _CALDAV_CALENDAR in kinds:
            return direct
        calendars = [c for c in _principal(client).calendars() if _holds_events(c)]
        names = {
            c: (c.get_display_name() or _href(c.url).rstrip("/").rpartition("/")[2])
            for c in calendars
        }
        wanted = self._options.calendar
        if wanted is not None:
            for calendar, name in names.items():
                last = _href(calendar.url).rstrip("/").rpartition("/")[2]
                if wanted.casefold() in (name.casefold(), last.casefold()):
                    return calendar
            raise ConfigError(
                f"caldav calendar {wanted!r} not found on {self._host}; "
                f"there are: {', '.join(sorted(names.values())) or 'none'}"
            )
        if len(calendars) == 1:
            return calendars[0]
        if not calendars:
            raise ConfigError(f"caldav: the account on {self._host} has no calendar")
        raise ConfigError(
            f"caldav: the account on {self._host} has several calendars "
            f'({", ".join(sorted(names.values()))}); name one with calendar = "…"'
        )

    def _retry_after(self, seconds: object) -> float | None:
        """The server's Retry-After, capped at an hour (and logged when it asked for more)."""
        if not isinstance(seconds, int | float) or seconds != seconds:
            return None
        capped = limits.capped_retry_after(float(seconds))
        if capped < seconds:
            log.warning(
                "CalDAV server %s asked to wait %.0f seconds; waiting %.0f at most",
                self._host,
                seconds,
                capped,
            )
        return capped

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn the library's and the HTTP stack's exceptions into the project's errors."""
        try:
            yield
        except (ConfigError, AuthError, CursorExpired, TransientError, PermanentError):
            raise
        except dav_error.AuthorizationError as exc:
            raise AuthError(
                f"CalDAV server {self._host} refused {self._options.username or 'the login'} "
                f"while {what} (HTTP {exc.status or exc.reason}); check the username, the "
                "password or app password, and access to the calendar"
            ) from None
        except dav_error.NotFoundError:
            self.close()
            raise ConfigError(
                f"caldav url {self._options.url}: the calendar is gone (HTTP 404)"
            ) from None
        except dav_error.RateLimitError as exc:
            raise TransientError(
                f"CalDAV server {self._host} asks to slow down",
                retry_after=self._retry_after(getattr(exc, "retry_after_seconds", None)),
            ) from None
        except dav_error.DAVError as exc:
            status = exc.status if isinstance(exc.status, int) else 0
            if status == 0 or status >= 500 or status in (408, 429):
                raise TransientError(
                    f"CalDAV server {self._host} failed while {what} ({exc.reason})"
                ) from None
            raise PermanentError(
                f"CalDAV server {self._host} refused {what} (HTTP {status})"
            ) from None
        except OSError as exc:
            # niquests' connection, timeout and TLS errors are OSErrors.
            self.close()
            name = type(exc).__name__
            if "SSL" in name or "Certificate" in name:
                raise ConfigError(
                    f"CalDAV server {self._host}: TLS failed ({name}); set ca_file to the CA "
                    "that signed its certificate"
                ) from None
            raise TransientError(f"cannot reach CalDAV server {self._host} ({name})") from None
        except Exception as exc:  # the library raises more types than it documents
            self.close()
            raise TransientError(
                f"CalDAV server {self._host}: unexpected failure while {what} ({type(exc).__name__})"
            ) from None


def _object_reason(exc: PermanentError) -> str:
    """A reason for a calendar object that cannot be read, without its text."""
    text = str(exc)
    for reason in ("not an iCalendar file", "ends in the middle", "larger than"):
        if reason in text:
            return f"the calendar object cannot be read ({reason})"
    return "the calendar object cannot be read"


def _principal(client: Any) -> Any:
    return client.principal()


def _etag(obj: Any) -> str:
    props = getattr(obj, "props", None) or {}
    return str(props.get(dav.GetEtag.tag) or "")


def _expired_token(exc: Exception) -> bool:
    """RFC 6578 §3.2: a 403 with the DAV:valid-sync-token precondition (412 on Xandikos)."""
    conditions = [str(c) for c in getattr(exc, "preconditions", []) or []]
    return any("valid-sync-token" in c for c in conditions) or getattr(exc, "status", None) == 412


def _holds_events(calendar: Any) -> bool:
    try:
        components = calendar.get_supported_components()
    except Exception:  # noqa: BLE001 - servers that do not say are assumed to hold events
        return True
    return not components or "VEVENT" in components
