"""The two small contracts every provider implements: a calendar source and a draft sink.

Terms:
- *cursor*: an opaque string a source hands back after each sync and receives on the next one.
  ``None`` asks for a full sync of the window. A source that cannot use a cursor any more raises
  ``CursorExpired``; the caller then asks again with ``None``.
- *window*: the span of time the source must cover; events outside it may be omitted.
- *key*: a ``DraftKey``. A sink stores the key *in* the draft (a Message-ID derived from it plus an
  ``X-Recruitmail-Key`` header, or a provider property), so that ``find_draft`` can find a draft it
  created even when our own ledger does not know it was created (a crash after the provider
  answered).
- *ref*: a ``DraftRef``, what a sink returns to point at a draft later.

Errors: connectors raise only the types in ``recruitmail.contracts.errors``. A call that may have
reached the provider without an answer raises ``AmbiguousError``; the caller looks the key up
before retrying.

Writes: a sink calls ``ConnectorContext.may_write()`` immediately before every request that
writes to the mailbox (create, update, flag, move), on every attempt, after any wait or retry
and after any reconnect; it raises ``FencedOut`` when this instance may no longer write (another
instance of the fleet holds the mailbox now), and the sink lets that pass without sending the
request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from recruitmail.contracts.models import (
    DraftKey,
    DraftMessage,
    DraftRef,
    DraftState,
    Period,
    PersonInfo,
    SyncResult,
)

KEY_HEADER = "X-Recruitmail-Key"
"""The header that carries ``DraftKey.id`` in every draft recruitmail writes."""


class CalendarSource(Protocol):
    """Reads one recruiter's calendar incrementally. Never writes to it."""

    def sync(self, cursor: str | None, window: Period) -> SyncResult:
        """Return what changed since ``cursor`` (everything in ``window`` when it is ``None``).

        Raises ``CursorExpired`` when the cursor is no longer accepted.
        """
        ...

    def close(self) -> None:
        """Release connections. Safe to call more than once."""
        ...


class MailboxSink(Protocol):
    """Writes drafts into one recruiter's mailbox. Never sends, never deletes."""

    def find_draft(self, key: DraftKey) -> DraftRef | None:
        """The draft carrying ``key``, wherever it is now (drafts, sent), or ``None``."""
        ...

    def create_draft(self, message: DraftMessage) -> DraftRef:
        """Create a draft carrying ``message.key``. Raises ``AmbiguousError`` if unsure it landed."""
        ...

    def draft_state(self, ref: DraftRef) -> DraftState:
        """Whether the draft is still ours and pending, edited by the recruiter, sent or deleted."""
        ...

    def update_draft(self, ref: DraftRef, message: DraftMessage) -> DraftRef:
        """Replace the content of a draft that is still pending (never an edited one)."""
        ...

    def mark_obsolete(self, ref: DraftRef) -> None:
        """Mark a draft as no longer wanted in a way the mail client shows. Never deletes it."""
        ...

    def close(self) -> None:
        """Release connections. Safe to call more than once."""
        ...


@runtime_checkable
class KnowsLastContact(Protocol):
    """Optional: a sink that can read the recruiter's sent mail."""

    def last_contact(self, address: str, since: datetime) -> datetime | None:
        """When the recruiter last sent mail to ``address`` after ``since``, if ever."""
        ...


@runtime_checkable
class KnowsOutOfOffice(Protocol):
    """Optional: a sink that can read the recruiter's scheduled absence."""

    def out_of_office(self) -> list[Period]:
        """Scheduled out-of-office periods (may be empty)."""
        ...


@runtime_checkable
class KnowsPeople(Protocol):
    """Optional: a sink backed by an organisation directory."""

    def lookup_person(self, address: str) -> PersonInfo | None:
        """Name and job title of a colleague, when the directory has them."""
        ...


@runtime_checkable
class KnowsTimeZone(Protocol):
    """Optional: a sink or source that knows the recruiter's time zone."""

    def time_zone(self) -> str | None:
        """An IANA zone name, or ``None`` when unknown."""
        ...


def always_writable() -> None:
    """The ``may_write`` of a mailbox only this process writes to (SQLite, ``once``, tests)."""


