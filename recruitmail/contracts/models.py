"""The project's own data types: what connectors produce and consume, and what the core passes on.

Every datetime here is time-zone aware. Connectors translate provider objects into these types;
nothing provider-specific travels further.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property


def normalise_address(address: str) -> str:
    """A mail address as recruitmail identifies people: stripped, NFC, lower case."""
    cleaned = address.strip().strip("<>").strip()
    if cleaned.lower().startswith("mailto:"):
        cleaned = cleaned[len("mailto:") :]
    cleaned = unicodedata.normalize("NFC", cleaned).lower()
    local, at, domain = cleaned.rpartition("@")
    if not at:
        return cleaned
    # "anna@example.se." is the same mailbox as "anna@example.se" (a fully qualified domain),
    # and "xn--exmple-cua.se" is "exämple.se" as a provider may spell it.
    domain = domain.rstrip(".")
    if "xn--" in domain:
        with contextlib.suppress(UnicodeError):  # not a valid IDNA name: kept as written
            domain = unicodedata.normalize("NFC", domain.encode("ascii").decode("idna")).lower()
    return f"{local}@{domain}"


class Response(enum.StrEnum):
    """An attendee's answer to an invitation."""

    ACCEPTED = "accepted"
    TENTATIVE = "tentative"
    DECLINED = "declined"
    NEEDS_ACTION = "needs_action"
    NONE = "none"


@dataclass(frozen=True)
class Attendee:
    """One participant of a calendar event, as the calendar describes them (untrusted text)."""

    address: str
    name: str = ""
    response: Response = Response.NONE
    is_resource: bool = False
    is_organizer: bool = False
    optional: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalise_address(self.address))


@dataclass(frozen=True)
class Event:
    """One calendar event occurrence, normalised.

    ``event_id`` is the source's stable id of this occurrence; ``ical_uid`` plus
    ``recurrence_id`` (the original start of an occurrence of a series, "" for single events)
    identify it across providers and survive moves.
    """

    event_id: str
    ical_uid: str
    subject: str
    start: datetime
    end: datetime
    recurrence_id: str = ""
    body: str = ""
    all_day: bool = False
    cancelled: bool = False
    location: str = ""
    online_url: str = ""
    organizer: Attendee | None = None
    attendees: tuple[Attendee, ...] = ()
    categories: tuple[str, ...] = ()
    updated: datetime | None = None
    private: bool = False  # marked private/confidential: never stored, never an interview

    @property
    def occasion(self) -> str:
        """The occurrence's identity for draft keys: iCalUID, plus the original start of an occurrence."""
        return f"{self.ical_uid}/{self.recurrence_id}" if self.recurrence_id else self.ical_uid


@dataclass(frozen=True)
class SkippedEvent:
    """An event a source could not or would not turn into an ``Event`` (malformed, absurd, over
    a budget). ``event_id`` is the source's id when it has one (it may hold calendar text: log it
    only at DEBUG); ``reason`` is ours and safe to show."""

    event_id: str
    reason: str


@dataclass(frozen=True)
class SyncResult:
    """What one incremental sync returned.

    ``full`` means the events are the whole calendar window: anything not in it is gone.
    ``removed`` holds ``event_id`` values that disappeared since the cursor. ``skipped`` holds
    events left out on purpose; one bad event never costs the others (they are still returned).
    """

    events: tuple[Event, ...]
    removed: tuple[str, ...]
    cursor: str
    full: bool
    skipped: tuple[SkippedEvent, ...] = ()


@dataclass(frozen=True)
class Period:
    """A span of time, e.g. a recruiter's vacation; ``end`` is exclusive."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class PersonInfo:
    """What a directory knows of a colleague."""

    address: str
    name: str = ""
    role: str = ""
    bio: str = ""


class MailKind(enum.StrEnum):
    """The touchpoints, in the order of their priority (first wins when folding)."""

    WELCOME = "welcome"
    INTERVIEW_DETAILS = "interview_details"
    RESCHEDULE_NOTICE = "reschedule_notice"
    THANK_YOU = "thank_you"
    VACATION_NOTICE = "vacation_notice"
    HOLIDAY_GREETING = "holiday_greeting"
    WEEKEND_GREETING = "weekend_greeting"
    STATUS_UPDATE = "status_update"

    @property
    def priority(self) -> int:
        """Lower is more important; booking mails share the top rank."""
        return {
            MailKind.WELCOME: 0,
            MailKind.INTERVIEW_DETAILS: 0,
            MailKind.RESCHEDULE_NOTICE: 0,
            MailKind.THANK_YOU: 1,
            MailKind.VACATION_NOTICE: 2,
            MailKind.HOLIDAY_GREETING: 3,
            MailKind.WEEKEND_GREETING: 4,
            MailKind.STATUS_UPDATE: 5,
        }[self]

    @property
    def is_announcement(self) -> bool:
        """Mails that announce an interview's time, and so go stale when it moves."""
        return self in (MailKind.WELCOME, MailKind.INTERVIEW_DETAILS, MailKind.RESCHEDULE_NOTICE)


@dataclass(frozen=True)
class DraftKey:
    """The deterministic identity of one planned mail; drafted at most once, ever."""

    mailbox: str
    candidate: str
    kind: MailKind
    occasion: str

    @property
    def text(self) -> str:
        return f"{self.mailbox}|{self.candidate}|{self.kind.value}|{self.occasion}"

    @cached_property
    def id(self) -> str:
        """A short opaque digest of the key: safe in headers, file names and provider queries."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:32]

    def message_id(self) -> str:
        """The RFC 5322 Message-ID every draft for this key carries."""
        domain = self.mailbox.rpartition("@")[2] or "recruitmail.invalid"
        return f"<rm-{self.id}@{domain}>"


class DraftState(enum.StrEnum):
    """What became of a draft in the mailbox."""

    PENDING = "pending"  # still a draft, as we wrote it
    EDITED = "edited"  # still a draft, changed by the recruiter
    SENT = "sent"
    DELETED = "deleted"


@dataclass(frozen=True)
class Recipient:
    address: str
    name: str = ""


@dataclass(frozen=True)
class DraftMessage:
    """A rendered mail, ready for a sink. Header values are already sanitised."""

    key: DraftKey
    sender: Recipient
    to: tuple[Recipient, ...]
    subject: str
    text: str
    html: str
    cc: tuple[Recipient, ...] = ()
    in_reply_to: str = ""
    categories: tuple[str, ...] = ()

    @property
    def message_id(self) -> str:
        return self.key.message_id()


@dataclass(frozen=True)
class DraftRef:
    """Where a sink put a draft: an opaque provider id and a fingerprint of what we wrote."""

    remote_id: str
    fingerprint: str = ""


_pseudonym_key = b""


def install_pseudonym_key(key: bytes) -> None:
    """Key every pseudonym of this process with the install's secret (kept in the state database).

    Without a key a pseudonym would be a plain hash that anyone can confirm by hashing a guessed
    address; with it, only someone holding the state database can.
    """
    global _pseudonym_key
    _pseudonym_key = key


def pseudonym(address: str) -> str:
    """A stable short stand-in for a person's address in logs above DEBUG ("cand-1a2b3c4d"),
    keyed with the install's secret (HMAC-SHA256)."""
    digest = hmac.new(
        _pseudonym_key, normalise_address(address).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    return f"cand-{digest[:8]}"
