"""Calls to Google's APIs, shared by the calendar source and the draft sink.

Exactly-once drafting: httplib2 re-sends a request, POST included, when the server drops the
connection without answering. Our HTTP object makes one attempt for every request that changes
something and reports a dropped answer as ``AmbiguousError``; the caller then looks the draft up
by its Message-ID before trying again.

``_Caller`` retries what Google says may be retried (throttling, outages) with capped, jittered
backoff; a ``Retry-After`` is read first, capped at an hour, and no later call of the same source
or sink is sent before it is over. A write asks the mailbox's ``may_write`` before each attempt,
so a retry never leaves once this instance's lease is gone. Every other answer becomes one of the project's errors, naming
the call, the least scope it needs and how to grant it.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, cast

import google.auth.exceptions
import google_auth_httplib2
import httplib2
from googleapiclient import discovery
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest

from recruitmail.connectors.google.auth import _Grant
from recruitmail.connectors.google.options import SCOPE_PREFIX, GoogleOptions
from recruitmail.connectors.tls import ca_bundle
from recruitmail.contracts import limits
from recruitmail.contracts.errors import (
    AmbiguousError,
    AuthError,
    CursorExpired,
    PermanentError,
    TransientError,
)

log = logging.getLogger(__name__)

RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
SERVER_ERRORS = frozenset({500, 502, 503, 504})

Sleeper = Callable[[float], None]


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
        may_write: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Execute the request ``build`` makes, retrying what Google says may be retried.

        ``on_server_error`` runs before retrying after a 5xx answer to a request that changes
        state (it may have been carried out); a non-``None`` result is returned instead.
        ``may_write`` (for a request that writes to the mailbox) is asked right before each
        attempt, after every wait and look-up: when it raises (``FencedOut``), nothing more is
        sent.
        """
        self._wait_for_retry_after(what)
        attempt = 0
        while True:
            if may_write is not None:
                may_write()  # after any wait: this instance may still write
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


def _close(service: Any) -> None:
    try:
        service.close()
    except Exception:  # closing is best effort: nothing useful to do on failure
        log.debug("closing the google client failed", exc_info=True)