@dataclass(frozen=True)
class ConnectorContext:
    """What every connector may know about the mailbox it serves."""

    mailbox: str
    mailbox_name: str
    time_zone: str
    company_domains: tuple[str, ...]
    state_dir: Path
    country: str = "SE"  # ISO 3166 code: resolves ambiguous names such as Windows time zones
    may_write: Callable[[], None] = field(default=always_writable, compare=False)
    """Asked right before every request that writes to the mailbox, on every attempt (after any
    wait, retry or reconnect, never before them): returns when this instance may still write,
    raises ``FencedOut`` when it may not (its lease on the mailbox is gone or nearly so). Cheap:
    it reads a clock, never the network or the database."""


# -- fleets from the directory --------------------------------------------------------------


@dataclass(frozen=True)
class DirectoryMember:
    """One user of a directory group, as the organisation directory describes them."""

    address: str  # the primary mail address, normalised
    name: str = ""
    title: str = ""
    language: str = ""  # as the directory writes it ("sv-SE", "en"); "" when it has none
    time_zone: str = ""  # an IANA name when the directory has one
    id: str = ""  # the directory's own id of the user


@runtime_checkable
class GroupDirectory(Protocol):
    """Optional: an organisation directory that lists the members of a group."""

    def members(self, group: str) -> list[DirectoryMember]:
        """Every enabled user with a mailbox in ``group`` (an id or a mail address), nested
        groups included, each once. Raises the project's errors: ``AuthError`` names the
        permission to grant, ``PermanentError`` a group that does not exist, ``TransientError``
        an outage. An empty list means the directory answered that the group has no such user.
        """
        ...

    def close(self) -> None:
        """Release connections. Safe to call more than once."""
        ...


# -- the recruiter's correspondence ----------------------------------------------------------------

SENT_EXCERPT_CHARS = 600
"""What ``last_sent_text`` hands back at most: enough to tell the language a mail is written in,
too little to carry a conversation anywhere."""
SENT_SCAN_CHARS = 16 * 1024
"""How much of a sent mail's text is looked at to find the recruiter's own words."""

_REPLY_HEADER = re.compile(
    r"^\s*(?:(?:On .{1,200} wrote|.{0,200}\bskrev\b.{0,200}|Am .{1,200} schrieb.{0,200}"
    r"|.{1,200} kirjoitti.{0,200}):\s*$"
    r"|-{2,}\s*(?:Original|Opprinnelig|Oprindelig|Ursprüngliche|Alkuperäinen|Ursprungligt)"
    r"|_{10,}|From:|Från:|Fra:|Von:|Lähettäjä:)",
    re.IGNORECASE,
)
# Reply and forward headers inside a single line (a preview or snippet has no line breaks).
_INLINE_REPLY = re.compile(
    r"\s(?:On \S.{0,200}? wrote:|Den \d.{0,200}? skrev .{0,200}?:|Am \d.{0,200}? schrieb .{0,200}?:"
    r"|-{2,}\s*(?:Original|Opprinnelig|Oprindelig|Ursprüngliche|Alkuperäinen|Ursprungligt)"
    r"|(?:From|Från|Fra|Von|Lähettäjä):\s.{0,300}?(?:Sent|Skickat|Sendt|Gesendet|Lähetetty):)",
    re.IGNORECASE,
)


def own_words(text: str, limit: int = SENT_EXCERPT_CHARS) -> str:
    """The recruiter's own words at the start of a sent mail's plain text: quoted lines (``>``)
    are skipped; a reply or forward header, or the signature delimiter ``-- ``, ends them; at
    most ``limit`` characters, line breaks kept."""
    kept: list[str] = []
    for line in text[:SENT_SCAN_CHARS].splitlines():
        if _REPLY_HEADER.match(line) or line.rstrip() == "--":
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    words = "\n".join(kept).strip()
    inline = _INLINE_REPLY.search(words)
    if inline is not None:
        words = words[: inline.start()].rstrip()
    return words[:limit]


@runtime_checkable
class KnowsCorrespondence(Protocol):
    """Optional: a sink that can read what the recruiter wrote to a candidate (Sent mail)."""

    def last_sent_text(self, address: str, since: datetime) -> str | None:
        """The opening of the newest mail the recruiter sent to ``address`` (To or Cc) after
        ``since``, as plain text: ``own_words`` of its body (quoted reply and signature left
        out), at most ``SENT_EXCERPT_CHARS``. ``None`` when there is no such mail; ``""`` when
        there is one without words of its own."""
        ...
