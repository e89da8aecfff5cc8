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

- ``options``: ``SourceOptions`` / ``SinkOptions`` and the scopes each feature needs;
- ``auth``: the service-account or OAuth grant, and ``installed_app_login``;
- ``client``: one attempt for every write, backoff and ``Retry-After``, Google's errors as ours;
- ``calendar``: ``GoogleCalendarSource`` (``events.list`` with sync tokens);
- ``mail``: ``GmailSink`` (drafts, threading, the obsolete label, the vacation responder);
- ``headers``: what our drafts carry (digest, bookkeeping headers, Message-ID, the remote id);
- ``state``: where a draft stands (pending, edited, sent, deleted) and the last contact.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from recruitmail.connectors.google.auth import default_token_file, installed_app_login
from recruitmail.connectors.google.calendar import (
    REASON_NO_ID,
    REASON_UNREADABLE,
    GoogleCalendarSource,
    event_from_google,
    html_to_text,
)
from recruitmail.connectors.google.client import NotFound, Sleeper
from recruitmail.connectors.google.headers import content_digest
from recruitmail.connectors.google.mail import GmailSink
from recruitmail.connectors.google.options import (
    CALENDAR_EVENTS_READONLY,
    CALENDAR_READONLY,
    GMAIL_COMPOSE,
    GMAIL_METADATA,
    GMAIL_MODIFY,
    GMAIL_SETTINGS_BASIC,
    SCOPE_PREFIX,
    GoogleOptions,
    SinkOptions,
    SourceOptions,
    all_scopes,
    calendar_scopes,
    gmail_scopes,
)
from recruitmail.contracts.connector import ConnectorContext

__all__ = [
    "CALENDAR_EVENTS_READONLY",
    "CALENDAR_READONLY",
    "GMAIL_COMPOSE",
    "GMAIL_METADATA",
    "GMAIL_MODIFY",
    "GMAIL_SETTINGS_BASIC",
    "REASON_NO_ID",
    "REASON_UNREADABLE",
    "SCOPE_PREFIX",
    "GmailSink",
    "GoogleCalendarSource",
    "GoogleOptions",
    "NotFound",
    "SinkOptions",
    "SourceOptions",
    "all_scopes",
    "calendar_scopes",
    "content_digest",
    "default_token_file",
    "event_from_google",
    "gmail_scopes",
    "html_to_text",
    "installed_app_login",
    "open_sink",
    "open_source",
]


def open_source(
    options: SourceOptions,
    context: ConnectorContext,
    *,
    sleep: Sleeper = time.sleep,
    rng: random.Random | None = None,
) -> GoogleCalendarSource:
    """The Google Calendar source of one mailbox."""
    return GoogleCalendarSource(options, context, sleep=sleep, rng=rng)


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
