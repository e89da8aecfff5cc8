"""Google Workspace: Google Calendar v3 as a calendar source and Gmail v1 as a draft sink.

Sign-in is a service account with domain-wide delegation (impersonating the recruiter) or, for one
recruiter, an installed-app OAuth refresh token (``installed_app_login``). Each credential asks for
the least scopes its job needs:

=====================================  ==========================================================
scope                                  what it unlocks
=====================================  ==========================================================
``calendar.events.readonly``           the calendar sync and the calendar's time zone (default)
``calendar.readonly``                  the same, when ``calendar_scope = "calendar.readonly"``
``gmail.compose``                      create, find, read and update drafts (always)
``gmail.settings.basic``               the vacation responder → vacation periods (``read_vacation``)
``gmail.metadata``                     headers of Sent mail: last contact, and telling a sent draft
                                       from a deleted one (``read_sent``)
``gmail.modify``                       labelling obsolete drafts (``label_obsolete``); it also
                                       covers everything ``gmail.metadata`` does
=====================================  ==========================================================

Exactly-once drafting: httplib2 re-sends a request, POST included, when the server drops the
connection without answering. Our HTTP object makes one attempt for every request that changes
something and reports a dropped answer as ``AmbiguousError``; the caller then looks the draft up
by its Message-ID before trying again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import google.auth.exceptions
import google_auth_httplib2
import httplib2
from google.oauth2 import credentials as oauth_credentials
from google.oauth2 import service_account
from googleapiclient import discovery
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest
from pydantic import BaseModel, ConfigDict, Field, model_validator
from recruitmail.connectors.tls import ca_bundle

from recruitmail.contracts import limits
from recruitmail.contracts.connector import KEY_HEADER, ConnectorContext
from recruitmail.contracts.errors import (
    AmbiguousError,
    AuthError,
    ConfigError,
    CursorExpired,
    PermanentError,
    TransientError,
)
from recruitmail.contracts.mime import to_bytes
from recruitmail.contracts.models import (
    Attendee,
    DraftKey,
    DraftMessage,
    DraftRef,
    DraftState,
    Event,
    Period,
    Response,
    SkippedEvent,
    SyncResult,
    normalise_address,
)
from recruitmail.contracts.secrets import load_secret

log = logging.getLogger(__name__)

SCOPE_PREFIX = "https://www.googleapis.com/auth/"
CALENDAR_EVENTS_READONLY = SCOPE_PREFIX + "calendar.events.readonly"
CALENDAR_READONLY = SCOPE_PREFIX + "calendar.readonly"
GMAIL_COMPOSE = SCOPE_PREFIX + "gmail.compose"
GMAIL_METADATA = SCOPE_PREFIX + "gmail.metadata"
GMAIL_MODIFY = SCOPE_PREFIX + "gmail.modify"
GMAIL_SETTINGS_BASIC = SCOPE_PREFIX + "gmail.settings.basic"

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
DEFAULT_CALENDAR_ENDPOINT = "https://www.googleapis.com/"
DEFAULT_GMAIL_ENDPOINT = "https://gmail.googleapis.com/"

# A full sync covers a little more than the window asked for, so that the window sliding forward
# day by day keeps using the sync token (one request per idle cycle) instead of forcing a full sync.
WINDOW_SLACK = timedelta(days=7)
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
SERVER_ERRORS = frozenset({500, 502, 503, 504})
SENT_LABEL = "SENT"
MAX_DRAFT_PAGES = 20  # drafts.list pages (100 each) searched for a draft saved under a new id

DIGEST_HEADER = "X-Recruitmail-Content"
"""Carries ``content_digest`` of the draft as written, so an adopted draft can be checked too."""
CREATED_HEADER = "X-Recruitmail-Created"
"""When the draft was written (epoch ms): sent mail after it may be the edited draft, sent."""

Sleeper = Callable[[float], None]


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


class GoogleOptions(BaseModel):
    """Options shared by the Google source and sink (one table may serve both)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth: Literal["service_account", "oauth"] = Field(
        "service_account",
        description="service_account: a key with domain-wide delegation (organisations); "
        "oauth: one recruiter's own consent, stored by `recruitmail login google`.",
    )
    key_file: Path | None = Field(
        None,
        description="service_account: the JSON key file. oauth: the OAuth client file "
        "(type Desktop app) used by `recruitmail login google`.",
    )
    credentials: str | None = Field(
        None,
        description="The same JSON as key_file, as a secret reference "
        "(credential:NAME, file:/path or env:NAME). Use one of key_file and credentials.",
    )
    token_file: Path | None = Field(
        None,
        description="oauth: where the refresh token is kept (mode 0600); default "
        "STATE_DIR/google-token-<mailbox>.json.",
    )
    subject: str | None = Field(
        None, description="service_account: the user to impersonate; default the mailbox address."
    )
    calendar_id: str = Field("primary", description="The calendar to read.")
    calendar_scope: Literal["calendar.events.readonly", "calendar.readonly"] = Field(
        "calendar.events.readonly", description="The calendar scope to ask for."
    )
    calendar_endpoint: str | None = Field(
        None, description="Root URL of the Calendar API (private endpoints, tests)."
    )
    gmail_endpoint: str | None = Field(
        None, description="Root URL of the Gmail API (private endpoints, tests)."
    )
    token_uri: str | None = Field(
        None, description="OAuth token endpoint; default the key file's token_uri, else Google's."
    )
    ca_file: Path | None = Field(
        None,
        description="CA bundle for TLS; default $SSL_CERT_FILE, else $REQUESTS_CA_BUNDLE, "
        "else the system's.",
    )
    obsolete_label: str = Field(
        "recruitmail/obsolete", description="Gmail label put on drafts that are no longer wanted."
    )
    label_obsolete: bool = Field(
        False, description="Label obsolete drafts (needs the gmail.modify scope)."
    )
    read_vacation: bool = Field(
        False, description="Read the vacation responder (needs gmail.settings.basic)."
    )
    read_sent: bool = Field(
        False,
        description="Read Sent mail headers: last contact, sent vs deleted (needs gmail.metadata).",
    )
    page_size: int = Field(250, ge=1, le=2500, description="Events per page of events.list.")
    timeout_seconds: float = Field(60.0, gt=0, le=600, description="Timeout of one HTTP request.")
    max_attempts: int = Field(
        6, ge=1, le=20, description="Tries of one call when Google throttles or fails."
    )
    max_backoff_seconds: float = Field(
        32.0, gt=0, le=600, description="Longest wait between two tries."
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> GoogleOptions:
        if self.key_file is not None and self.credentials is not None:
            raise ValueError("set key_file or credentials, not both")
        if self.auth == "service_account" and self.key_file is None and self.credentials is None:
            raise ValueError(
                "auth = service_account needs the key: key_file = PATH or credentials = credential:NAME"
            )
        return self


class SourceOptions(GoogleOptions):
    """Options of the Google Calendar source."""


class SinkOptions(GoogleOptions):
    """Options of the Gmail draft sink."""


def calendar_scopes(options: GoogleOptions) -> list[str]:
    """The scopes the calendar source asks for."""
    return [SCOPE_PREFIX + options.calendar_scope]


def gmail_scopes(options: GoogleOptions) -> list[str]:
    """The least Gmail scopes that serve the features the options switch on."""
    scopes = [GMAIL_COMPOSE]
    if options.read_vacation:
        scopes.append(GMAIL_SETTINGS_BASIC)
    if options.label_obsolete:
        # gmail.modify covers what gmail.metadata would add; asking for both would make Google
        # apply the narrower metadata rules to every read.
        scopes.append(GMAIL_MODIFY)
    elif options.read_sent:
        scopes.append(GMAIL_METADATA)
    return scopes


def all_scopes(options: GoogleOptions) -> list[str]:
    """Every scope the options need: what the administrator grants, what login asks for."""
    return calendar_scopes(options) + gmail_scopes(options)


# ---------------------------------------------------------------------------------------------
# Transport: one attempt for anything that changes state
# ---------------------------------------------------------------------------------------------


class NotFound(PermanentError):
    """Google answered 404: the item does not exist (any more)."""


class _Unanswered(httplib2.HttpLib2Error):  # type: ignore[misc]
    """A request that changes state was sent and no answer came back."""


class _OneRequest:
    """Wraps a connection so that a second ``request`` on it (httplib2's own retry) is refused."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.sent = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        if self.sent:
            raise _Unanswered("the connection broke after the request was sent")
        self.sent = True
        return self._conn.request(*args, **kwargs)


class SingleShotHttp(httplib2.Http):  # type: ignore[misc]
    """An ``httplib2.Http`` that never re-sends a POST, PUT, PATCH or DELETE by itself.

    httplib2 retries on a dropped connection (module-wide ``RETRIES``, and once more on a bad
    status line whatever ``RETRIES`` says). For reads that is harmless and kept; for writes a
    second copy of ``drafts.create`` would be a duplicate draft, so this object makes exactly one
    attempt, on a fresh connection, and raises ``_Unanswered`` when the answer is lost.
    """

    def _conn_request(
        self, conn: Any, request_uri: str, method: str, body: Any, headers: Any
    ) -> Any:
        if method in ("GET", "HEAD", "OPTIONS"):
            return super()._conn_request(conn, request_uri, method, body, headers)
        # A kept-alive connection the server has meanwhile closed would look like a dropped answer.
        conn.close()
        guarded = _OneRequest(conn)
        try:
            return super()._conn_request(guarded, request_uri, method, body, headers)
        except _Unanswered:
            conn.close()
            raise
        except Exception as exc:
            conn.close()
            if guarded.sent:
                raise _Unanswered(f"no answer after the request was sent ({exc!r})") from exc
            raise


def _http(options: GoogleOptions) -> SingleShotHttp:
    # The one trust store of every connector: ca_file, else SSL_CERT_FILE, REQUESTS_CA_BUNDLE, …
    # (httplib2 would otherwise use its own bundled CA list and ignore the variables).
    bundle = ca_bundle(options.ca_file)
    return SingleShotHttp(
        timeout=options.timeout_seconds, ca_certs=str(bundle) if bundle is not None else None
    )


# ---------------------------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------------------------


def _read_json_secret(options: GoogleOptions, what: str) -> dict[str, Any]:
    if options.key_file is not None:
        try:
            text = options.key_file.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {options.key_file} ({exc.strerror})") from None
    elif options.credentials is not None:
        text = load_secret(options.credentials, what)
    else:
        raise ConfigError(f"{what}: set key_file or credentials")
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{what}: the key is not JSON; download it again from Google") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: the key is not a JSON object")
    return data


def default_token_file(context: ConnectorContext) -> Path:
    """Where ``installed_app_login`` keeps a recruiter's refresh token by default."""
    safe = re.sub(r"[^a-z0-9@._-]", "_", context.mailbox.lower())
    return context.state_dir / f"google-token-{safe}.json"


@dataclass(frozen=True)
class _Grant:
    credentials: Any
    who: str  # names the grant in error messages (never a candidate)
    how_to_fix: str


def _grant(options: GoogleOptions, context: ConnectorContext, scopes: list[str]) -> _Grant:
    if options.auth == "service_account":
        info = _read_json_secret(options, "google service account key")
        if info.get("type") != "service_account":
            raise ConfigError(
                "google service account key: this JSON is not a service account key "
                f"(type {info.get('type')!r}); create a key under IAM → Service accounts → Keys"
            )
        if options.token_uri:
            info = {**info, "token_uri": options.token_uri}
        subject = options.subject or context.mailbox
        try:
            creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=scopes
            )
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"google service account key: unusable ({exc})") from None
        creds = creds.with_subject(subject)
        client_id = info.get("client_id", "?")
        return _Grant(
            creds,
            f"service account {info.get('client_email', '?')} acting as {subject}",
            f"in the Google Admin console (Security → Access and data control → API controls → "
            f"Domain-wide delegation) client ID {client_id} must be granted "
            f"{', '.join(scopes)}; the user must exist and not be suspended, and the key must "
            "not be deleted or disabled",
        )
    token_file = options.token_file or default_token_file(context)
    try:
        stored = json.loads(token_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuthError(
            f"google: no sign-in stored at {token_file}; run `recruitmail login google`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"google token_file {token_file}: unreadable ({exc})") from None
    token_uri = options.token_uri or stored.get("token_uri") or DEFAULT_TOKEN_URI
    # from_authorized_user_file would ignore token_uri: build the credentials ourselves.
    creds = oauth_credentials.Credentials(  # type: ignore[no-untyped-call]
        None,
        refresh_token=stored.get("refresh_token"),
        token_uri=token_uri,
        client_id=stored.get("client_id"),
        client_secret=stored.get("client_secret"),
        scopes=scopes,
    )
    return _Grant(
        creds,
        f"the OAuth sign-in of {context.mailbox}",
        f"run `recruitmail login google` again; it asks for {', '.join(all_scopes(options))}",
    )


# ---------------------------------------------------------------------------------------------
# Calls with backoff and error mapping
# ---------------------------------------------------------------------------------------------


def _error_parts(exc: HttpError) -> tuple[int, str, str]:
    status = int(exc.resp.status)
    reason, message = "", ""
    try:
        body = json.loads(exc.content.decode("utf-8"))
        error = body.get("error", {})
        if isinstance(error, dict):
            message = str(error.get("message", ""))
            errors = error.get("errors") or []
            if errors and isinstance(errors[0], dict):
                reason = str(errors[0].get("reason", ""))
            if not reason:
                reason = str(error.get("status", ""))
        else:
            reason = str(error)
            message = str(body.get("error_description", ""))
    except (ValueError, AttributeError, UnicodeDecodeError):
        message = exc.content[:200].decode("utf-8", "replace")
    return status, reason, message


def _retry_after(exc: HttpError, what: str) -> float | None:
    """The answer's Retry-After in seconds (a number or an HTTP date), capped at an hour."""
    value = exc.resp.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    capped = limits.capped_retry_after(seconds)
    if capped < seconds:
        log.warning(
            "google %s: Retry-After of %.0f s capped at %.0f s",
            what,
            seconds,
            limits.MAX_RETRY_AFTER,
        )
    return capped


# What each call needs, for error messages: the least scope that allows it, and its HTTP shape.
CALLS: dict[str, tuple[str, str]] = {
    "events.list": ("calendar.events.readonly", "GET /calendar/v3/calendars/{id}/events"),
    "drafts.create": ("gmail.compose", "POST /gmail/v1/users/me/drafts"),
    "drafts.list": ("gmail.compose", "GET /gmail/v1/users/me/drafts"),
    "drafts.get": ("gmail.compose", "GET /gmail/v1/users/me/drafts/{id}"),
    "drafts.update": ("gmail.compose", "PUT /gmail/v1/users/me/drafts/{id}"),
    "messages.list": ("gmail.metadata", "GET /gmail/v1/users/me/messages"),
    "messages.get": ("gmail.metadata", "GET /gmail/v1/users/me/messages/{id}"),
    "threads.get": ("gmail.metadata", "GET /gmail/v1/users/me/threads/{id}"),
    "messages.modify": ("gmail.modify", "POST /gmail/v1/users/me/messages/{id}/modify"),
    "labels.list": ("gmail.modify", "GET /gmail/v1/users/me/labels"),
    "labels.create": ("gmail.modify", "POST /gmail/v1/users/me/labels"),
    "settings.getVacation": ("gmail.settings.basic", "GET /gmail/v1/users/me/settings/vacation"),
}

_ADDRESS_LIKE = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+")


def _redacted(text: str) -> str:
    """A provider's message made safe for logs and status: no mail address, bounded."""
    return limits.clip(_ADDRESS_LIKE.sub("<address>", text), 300)


def _is_throttled(status: int, reason: str) -> bool:
    return status == 429 or (status == 403 and reason in RATE_REASONS)


class _Caller:
    """Runs API requests: backoff on throttling and outages, one error vocabulary out."""

    def __init__(
        self,
        options: GoogleOptions,
        grant: _Grant,
        sleep: Sleeper,
        rng: random.Random,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._options = options
        self._grant = grant
        self._sleep = sleep
        self._monotonic = monotonic  # the clock ``sleep`` advances
        self._rng = rng
        self.requests = 0  # API requests made (token grants excluded): the bench reads it
        self._not_before = 0.0  # monotonic time before which Google asked us not to call

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Capped exponential backoff with full jitter; the server's Retry-After is a floor
        (a Retry-After longer than the cap is not waited here: the call gives up instead)."""
        cap = self._options.max_backoff_seconds
        delay = self._rng.uniform(0, min(cap, 2.0**attempt))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _wait_for_retry_after(self, what: str) -> None:
        """No request before a Retry-After that an earlier call gave up on has elapsed: a short
        one is waited here, a long one ends this call without sending anything."""
        remaining = self._not_before - self._monotonic()
        if remaining <= 0:
            return
        if remaining > self._options.max_backoff_seconds:
            raise TransientError(
                f"google {what}: Google asked us to wait; {remaining:.0f} s left",
                retry_after=remaining,
            )
        self._sleep(remaining)

    def call(
        self,
        build: Callable[[], HttpRequest],
        what: str,
        *,
        on_server_error: Callable[[], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """Execute the request ``build`` makes, retrying what Google says may be retried.

        ``on_server_error`` runs before retrying after a 5xx answer to a request that changes
        state (it may have been carried out); a non-``None`` result is returned instead.
        """
        self._wait_for_retry_after(what)
        attempt = 0
        while True:
            try:
                self.requests += 1
                result = build().execute(num_retries=0)
                return cast(dict[str, Any], result or {})
            except HttpError as exc:
                # Retry-After first: nothing below may send a request before it has elapsed.
                wait = _retry_after(exc, what)
                status, reason, message = _error_parts(exc)
                retryable = _is_throttled(status, reason) or status in SERVER_ERRORS
                give_up = (
                    not retryable
                    or attempt + 1 >= self._options.max_attempts
                    or (wait is not None and wait > self._options.max_backoff_seconds)
                )
                if give_up:
                    if wait is not None:  # the next call (another mail's) waits for it too
                        self._not_before = max(self._not_before, self._monotonic() + wait)
                    mapped = self._mapped(status, reason, message, what, wait)
                    if retryable and status in SERVER_ERRORS and on_server_error is not None:
                        # The write may have been carried out: the caller must look it up
                        # (after ``retry_after``) before trying again.
                        mapped = AmbiguousError(str(mapped), retry_after=wait)
                    raise mapped from None
                delay = self.backoff(attempt, wait)
                log.info("google %s: %s %s, retrying in %.1fs", what, status, reason, delay)
                self._sleep(delay)
                attempt += 1
                if status in SERVER_ERRORS and on_server_error is not None:
                    try:
                        found = on_server_error()
                    except TransientError as lookup:
                        raise AmbiguousError(
                            f"google {what}: HTTP {status} and the look-up failed ({lookup}); "
                            "look it up before trying again",
                            retry_after=lookup.retry_after,
                        ) from None
                    if found is not None:
                        return found
            except _Unanswered as exc:
                raise AmbiguousError(
                    f"google {what}: the connection broke after the request was sent; "
                    "look it up before trying again"
                ) from exc
            except google.auth.exceptions.RefreshError as exc:
                raise self._refresh_failed(exc) from None
            except google.auth.exceptions.TransportError as exc:
                raise TransientError(f"google sign-in for {what}: network error ({exc})") from None
            except (OSError, httplib2.HttpLib2Error) as exc:
                # Reads and failed connects: nothing was changed, a later try is safe.
                raise TransientError(f"google {what}: network error ({exc!r})") from None

    def _mapped(
        self, status: int, reason: str, message: str, what: str, wait: float | None
    ) -> Exception:
        scope, shape = CALLS.get(what, ("", ""))
        call = f"{what} ({shape})" if shape else what
        text = f"google {call}: HTTP {status} {reason}: {_redacted(message)}".strip()
        if _is_throttled(status, reason) or status in SERVER_ERRORS:
            return TransientError(text, retry_after=wait)
        if status == 410 and reason in ("fullSyncRequired", "updatedMinTooLongAgo"):
            return CursorExpired(text)
        if status == 401:
            return AuthError(f"{text}; {self._grant.who}: {self._grant.how_to_fix}")
        if status == 403 and reason in ("dailyLimitExceeded", "quotaExceeded"):
            return TransientError(text, retry_after=wait if wait is not None else 3600.0)
        if status == 403 and "metadata scope" in message.lower():
            # The request's shape is refused under gmail.metadata (q, format=raw/full): our bug,
            # not a missing grant.
            return PermanentError(text)
        if status == 403:
            needed = f"{SCOPE_PREFIX}{scope}" if scope else "the scope of this feature"
            return AuthError(
                f"{text}; {self._grant.who} needs {needed} for {what}: {self._grant.how_to_fix}"
            )
        if status == 404:
            return NotFound(text)
        return PermanentError(text)

    def _refresh_failed(self, exc: google.auth.exceptions.RefreshError) -> Exception:
        data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        code = str(data.get("error", "")) or str(exc.args[0]).partition(":")[0]
        if getattr(exc, "retryable", False):
            return TransientError(f"google sign-in: temporary failure ({exc.args[0]})")
        return AuthError(
            f"google sign-in refused for {self._grant.who} ({code}: "
            f"{data.get('error_description', exc.args[0])}); this mailbox is paused until "
            f"fixed: {self._grant.how_to_fix}"
        )


def _endpoint(root: str | None, default: str, service_path: str = "") -> str:
    url = (root or default).rstrip("/") + "/"
    if service_path and not url.endswith(service_path):
        url += service_path
    return url


def _build(api: str, version: str, endpoint: str, grant: _Grant, options: GoogleOptions) -> Any:
    http = google_auth_httplib2.AuthorizedHttp(grant.credentials, http=_http(options))
    return discovery.build(
        api,
        version,
        http=http,
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": endpoint},
    )


# ---------------------------------------------------------------------------------------------
# Calendar source
# ---------------------------------------------------------------------------------------------


class _TextOfHtml(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "tr", "h1", "h2", "h3", "h4"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._href: str | None = None
        self._link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("\n- ")
        if tag == "a":
            self._href = dict(attrs).get("href") or None
            self._link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "div", "tr", "h1", "h2", "h3", "h4", "ul", "ol"):
            self.parts.append("\n")
        if tag == "a" and self._href is not None:
            if self._href not in "".join(self._link_text):
                self.parts.append(f" <{self._href}>")
            self._href = None

    def handle_data(self, data: str) -> None:
        self.parts.append(data)
        if self._href is not None:
            self._link_text.append(data)


_LOOKS_LIKE_HTML = re.compile(r"<(?:br|p|div|a|b|i|u|ul|ol|li|span|strong|em)\b[^>]*>", re.I)


def html_to_text(description: str) -> str:
    """Google stores descriptions edited in its web UI as HTML; the core wants plain text."""
    if not _LOOKS_LIKE_HTML.search(description):
        return description
    parser = _TextOfHtml()
    parser.feed(description)
    parser.close()
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_RESPONSES = {
    "accepted": Response.ACCEPTED,
    "tentative": Response.TENTATIVE,
    "declined": Response.DECLINED,
    "needsAction": Response.NEEDS_ACTION,
}


def _zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def _when(value: Mapping[str, Any], zone: ZoneInfo) -> tuple[datetime, bool]:
    here = _zone(value.get("timeZone"), zone)
    if value.get("dateTime"):
        moment = datetime.fromisoformat(str(value["dateTime"]))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=here)
        return moment.astimezone(here), False
    day = date.fromisoformat(str(value["date"]))
    return datetime(day.year, day.month, day.day, tzinfo=here), True


def recurrence_id(original: Mapping[str, Any], zone: ZoneInfo) -> str:
    """An occurrence's original start in iCalendar form: UTC ``YYYYMMDDTHHMMSSZ``, or ``YYYYMMDD``."""
    if original.get("dateTime"):
        moment, _ = _when(original, zone)
        return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return date.fromisoformat(str(original["date"])).strftime("%Y%m%d")


def _online_url(item: Mapping[str, Any]) -> str:
    if item.get("hangoutLink"):
        return str(item["hangoutLink"])
    entry_points = (item.get("conferenceData") or {}).get("entryPoints") or []
    for kind in ("video", "more", "phone"):
        for entry in entry_points:
            if entry.get("entryPointType") == kind and entry.get("uri"):
                return str(entry["uri"])
    return ""


def event_from_google(item: Mapping[str, Any], zone: ZoneInfo) -> Event:
    """One ``events.list`` item (``singleEvents=True``) as an ``Event``."""
    start, all_day = _when(item["start"], zone)
    end, _ = _when(item.get("end") or item["start"], zone)
    attendees = tuple(
        Attendee(
            address=str(a["email"]),
            name=limits.clip(str(a.get("displayName", "")), limits.MAX_NAME_CHARS),
            response=_RESPONSES.get(str(a.get("responseStatus", "")), Response.NONE),
            is_resource=bool(a.get("resource", False)),
            is_organizer=bool(a.get("organizer", False)),
            optional=bool(a.get("optional", False)),
        )
        for a in item.get("attendees") or ()
        if a.get("email")
    )
    organizer = None
    if (item.get("organizer") or {}).get("email"):
        org = item["organizer"]
        address = normalise_address(str(org["email"]))
        answer = next((a.response for a in attendees if a.address == address), Response.ACCEPTED)
        organizer = Attendee(
            address=address,
            name=limits.clip(str(org.get("displayName", "")), limits.MAX_NAME_CHARS),
            response=answer,
            is_organizer=True,
        )
    updated = None
    if item.get("updated"):
        updated = datetime.fromisoformat(str(item["updated"]))
    original = item.get("originalStartTime")
    return Event(
        event_id=str(item["id"]),
        ical_uid=str(item.get("iCalUID") or item["id"]),
        subject=str(item.get("summary", "")),
        start=start,
        end=end,
        recurrence_id=recurrence_id(original, zone) if original else "",
        body=html_to_text(str(item.get("description", ""))),
        all_day=all_day,
        cancelled=item.get("status") == "cancelled",
        location=str(item.get("location", "")),
        online_url=_online_url(item),
        organizer=organizer,
        attendees=attendees,
        updated=updated,
        private=item.get("visibility") in ("private", "confidential"),
    )


REASON_UNREADABLE = "it could not be read (malformed event data)"
REASON_NO_ID = "it has no event id"


class _Budget:
    """What one sync may still spend: events, wall time, occurrences per series."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.events = 0
        self.per_series: dict[str, int] = {}


def _take(
    item: Any,
    zone: ZoneInfo,
    budget: _Budget,
    events: list[Event],
    removed: list[str],
    skipped: list[SkippedEvent],
) -> None:
    """One ``events.list`` item into ``events``/``removed``/``skipped``; never raises."""
    if not isinstance(item, dict):
        skipped.append(SkippedEvent("", REASON_UNREADABLE))
        return
    event_id = item.get("id")
    if not isinstance(event_id, str) or not event_id:
        skipped.append(SkippedEvent("", REASON_NO_ID))
        return
    if item.get("status") == "cancelled":
        removed.append(event_id)
        return
    budget.events += 1
    if (
        budget.events > limits.MAX_OCCURRENCES_PER_PASS
        or time.monotonic() - budget.started > limits.PASS_SECONDS
    ):
        skipped.append(SkippedEvent(event_id, limits.REASON_PASS_BUDGET))
        return
    series = item.get("recurringEventId")
    if isinstance(series, str):
        budget.per_series[series] = budget.per_series.get(series, 0) + 1
        if budget.per_series[series] > limits.MAX_OCCURRENCES_PER_SERIES:
            skipped.append(SkippedEvent(event_id, limits.REASON_TOO_MANY_OCCURRENCES))
            return
    attendees = item.get("attendees")
    if isinstance(attendees, list) and len(attendees) > limits.MAX_ATTENDEES:
        skipped.append(SkippedEvent(event_id, limits.REASON_TOO_MANY_ATTENDEES))
        return
    try:
        size = len(json.dumps(item, ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError, RecursionError):
        skipped.append(SkippedEvent(event_id, REASON_UNREADABLE))
        return
    if size > limits.MAX_EVENT_BYTES:
        skipped.append(SkippedEvent(event_id, limits.REASON_TOO_BIG))
        return
    try:
        event = event_from_google(item, zone)
    except OverflowError:
        skipped.append(SkippedEvent(event_id, limits.REASON_OUT_OF_RANGE))
        return
    except Exception as exc:  # any shape of hostile data: this event only, never the sync
        log.debug("google calendar: event %s unreadable: %r", event_id, exc)
        skipped.append(SkippedEvent(event_id, REASON_UNREADABLE))
        return
    problem = limits.event_problem(event)
    if problem is not None:
        skipped.append(SkippedEvent(event_id, problem))
        return
    events.append(limits.bounded(event))


def _encode_cursor(token: str, start: datetime, end: datetime, calendar_id: str) -> str:
    return json.dumps(
        {
            "v": 1,
            "token": token,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "cal": calendar_id,
        },
        separators=(",", ":"),
    )


def _decode_cursor(cursor: str) -> tuple[str, datetime, datetime, str] | None:
    try:
        data = json.loads(cursor)
        return (
            str(data["token"]),
            datetime.fromisoformat(data["from"]),
            datetime.fromisoformat(data["to"]),
            str(data["cal"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


class GoogleCalendarSource:
    """Reads one recruiter's Google calendar with ``events.list`` and sync tokens."""

    def __init__(
        self,
        options: SourceOptions,
        context: ConnectorContext,
        *,
        sleep: Sleeper = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._options = options
        grant = _grant(options, context, calendar_scopes(options))
        self._caller = _Caller(options, grant, sleep, rng or random.Random())
        endpoint = _endpoint(options.calendar_endpoint, DEFAULT_CALENDAR_ENDPOINT, "calendar/v3/")
        self._service = _build("calendar", "v3", endpoint, grant, options)
        self._zone_name: str | None = None
        self._fallback_zone = _zone(context.time_zone, ZoneInfo("UTC"))

    @property
    def requests(self) -> int:
        """API requests made so far."""
        return self._caller.requests

    def time_zone(self) -> str | None:
        """The calendar's own time zone, as the last ``events.list`` answer gave it.

        Before any sync it asks with one small ``events.list`` (``calendars.get`` and
        ``settings.get`` are refused under ``calendar.events.readonly``). Errors follow the
        connector contract: TransientError, AuthError naming the scope, PermanentError.
        """
        if self._zone_name is None:
            now = datetime.now(UTC).replace(microsecond=0)
            page = self._caller.call(
                lambda: self._service.events().list(
                    calendarId=self._options.calendar_id,
                    singleEvents=True,
                    maxResults=1,
                    timeMin=now.isoformat().replace("+00:00", "Z"),
                ),
                "events.list",
            )
            if isinstance(page.get("timeZone"), str) and page["timeZone"]:
                self._zone_name = str(page["timeZone"])
        return self._zone_name

    def sync(self, cursor: str | None, window: Period) -> SyncResult:
        """Full sync of ``window`` without a cursor; else what changed since the sync token."""
        if cursor is not None:
            decoded = _decode_cursor(cursor)
            if decoded is None:
                raise CursorExpired("google: the stored cursor is not one of ours")
            token, start, end, calendar_id = decoded
            if (
                calendar_id == self._options.calendar_id
                and start <= window.start
                and window.end <= end
            ):
                return self._incremental(token, start, end)
            log.info("google calendar: the window moved past the synced span; full sync")
        return self._full(window)

    def _full(self, window: Period) -> SyncResult:
        start = window.start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        end = window.end.astimezone(UTC) + WINDOW_SLACK
        events: list[Event] = []
        removed: list[str] = []
        skipped: list[SkippedEvent] = []
        params = {
            "timeMin": start.isoformat().replace("+00:00", "Z"),
            "timeMax": end.isoformat().replace("+00:00", "Z"),
        }
        token = self._pages(params, events, removed, skipped)
        return SyncResult(
            tuple(events),
            tuple(removed),
            _encode_cursor(token, start, end, self._options.calendar_id),
            full=True,
            skipped=tuple(skipped),
        )

    def _incremental(self, token: str, start: datetime, end: datetime) -> SyncResult:
        events: list[Event] = []
        removed: list[str] = []
        skipped: list[SkippedEvent] = []
        new_token = self._pages({"syncToken": token}, events, removed, skipped)
        return SyncResult(
            tuple(events),
            tuple(removed),
            _encode_cursor(new_token, start, end, self._options.calendar_id),
            full=False,
            skipped=tuple(skipped),
        )

    def _pages(
        self,
        params: dict[str, str],
        events: list[Event],
        removed: list[str],
        skipped: list[SkippedEvent],
    ) -> str:
        budget = _Budget()
        page_token: str | None = None
        while True:
            # Every page, and every later syncToken call, carries the same parameters: Google
            # ties a sync token to the query that made it.
            extra = dict(params)
            if page_token:
                extra["pageToken"] = page_token

            def request(extra: dict[str, str] = extra) -> HttpRequest:
                return self._service.events().list(
                    calendarId=self._options.calendar_id,
                    singleEvents=True,
                    maxResults=self._options.page_size,
                    **extra,
                )

            page = self._caller.call(request, "events.list")
            if isinstance(page.get("timeZone"), str) and page["timeZone"]:
                self._zone_name = str(page["timeZone"])
            zone = _zone(self._zone_name, self._fallback_zone)
            items = page.get("items") or ()
            for item in items if isinstance(items, list) else ():
                _take(item, zone, budget, events, removed, skipped)
            page_token = page.get("nextPageToken")
            if not page_token:
                sync_token = page.get("nextSyncToken")
                if not sync_token:
                    raise TransientError(
                        "google events.list: the last page carried no nextSyncToken"
                    )
                if skipped:
                    log.warning("google calendar: %d event(s) skipped, see status", len(skipped))
                return str(sync_token)

    def close(self) -> None:
        """Release the HTTP connections."""
        _close(self._service)


def _close(service: Any) -> None:
    try:
        service.close()
    except Exception:  # closing is best effort: nothing useful to do on failure
        log.debug("closing the google client failed", exc_info=True)


def open_source(
    options: SourceOptions,
    context: ConnectorContext,
    *,
    sleep: Sleeper = time.sleep,
    rng: random.Random | None = None,
) -> GoogleCalendarSource:
    """The Google Calendar source of one mailbox."""
    return GoogleCalendarSource(options, context, sleep=sleep, rng=rng)


# ---------------------------------------------------------------------------------------------
# Gmail sink
# ---------------------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def content_digest(raw: bytes) -> str:
    """A digest of what a reader sees in a mail: recipients, subject, text and HTML parts.

    Header order, transfer encoding and headers Gmail adds do not change it; any edit does.
    """
    mail = message_from_bytes(raw, policy=policy.default)
    parts = [
        ",".join(a for _, a in getaddresses([str(v) for v in mail.get_all("To", [])])).lower(),
        ",".join(a for _, a in getaddresses([str(v) for v in mail.get_all("Cc", [])])).lower(),
        str(mail.get("Subject", "")),
    ]
    for kind in ("plain", "html"):
        body = mail.get_body(preferencelist=(kind,))
        content = body.get_content() if body is not None else ""
        parts.append(content.replace("\r\n", "\n").strip() if isinstance(content, str) else "")
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:32]


def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>")


class GmailSink:
    """Writes drafts into one recruiter's Gmail with ``drafts.create`` (raw JSON, never upload).

    ``DraftRef.remote_id`` is ``DRAFT_ID:THREAD_ID:KEY_ID:CREATED_MS:RECIPIENT_DIGEST`` (see
    ``_Ref``): the draft id survives the recruiter's edits; the thread id survives sending, which
    is how a sent draft is told from a deleted one (the key id picks our mail out of a thread);
    creation time and recipient find a draft sent from an editor that moved it to a new thread.
    A sent mail found by its key has no draft id.
    """

    def __init__(
        self,
        options: SinkOptions,
        context: ConnectorContext,
        *,
        sleep: Sleeper = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._options = options
        self._context = context
        self._scopes = gmail_scopes(options)
        grant = _grant(options, context, self._scopes)
        self._caller = _Caller(options, grant, sleep, rng or random.Random(), monotonic)
        endpoint = _endpoint(options.gmail_endpoint, DEFAULT_GMAIL_ENDPOINT)
        self._service = _build("gmail", "v1", endpoint, grant, options)
        self._clock = clock
        self._label_id: str | None = None
        self._lock = threading.Lock()
        self._sent_scan: _SentScan | None = None

    @property
    def requests(self) -> int:
        """API requests made so far."""
        return self._caller.requests

    @property
    def _users(self) -> Any:
        return self._service.users()

    def _can_read_sent(self) -> bool:
        return GMAIL_METADATA in self._scopes or GMAIL_MODIFY in self._scopes

    # -- lookups --------------------------------------------------------------------------------

    def _draft_by_message_id(self, message_id: str) -> dict[str, Any] | None:
        listing = self._caller.call(
            lambda: self._users.drafts().list(
                userId="me", q=f"rfc822msgid:{_bare(message_id)}", maxResults=10
            ),
            "drafts.list",
        )
        drafts = listing.get("drafts") or []
        return cast(dict[str, Any], drafts[0]) if drafts else None

    def _get_draft(self, draft_id: str, fmt: str) -> dict[str, Any] | None:
        try:
            got = self._caller.call(
                lambda: self._users.drafts().get(userId="me", id=draft_id, format=fmt),
                "drafts.get",
            )
        except NotFound:
            return None
        return got

    def find_draft(self, key: DraftKey) -> DraftRef | None:
        """The draft whose Message-ID is the key's; once sent, its Sent copy (needs read_sent)."""
        found = self._draft_by_message_id(key.message_id())
        full = self._get_draft(str(found["id"]), "raw") if found is not None else None
        if full is not None:
            raw = _unb64(str(full["message"]["raw"]))
            mail = message_from_bytes(raw, policy=policy.default)
            ref = _Ref.of(full, key.id, _written_created(mail), _recipient_digest_of(mail))
            return DraftRef(ref.text(), _written_digest(raw))
        thread = self._sent_thread(key.message_id())
        if thread:
            return DraftRef(_Ref("", thread, key.id).text())
        return None

    def _sent_thread(self, message_id: str) -> str | None:
        """The thread of the Sent mail with ``message_id``, when the scopes let us look."""
        earlier = self._sent_message(message_id)
        return earlier[0] if earlier is not None else None

    def _sent_message(self, message_id: str) -> tuple[str, str] | None:
        """(thread id, subject) of the Sent mail with ``message_id``, when the scopes allow."""
        if GMAIL_MODIFY in self._scopes:
            listing = self._caller.call(
                lambda: self._users.messages().list(
                    userId="me", q=f"rfc822msgid:{_bare(message_id)} in:sent", maxResults=1
                ),
                "messages.list",
            )
            messages = listing.get("messages") or []
            if not messages:
                return None
            got = self._caller.call(
                lambda: self._users.messages().get(
                    userId="me", id=str(messages[0]["id"]), format="metadata",
                    metadataHeaders=["Subject"],
                ),
                "messages.get",
            )  # fmt: skip
            return str(messages[0]["threadId"]), _header(got, "subject")
        if GMAIL_METADATA in self._scopes:
            return self._sent_scan_refresh().message(_bare(message_id))
        return None

    # -- writing --------------------------------------------------------------------------------

    def _earlier(self, message_id: str) -> tuple[str, str] | None:
        """(thread id, subject) of our earlier mail ``message_id``: a draft, else a Sent mail."""
        earlier = self._draft_by_message_id(message_id)
        if earlier is not None:
            got = self._get_draft(str(earlier["id"]), "metadata")
            if got is not None:
                return str(earlier["message"]["threadId"]), _header(got["message"], "subject")
        return self._sent_message(message_id)

    def _raw(self, message: DraftMessage, created: datetime) -> tuple[str, str]:
        """The draft as base64url RFC 5322, every header through ``daemon.mime``'s unfolded
        writer; our bookkeeping headers (ASCII only) lead it."""
        data = to_bytes(message, date=created)
        digest = content_digest(data)
        stamp = int(created.timestamp() * 1000)
        lead = f"{DIGEST_HEADER}: {digest}\r\n{CREATED_HEADER}: {stamp}\r\n"
        return _b64(lead.encode("ascii") + data), digest

    def create_draft(self, message: DraftMessage) -> DraftRef:
        """Create the draft with ``drafts.create`` (JSON ``raw``); AmbiguousError if unanswered.

        A follow-up carries In-Reply-To/References to our earlier mail (for the candidate's
        mail client) but keeps its own subject; Gmail joins a draft to a thread only when the
        subjects match too, so ``threadId`` is sent only then.
        """
        created = self._clock()
        body: dict[str, Any] = {"message": {}}
        body["message"]["raw"], digest = self._raw(message, created)
        if message.in_reply_to:
            earlier = self._earlier(message.in_reply_to)
            if earlier is not None and _base_subject(earlier[1]) == _base_subject(message.subject):
                body["message"]["threadId"] = earlier[0]

        def already_there() -> dict[str, Any] | None:
            found = self._draft_by_message_id(message.message_id)
            if found is not None:
                log.info("google drafts.create: found draft %s after a server error", found["id"])
            return found

        created_draft = self._caller.call(
            lambda: self._users.drafts().create(userId="me", body=body),
            "drafts.create",
            on_server_error=already_there,
        )
        log.info("google: created draft %s (%s)", created_draft.get("id"), message.key.kind.value)
        ref = _Ref.of(
            created_draft,
            message.key.id,
            int(created.timestamp() * 1000),
            _recipient_digest(message.to[0].address) if message.to else "",
        )
        return DraftRef(ref.text(), digest)

    def draft_state(self, ref: DraftRef) -> DraftState:
        """Pending or edited while it is a draft; sent or deleted once it left the drafts.

        Designed for the worst case, a draft the recruiter edited and sent from Gmail's web
        editor (our X- headers and our Message-ID may be gone): it counts as sent when a Sent
        mail in its thread carries its key or none of ours, or when a Sent mail carrying none
        of our keys went to its recipient after it was created. A draft an editor saved under
        a new draft id is found again by its Message-ID or its thread (then it is edited).
        Without a scope that reads Sent mail (``gmail.compose`` alone) a draft that left Drafts
        cannot be told sent from deleted: it is taken as sent, so an interview that moves
        still gets a reschedule notice (a reviewable draft) rather than silence.
        """
        mine = _Ref.parse(ref.remote_id)
        full = self._get_draft(mine.draft_id, "raw") if mine.draft_id else None
        if full is None and mine.draft_id and mine.key_id:
            # The editor may have saved it under a new draft id: look for our Message-ID.
            found = self._draft_by_message_id(_message_id_of(mine.key_id, self._context.mailbox))
            if found is not None and str(found.get("id")) != mine.draft_id:
                full = self._get_draft(str(found["id"]), "raw")
        if full is not None:
            raw = _unb64(str(full["message"]["raw"]))
            expected = ref.fingerprint or _written_digest(raw)
            return DraftState.PENDING if content_digest(raw) == expected else DraftState.EDITED
        readable = self._can_read_sent()
        if readable and mine.thread_id and self._sent_in_thread(mine):
            return DraftState.SENT
        if mine.draft_id and mine.thread_id and self._draft_in_thread(mine):
            # Saved by an editor under a new draft id and a new Message-ID: still a draft, and
            # no longer as we wrote it.
            return DraftState.EDITED
        if not readable:
            log.info(
                "google: draft %s left Drafts; without gmail.metadata sent cannot be told from "
                "deleted: taken as sent",
                mine.draft_id or "?",
            )
            return DraftState.SENT
        if mine.recipient and mine.created_ms:
            since = datetime.fromtimestamp(mine.created_ms / 1000, UTC)
            newest = self._sent_scan_refresh(since).newest_to_digest(mine.recipient)
            if newest is not None and newest > since:
                return DraftState.SENT
        return DraftState.DELETED

    def _draft_in_thread(self, mine: _Ref) -> bool:
        """Whether a draft in ``mine``'s thread is ours (carries our key or none of ours)."""
        page_token: str | None = None
        for _ in range(MAX_DRAFT_PAGES):

            def request(page_token: str | None = page_token) -> HttpRequest:
                return self._users.drafts().list(userId="me", maxResults=100, pageToken=page_token)

            listing = self._caller.call(request, "drafts.list")
            for draft in listing.get("drafts") or []:
                if (draft.get("message") or {}).get("threadId") != mine.thread_id:
                    continue
                got = self._get_draft(str(draft.get("id", "")), "metadata")
                if got is None:
                    continue
                key = _header(got.get("message") or {}, KEY_HEADER)
                message_id = _header(got.get("message") or {}, "message-id")
                if key == mine.key_id or (not key and "<rm-" not in message_id):
                    return True
            page_token = listing.get("nextPageToken")
            if not page_token:
                break
        return False

    def _sent_in_thread(self, mine: _Ref) -> bool:
        try:
            thread = self._caller.call(
                lambda: self._users.threads().get(
                    userId="me",
                    id=mine.thread_id,
                    format="metadata",
                    metadataHeaders=["Message-ID", KEY_HEADER],
                ),
                "threads.get",
            )
        except NotFound:
            return False
        for message in thread.get("messages") or []:
            if SENT_LABEL not in (message.get("labelIds") or []):
                continue
            key = _header(message, KEY_HEADER.lower())
            message_id = _header(message, "message-id")
            # A thread may hold earlier mail of ours to the candidate: our key or Message-ID
            # counts, another of our keys never does. A Sent mail with neither was rebuilt by a
            # mail client: our draft starts its own thread and joins one only when the subject
            # matches our earlier mail, so such a mail in its thread is the draft, sent.
            if key == mine.key_id or f"<rm-{mine.key_id}@" in message_id:
                return True
            if not key and "<rm-" not in message_id:
                return True
        return False

    def update_draft(self, ref: DraftRef, message: DraftMessage) -> DraftRef:
        """Replace a pending draft's content (``drafts.update``); never an edited one."""
        state = self.draft_state(ref)
        if state is not DraftState.PENDING:
            raise PermanentError(f"google: draft is {state.value}; it is not overwritten")
        mine = _Ref.parse(ref.remote_id)
        created = (
            datetime.fromtimestamp(mine.created_ms / 1000, UTC)
            if mine.created_ms
            else self._clock()
        )
        raw, digest = self._raw(message, created)
        body: dict[str, Any] = {"id": mine.draft_id, "message": {"raw": raw}}
        if mine.thread_id:
            body["message"]["threadId"] = mine.thread_id
        updated = self._caller.call(
            lambda: self._users.drafts().update(userId="me", id=mine.draft_id, body=body),
            "drafts.update",
        )
        again = _Ref.of(
            updated,
            mine.key_id or message.key.id,
            mine.created_ms,
            _recipient_digest(message.to[0].address) if message.to else mine.recipient,
        )
        return DraftRef(again.text(), digest)

    def mark_obsolete(self, ref: DraftRef) -> None:
        """Put the obsolete label on the draft (needs gmail.modify); else log and leave it."""
        draft_id = _Ref.parse(ref.remote_id).draft_id
        if not self._options.label_obsolete:
            log.info(
                "google: draft %s is obsolete but not labelled: set label_obsolete = true and "
                "grant gmail.modify to have it labelled %r",
                draft_id,
                self._options.obsolete_label,
            )
            return
        full = self._get_draft(draft_id, "minimal") if draft_id else None
        if full is None:
            return  # sent or deleted meanwhile: nothing left to mark
        label = self._obsolete_label_id()
        message_id = str(full["message"]["id"])
        self._caller.call(
            lambda: self._users.messages().modify(
                userId="me", id=message_id, body={"addLabelIds": [label]}
            ),
            "messages.modify",
        )

    def _obsolete_label_id(self) -> str:
        with self._lock:
            if self._label_id is not None:
                return self._label_id
        listing = self._caller.call(lambda: self._users.labels().list(userId="me"), "labels.list")
        wanted = self._options.obsolete_label
        label_id = next(
            (str(lb["id"]) for lb in listing.get("labels") or [] if lb.get("name") == wanted), None
        )
        if label_id is None:
            created = self._caller.call(
                lambda: self._users.labels().create(
                    userId="me",
                    body={
                        "name": wanted,
                        "labelListVisibility": "labelShow",
                        "messageListVisibility": "show",
                    },
                ),
                "labels.create",
            )
            label_id = str(created["id"])
        with self._lock:
            self._label_id = label_id
        return label_id

    # -- mailbox knowledge ----------------------------------------------------------------------

    def out_of_office(self) -> list[Period]:
        """The vacation responder's span when it is on and dated (needs gmail.settings.basic)."""
        if not self._options.read_vacation:
            return []
        settings = self._caller.call(
            lambda: self._users.settings().getVacation(userId="me"), "settings.getVacation"
        )
        if not settings.get("enableAutoReply"):
            return []
        if not settings.get("endTime"):
            log.info("google: the vacation responder is on without an end date; not a vacation")
            return []
        end = datetime.fromtimestamp(int(settings["endTime"]) / 1000, UTC)
        start = (
            datetime.fromtimestamp(int(settings["startTime"]) / 1000, UTC)
            if settings.get("startTime")
            else self._clock()
        )
        return [Period(start, end)] if start < end else []

    def last_contact(self, address: str, since: datetime) -> datetime | None:
        """The newest Sent mail to ``address`` after ``since`` (needs gmail.metadata)."""
        if not self._can_read_sent():
            return None
        wanted = normalise_address(address)
        newest = self._sent_scan_refresh(since).newest_to(wanted)
        return newest if newest is not None and newest >= since else None

    def _sent_scan_refresh(self, since: datetime | None = None) -> _SentScan:
        with self._lock:
            if self._sent_scan is None:
                self._sent_scan = _SentScan()
            scan = self._sent_scan
        horizon = since or (self._clock() - timedelta(days=30))
        scan.refresh(self._caller, self._users, horizon)
        return scan

    def close(self) -> None:
        """Release the HTTP connections."""
        _close(self._service)


class _SentScan:
    """What the recruiter sent, from Sent mail headers (labelIds=SENT: allowed under metadata).

    Newest first, only messages not seen before: a refresh of an unchanged mailbox is one request.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._newest: dict[str, datetime] = {}
        self._newest_digest: dict[str, datetime] = {}
        self._threads: dict[str, tuple[str, str]] = {}  # bare Message-ID → (thread, subject)
        self._horizon: datetime | None = None

    def newest_to(self, address: str) -> datetime | None:
        return self._newest.get(address)

    def newest_to_digest(self, digest: str) -> datetime | None:
        """The newest Sent mail to the address with this digest that carries none of our keys."""
        return self._newest_digest.get(digest)

    def message(self, message_id: str) -> tuple[str, str] | None:
        return self._threads.get(message_id)

    def refresh(self, caller: _Caller, users: Any, horizon: datetime) -> None:
        deeper = self._horizon is None or horizon < self._horizon
        page_token: str | None = None
        while True:

            def request(page_token: str | None = page_token) -> HttpRequest:
                return users.messages().list(
                    userId="me", labelIds=[SENT_LABEL], maxResults=100, pageToken=page_token
                )

            listing = caller.call(request, "messages.list")
            reached_known = False
            for ref in listing.get("messages") or []:
                if ref["id"] in self._seen:
                    reached_known = True
                    if not deeper:
                        break
                    continue
                when = self._read(caller, users, str(ref["id"]))
                if when is not None and when < horizon:
                    reached_known = True
                    deeper = False
                    break
            page_token = listing.get("nextPageToken")
            if not page_token or (reached_known and not deeper):
                break
        if self._horizon is None or horizon < self._horizon:
            self._horizon = horizon

    def _read(self, caller: _Caller, users: Any, message_id: str) -> datetime | None:
        try:
            got = caller.call(
                lambda: users.messages().get(
                    userId="me",
                    id=message_id,
                    format="metadata",
                    metadataHeaders=["To", "Cc", "Date", "Message-ID", "Subject", KEY_HEADER],
                ),
                "messages.get",
            )
        except PermanentError:
            return None
        self._seen.add(message_id)
        headers = {
            h["name"].lower(): str(h["value"])
            for h in (got.get("payload") or {}).get("headers", [])
        }
        when: datetime | None = None
        if got.get("internalDate"):
            when = datetime.fromtimestamp(int(got["internalDate"]) / 1000, UTC)
        elif headers.get("date"):
            try:
                when = parsedate_to_datetime(headers["date"])
            except (TypeError, ValueError):
                when = None
        if headers.get("message-id"):
            self._threads[_bare(headers["message-id"])] = (
                str(got.get("threadId", "")),
                headers.get("subject", ""),
            )
        ours = bool(headers.get(KEY_HEADER.lower())) or "<rm-" in headers.get("message-id", "")
        if when is not None:
            for _, addr in getaddresses([headers.get("to", ""), headers.get("cc", "")]):
                if addr:
                    key = normalise_address(addr)
                    if key not in self._newest or self._newest[key] < when:
                        self._newest[key] = when
                    if ours:
                        continue  # another of our drafts, sent: not a rebuilt one
                    digest = _recipient_digest(key)
                    if digest not in self._newest_digest or self._newest_digest[digest] < when:
                        self._newest_digest[digest] = when
        return when


@dataclass(frozen=True)
class _Ref:
    """``DraftRef.remote_id``: ``DRAFT:THREAD:KEY:CREATED_MS:RECIPIENT`` (older refs have the
    first three only). The recipient is a digest, never the address."""

    draft_id: str
    thread_id: str
    key_id: str
    created_ms: int = 0
    recipient: str = ""

    @classmethod
    def of(cls, draft: Mapping[str, Any], key_id: str, created_ms: int, recipient: str) -> _Ref:
        message = draft.get("message") or {}
        return cls(str(draft.get("id", "")), str(message.get("threadId", "")), key_id,
                   created_ms, recipient)  # fmt: skip

    @classmethod
    def parse(cls, remote_id: str) -> _Ref:
        parts = (remote_id.split(":") + ["", "", "", ""])[:5]
        try:
            created = int(parts[3] or "0")
        except ValueError:
            created = 0
        return cls(parts[0], parts[1], parts[2], created, parts[4])

    def text(self) -> str:
        return ":".join(
            [self.draft_id, self.thread_id, self.key_id, str(self.created_ms or ""), self.recipient]
        ).rstrip(":")


def _recipient_digest(address: str) -> str:
    return hashlib.sha256(normalise_address(address).encode("utf-8")).hexdigest()[:20]


def _recipient_digest_of(mail: Any) -> str:
    addresses = [a for _, a in getaddresses([str(v) for v in mail.get_all("To", [])]) if a]
    return _recipient_digest(addresses[0]) if addresses else ""


def _written_created(mail: Any) -> int:
    try:
        return int(str(mail.get(CREATED_HEADER, "0")).strip() or "0")
    except ValueError:
        return 0


def _message_id_of(key_id: str, mailbox: str) -> str:
    domain = mailbox.rpartition("@")[2] or "recruitmail.invalid"
    return f"<rm-{key_id}@{domain}>"


def _header(message: Mapping[str, Any], name: str) -> str:
    """A header of a ``format=metadata`` message resource ("" when absent)."""
    for h in (message.get("payload") or {}).get("headers") or []:
        if str(h.get("name", "")).lower() == name.lower():
            return str(h.get("value", ""))
    return ""


_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|sv|aw|fwd?|vs|vb)\s*:\s*)+", re.IGNORECASE)


def _base_subject(subject: str) -> str:
    """A subject as Gmail compares them for threading: reply prefixes and spacing ignored."""
    return " ".join(_REPLY_PREFIX.sub("", subject).split()).casefold()


def _written_digest(raw: bytes) -> str:
    """The digest recorded in the draft when we wrote it ("" when a mail client dropped it)."""
    mail = message_from_bytes(raw, policy=policy.default)
    return str(mail.get(DIGEST_HEADER, "")).strip()


def open_sink(
    options: SinkOptions,
    context: ConnectorContext,
    *,
    sleep: Sleeper = time.sleep,
    rng: random.Random | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> GmailSink:
    """The Gmail draft sink of one mailbox (``sleep`` and ``monotonic``: one clock, for tests)."""
    return GmailSink(options, context, sleep=sleep, rng=rng, monotonic=monotonic)


# ---------------------------------------------------------------------------------------------
# Single-user sign-in: `recruitmail login google`
# ---------------------------------------------------------------------------------------------


def installed_app_login(
    options: GoogleOptions,
    print_fn: Callable[[str], None],
    context: ConnectorContext | None = None,
    *,
    port: int = 0,
    wait_seconds: float = 600.0,
) -> None:
    """Ask one recruiter's consent in a browser and store the refresh token (mode 0600).

    Console friendly: it prints the address to open; Google then sends the browser back to a
    one-shot listener on 127.0.0.1 (forward the port with ``ssh -L`` on a remote machine).
    """
    from google_auth_oauthlib.flow import Flow

    client = _read_json_secret(options, "google OAuth client")
    section = client.get("installed") or client.get("web")
    if not isinstance(section, dict):
        raise ConfigError(
            "google OAuth client: expected the JSON of an OAuth client of type 'Desktop app'"
        )
    if options.token_uri:
        section = {**section, "token_uri": options.token_uri}
    token_file = options.token_file
    if token_file is None:
        if context is None:
            raise ConfigError("google login: set token_file (no mailbox given)")
        token_file = default_token_file(context)

    received: dict[str, str] = {}
    done = threading.Event()

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            received["path"] = self.path
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"recruitmail: signed in. You may close this window.\n")
            done.set()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = HTTPServer(("127.0.0.1", port), Redirect)
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
    scopes = all_scopes(options)
    flow = Flow.from_client_config({"installed": section}, scopes=scopes, redirect_uri=redirect_uri)
    url, _ = flow.authorization_url(access_type="offline", prompt="consent")
    print_fn(
        "Open this address in a browser and allow recruitmail access:\n"
        f"  {url}\n"
        f"Google then returns the browser to {redirect_uri}; on a remote machine forward that "
        f"port first (ssh -L {server.server_address[1]}:127.0.0.1:{server.server_address[1]} …)."
    )
    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    try:
        if not done.wait(wait_seconds):
            raise AuthError("google login: no answer from the browser in time; run it again")
    finally:
        server.shutdown()
        server.server_close()
    try:
        # oauthlib insists on https for the redirect it parses; the listener is loopback http.
        flow.fetch_token(
            authorization_response=redirect_uri.replace("http:", "https:", 1)
            + received["path"].lstrip("/")
        )
    except Exception as exc:  # oauthlib and google-auth raise many types; all mean "refused"
        raise AuthError(f"google login: the consent was not accepted ({exc})") from None
    creds = flow.credentials
    if not creds.refresh_token:
        raise AuthError(
            "google login: Google returned no refresh token; remove the app's access "
            "in the Google account and run login again"
        )
    stored = {
        "type": "authorized_user",
        "client_id": section.get("client_id"),
        "client_secret": section.get("client_secret"),
        "refresh_token": creds.refresh_token,
        "token_uri": section.get("token_uri", DEFAULT_TOKEN_URI),
        "scopes": scopes,
    }
    _write_private(token_file, json.dumps(stored, indent=2) + "\n")
    print_fn(f"Signed in; the refresh token is stored in {token_file} (mode 0600).")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
