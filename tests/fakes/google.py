"""A strict fake of Google Calendar v3, Gmail v1 and Google's OAuth token endpoint, on loopback HTTP.

It speaks the documented JSON shapes and refuses what real Google refuses: unknown or expired
tokens, scopes that do not cover the call (the table in the discovery documents), ``syncToken``
mixed with ``timeMin``/``timeMax``/``q``/…, a changed query under a sync token, malformed ``raw``
messages. It also fails loudly on what recruitmail must never do: every request to a send
endpoint (``drafts.send``, ``messages.send``) or to an ``/upload/`` path is recorded in
``violations``, which the test fixtures assert to be empty.

Controls for tests (plain method calls, not HTTP): ``put``/``delete`` calendar events from
``EventSpec``; ``expire_sync_tokens``; ``edit_draft``/``send_draft``/``delete_draft`` as the
recruiter's client would (``send_draft(..., web_edit=True)``: sent from Gmail's web editor, which
drops our headers and makes a new Message-ID); ``put_raw_event`` (any event resource, as it is);
``add_sent``; ``set_vacation``; ``revoke``; fault injection with ``inject_faults`` (a share of
answers become 429 / 403 rateLimitExceeded / 503, with ``retry_after`` a Retry-After header),
``fail_always`` (every request to a path part fails until ``clear_failures``) and
``drop_after_create`` (commit a ``drafts.create`` and then drop the connection). Requests that
arrive before a Retry-After the fake sent has elapsed (by ``clock``) are counted in
``early_requests``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from dateutil.rrule import rrulestr

from tests.scenario.spec import EventSpec

SCOPE = "https://www.googleapis.com/auth/"
FULL_MAIL = "https://mail.google.com/"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _scopes(*names: str) -> frozenset[str]:
    return frozenset(FULL_MAIL if n == "" else SCOPE + n for n in names)


# Which scopes allow which call: read from the discovery documents of google-api-python-client.
ALLOWED = {
    "events.list": _scopes(
        "calendar", "calendar.readonly", "calendar.events", "calendar.events.readonly"
    ),
    "drafts.create": _scopes("", "gmail.compose", "gmail.modify"),
    "drafts.update": _scopes("", "gmail.compose", "gmail.modify"),
    "drafts.list": _scopes("", "gmail.compose", "gmail.modify", "gmail.readonly"),
    "drafts.get": _scopes("", "gmail.compose", "gmail.modify", "gmail.readonly"),
    "messages.list": _scopes("", "gmail.metadata", "gmail.modify", "gmail.readonly"),
    "messages.get": _scopes("", "gmail.metadata", "gmail.modify", "gmail.readonly"),
    "threads.get": _scopes("", "gmail.metadata", "gmail.modify", "gmail.readonly"),
    "messages.modify": _scopes("", "gmail.modify"),
    "labels.list": _scopes("", "gmail.labels", "gmail.metadata", "gmail.modify", "gmail.readonly"),
    "labels.create": _scopes("", "gmail.labels", "gmail.modify"),
    "settings.getVacation": _scopes("", "gmail.modify", "gmail.readonly", "gmail.settings.basic"),
    "members.list": _scopes(
        "admin.directory.group",
        "admin.directory.group.member",
        "admin.directory.group.member.readonly",
        "admin.directory.group.readonly",
    ),
    "users.get": _scopes("admin.directory.user", "admin.directory.user.readonly"),
}
METADATA_ONLY = SCOPE + "gmail.metadata"
FULL_READ = _scopes("", "gmail.modify", "gmail.readonly")
SYNC_TOKEN_FORBIDS = ("timeMin", "timeMax", "q", "orderBy", "updatedMin", "iCalUID")
SYSTEM_LABELS = ("INBOX", "SENT", "DRAFT", "TRASH", "SPAM", "STARRED", "IMPORTANT", "UNREAD")
_RESPONSE_STATUS = {
    "accepted": "accepted",
    "tentative": "tentative",
    "declined": "declined",
    "needs_action": "needsAction",
}


class GoogleError(Exception):
    """An error answer in Google's JSON shape."""

    def __init__(self, code: int, reason: str, message: str, status: str = "") -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.retry_after: int | None = None
        self.status = status or {
            400: "INVALID_ARGUMENT",
            401: "UNAUTHENTICATED",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            409: "ALREADY_EXISTS",
            410: "FAILED_PRECONDITION",
            429: "RESOURCE_EXHAUSTED",
            503: "UNAVAILABLE",
        }.get(code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
                "status": self.status,
            }
        }


def not_found() -> GoogleError:
    return GoogleError(404, "notFound", "Requested entity was not found.")


def rfc3339(moment: datetime) -> str:
    return moment.isoformat()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    if any(c in text for c in "+/"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    user: str
    api: str  # "calendar", "gmail", "token", "auth"


@dataclass
class ServiceAccount:
    client_email: str
    client_id: str
    key_id: str
    public_key: rsa.RSAPublicKey
    info: dict[str, Any]  # the JSON key file a test writes to disk
    disabled: bool = False


@dataclass
class Message:
    id: str
    thread_id: str
    raw: bytes
    labels: set[str]
    internal_date: int  # epoch ms

    @property
    def parsed(self) -> EmailMessage:
        mail = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        return mail

    @property
    def message_id(self) -> str:
        return str(self.parsed.get("Message-ID", "")).strip()


@dataclass
class Token:
    user: str
    scopes: frozenset[str]
    expires: float


@dataclass
class Faults:
    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "403", "503")
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    injected: int = 0


# ---------------------------------------------------------------------------------------------
# Calendar: EventSpec → events.list items (singleEvents expansion)
# ---------------------------------------------------------------------------------------------


def base_event_id(uid: str) -> str:
    """A Google-like event id (base32hex characters) derived from the iCalUID."""
    return "e" + hashlib.sha1(uid.encode()).hexdigest()[:24]


def _when(moment: datetime, all_day: bool) -> dict[str, str]:
    if all_day:
        return {"date": moment.date().isoformat()}
    zone = getattr(moment.tzinfo, "key", "UTC")
    return {"dateTime": rfc3339(moment), "timeZone": zone}


def _instance_suffix(original: datetime, all_day: bool) -> str:
    if all_day:
        return original.strftime("%Y%m%d")
    return original.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def spec_items(spec: EventSpec, owner: str, html_descriptions: bool) -> dict[str, dict[str, Any]]:
    """The items ``events.list(singleEvents=True)`` shows for one spec, by event id."""
    base = base_event_id(spec.uid)
    common: dict[str, Any] = {
        "kind": "calendar#event",
        "status": "confirmed",
        "htmlLink": f"https://calendar.example/event?eid={base}",
        "summary": spec.subject,
        "iCalUID": spec.uid,
        "sequence": spec.sequence,
        "creator": {"email": spec.organizer.address},
        "organizer": {"email": spec.organizer.address, "displayName": spec.organizer.name},
        "reminders": {"useDefault": True},
        "eventType": "default",
    }
    if spec.organizer.address.lower() == owner.lower():
        common["organizer"]["self"] = True
        common["creator"]["self"] = True
    if not spec.organizer.name:
        del common["organizer"]["displayName"]
    if spec.body:
        common["description"] = (
            html.escape(spec.body, quote=False).replace("\n", "<br>")
            if html_descriptions
            else spec.body
        )
    if spec.location:
        common["location"] = spec.location
    if spec.online_url:
        if "meet.google.com" in spec.online_url:
            common["hangoutLink"] = spec.online_url
        common["conferenceData"] = {
            "entryPoints": [
                {"entryPointType": "video", "uri": spec.online_url, "label": spec.online_url}
            ],
            "conferenceSolution": {"key": {"type": "addOn"}, "name": "Video meeting"},
            "conferenceId": hashlib.sha1(spec.online_url.encode()).hexdigest()[:10],
        }
    attendees = []
    if spec.attendees:
        organizer: dict[str, Any] = {
            "email": spec.organizer.address,
            "organizer": True,
            "responseStatus": _RESPONSE_STATUS[spec.organizer.response],
        }
        if spec.organizer.name:
            organizer["displayName"] = spec.organizer.name
        attendees.append(organizer)
    for who in spec.attendees:
        if who.address.lower() == spec.organizer.address.lower():
            continue  # Google lists the organizer once, flagged organizer
        entry: dict[str, Any] = {
            "email": who.address,
            "responseStatus": _RESPONSE_STATUS[who.response],
        }
        if who.name:
            entry["displayName"] = who.name
        if who.resource:
            entry["resource"] = True
        attendees.append(entry)
    for entry in attendees:
        if entry["email"].lower() == owner.lower():
            entry["self"] = True
    if attendees:
        common["attendees"] = attendees

    if not spec.rrule:
        item = dict(common, id=base, start=_when(spec.start, spec.all_day))
        item["end"] = _when(spec.end, spec.all_day)
        return {base: item}

    duration = spec.end - spec.start
    rule = rrulestr(spec.rrule, dtstart=spec.start)
    excluded = {ex.astimezone(UTC) for ex in spec.exdates}
    moved = {m.original_start.astimezone(UTC): m for m in spec.moved}
    out: dict[str, dict[str, Any]] = {}
    for original in itertools.islice(rule, 500):
        if original.astimezone(UTC) in excluded:
            continue
        instance_id = f"{base}_{_instance_suffix(original, spec.all_day)}"
        start, end = original, original + duration
        move = moved.get(original.astimezone(UTC))
        if move is not None:
            start, end = move.start, move.end
        item = dict(common, id=instance_id, recurringEventId=base)
        item["start"] = _when(start, spec.all_day)
        item["end"] = _when(end, spec.all_day)
        item["originalStartTime"] = _when(original, spec.all_day)
        out[instance_id] = item
    return out


def _item_span(item: dict[str, Any]) -> tuple[datetime, datetime]:
    def moment(value: dict[str, str]) -> datetime:
        if "dateTime" in value:
            return datetime.fromisoformat(value["dateTime"])
        day = date.fromisoformat(value["date"])
        return datetime(day.year, day.month, day.day, tzinfo=UTC)

    return moment(item["start"]), moment(item["end"])


@dataclass
class SyncToken:
    seq: int
    signature: str
    generation: int


@dataclass
class PageToken:
    ids: list[str]
    seq: int
    signature: str
    window: tuple[datetime, datetime] | None
    since: int | None


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class GoogleFake:
    """Calendar + Gmail + OAuth for one Workspace domain, on ``127.0.0.1`` (``start``/``stop``)."""

    def __init__(
        self,
        *,
        time_zone: str = "Europe/Stockholm",
        page_limit: int = 250,
        html_descriptions: bool = True,
        token_lifetime: int = 3599,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.tls = tls  # (certificate file, key file): serve https instead of http
        self.time_zone = time_zone
        self.page_limit = page_limit
        self.html_descriptions = html_descriptions
        self.token_lifetime = token_lifetime
        self.lock = threading.RLock()
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.faults = Faults()
        self.failures: dict[str, GoogleError] = {}  # path part → the error every match gets
        self.retry_after: int | None = None  # Retry-After (seconds) sent with injected errors
        self.clock: Callable[[], float] = time.time  # what "now" is for Retry-After bookkeeping
        self.not_before = 0.0  # clock() before which a request is early (a Retry-After ignored)
        self.early_requests = 0  # API requests that arrived before their Retry-After elapsed
        self._drops: list[str] = []  # "fin" | "rst" for the next drafts.create answers
        self._ids = itertools.count(1000)
        # identity
        self.users: set[str] = set()
        self.service_accounts: dict[str, ServiceAccount] = {}
        self.delegation: dict[str, frozenset[str]] = {}  # client_id → scopes the admin granted
        self.oauth_clients: dict[str, str] = {}  # client_id → secret
        self.refresh_tokens: dict[str, Token] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, Token] = {}
        self.consenting_user = ""
        # calendar, per user
        self._specs: dict[str, dict[str, EventSpec]] = {}
        self._items: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}
        self._seq = 0
        self._generation = 0
        self._sync_tokens: dict[str, SyncToken] = {}
        self._page_tokens: dict[str, PageToken] = {}
        # gmail, per user
        self.messages: dict[str, dict[str, Message]] = {}
        self.drafts: dict[str, dict[str, str]] = {}  # draft id → message id
        self.labels: dict[str, dict[str, str]] = {}  # label id → name (user labels)
        self.vacation: dict[str, dict[str, Any]] = {}
        # the Workspace directory: users by id, groups by address, who may read them
        self.directory_users: dict[str, dict[str, Any]] = {}
        self.directory_groups: dict[str, list[str]] = {}
        self.directory_admins: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> GoogleFake:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def token_uri(self) -> str:
        return self.url + "token"

    @property
    def auth_uri(self) -> str:
        return self.url + "o/oauth2/auth"

    def api_requests(self, api: str | None = None) -> list[Recorded]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.api in ("calendar", "gmail") and (api is None or r.api == api)
            ]

    # -- identity controls ----------------------------------------------------------------------

    def add_user(self, address: str) -> None:
        with self.lock:
            self.users.add(address.lower())
            self._specs.setdefault(address.lower(), {})
            self._items.setdefault(address.lower(), {})
            self.messages.setdefault(address.lower(), {})
            self.drafts.setdefault(address.lower(), {})
            self.labels.setdefault(address.lower(), {})

    def create_service_account(self, name: str = "recruitmail") -> tuple[dict[str, Any], str]:
        """A new key pair; returns the key file JSON (private key inside) and the client id."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        client_id = str(100000000000000000000 + next(self._ids))
        email = f"{name}@recruitmail-test.iam.gserviceaccount.com"
        key_id = hashlib.sha1(pem.encode()).hexdigest()
        info = {
            "type": "service_account",
            "project_id": "recruitmail-test",
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": client_id,
            "auth_uri": self.auth_uri,
            "token_uri": self.token_uri,
        }
        with self.lock:
            self.service_accounts[email] = ServiceAccount(
                email, client_id, key_id, key.public_key(), info
            )
        return info, client_id

    def grant_delegation(self, client_id: str, scopes: list[str]) -> None:
        """What the administrator enters under Domain-wide delegation."""
        with self.lock:
            self.delegation[client_id] = frozenset(scopes)

    def add_oauth_client(self) -> dict[str, Any]:
        """An OAuth client of type Desktop app; returns its client JSON."""
        client_id = f"{next(self._ids)}-test.apps.googleusercontent.com"
        secret = hashlib.sha1(client_id.encode()).hexdigest()
        with self.lock:
            self.oauth_clients[client_id] = secret
        return {
            "installed": {
                "client_id": client_id,
                "client_secret": secret,
                "auth_uri": self.auth_uri,
                "token_uri": self.token_uri,
                "redirect_uris": ["http://localhost"],
            }
        }

    def issue_refresh_token(self, user: str, scopes: list[str]) -> str:
        token = "1//rt-" + hashlib.sha1(f"{user}{next(self._ids)}".encode()).hexdigest()
        with self.lock:
            self.refresh_tokens[token] = Token(user.lower(), frozenset(scopes), float("inf"))
        return token

    def revoke(self) -> None:
        """Revoke every grant: refresh tokens die, service account keys are disabled."""
        with self.lock:
            self.refresh_tokens.clear()
            self.tokens.clear()
            for account in self.service_accounts.values():
                account.disabled = True

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    # -- calendar controls ----------------------------------------------------------------------

    def put(self, user: str, spec: EventSpec) -> None:
        """Create or replace the event ``spec.uid`` in ``user``'s primary calendar."""
        with self.lock:
            user = user.lower()
            self._specs[user][spec.uid] = spec
            items = {} if spec.cancelled else spec_items(spec, user, self.html_descriptions)
            self._apply(user, base_event_id(spec.uid), items)

    def delete(self, user: str, uid: str) -> None:
        with self.lock:
            user = user.lower()
            self._specs[user].pop(uid, None)
            self._apply(user, base_event_id(uid), {})

    def put_raw_event(self, user: str, resource: dict[str, Any]) -> str:
        """Store an arbitrary Calendar event resource as it is (hostile or malformed ones too);
        events.list serves it like any other. Returns the key it is stored under (its ``id``
        when that is a string)."""
        with self.lock:
            user = user.lower()
            event_id = resource.get("id")
            key = event_id if isinstance(event_id, str) and event_id else f"raw{next(self._ids)}"
            self._seq += 1
            self._items[user][key] = (self._seq, dict(resource))
            return key

    def _apply(self, user: str, base: str, items: dict[str, dict[str, Any]]) -> None:
        store = self._items[user]
        mine = [i for i in store if i == base or i.startswith(base + "_")]
        for event_id in mine:
            if event_id not in items and store[event_id][1].get("status") != "cancelled":
                self._seq += 1
                old = store[event_id][1]
                tomb: dict[str, Any] = {"kind": "calendar#event", "id": event_id}
                tomb["status"] = "cancelled"
                for key in ("recurringEventId", "originalStartTime"):
                    if key in old:
                        tomb[key] = old[key]
                store[event_id] = (self._seq, tomb)
        for event_id, item in items.items():
            previous = store.get(event_id)
            if previous is not None and _same(previous[1], item):
                continue
            self._seq += 1
            stamp = datetime.now(UTC).replace(microsecond=0)
            item = dict(item, etag=f'"{self._seq}"', updated=stamp.isoformat())
            item["created"] = (previous[1].get("created") if previous else None) or item["updated"]
            store[event_id] = (self._seq, item)

    def expire_sync_tokens(self) -> None:
        """Every sync token issued so far answers 410 fullSyncRequired from now on."""
        with self.lock:
            self._generation += 1

    # -- gmail controls -------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{0x18C0000000000000 + next(self._ids) * 7919:x}"

    def draft_messages(self, user: str) -> list[Message]:
        """The messages now in Drafts, oldest first."""
        with self.lock:
            box = self.messages[user.lower()]
            return [box[m] for m in self.drafts[user.lower()].values()]

    def edit_draft(self, user: str, draft_id: str, *, web_edit: bool = False) -> str:
        """What Gmail's editor does: new content, a new message id, the same draft id.

        ``web_edit``: the worst case reported for Gmail's web editor: the draft is saved under a
        new draft id, with a new Message-ID (the thread stays). Returns the draft id now.
        """
        with self.lock:
            user = user.lower()
            old = self.messages[user][self.drafts[user][draft_id]]
            mail = old.parsed
            text_part = mail.get_body(preferencelist=("plain",))
            html_part = mail.get_body(preferencelist=("html",))
            assert text_part is not None and html_part is not None
            text = str(text_part.get_content()) + "\nHälsningar, Rut (edited by hand)\n"
            out = EmailMessage()
            for name in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "References"):
                if mail.get(name):
                    out[name] = str(mail[name])
            if web_edit:
                del out["Message-ID"]
                out["Message-ID"] = make_msgid(domain="mail.gmail.com")
            out.set_content(text)
            out.add_alternative(f"<div>{html.escape(text)}</div>", subtype="html")
            new = Message(self._new_id(), old.thread_id, out.as_bytes(), set(old.labels), _now())
            del self.messages[user][old.id]
            self.messages[user][new.id] = new
            if web_edit:
                del self.drafts[user][draft_id]
                draft_id = f"r{next(self._ids) * 104729}"
            self.drafts[user][draft_id] = new.id
            return draft_id

    def send_draft(
        self,
        user: str,
        draft_id: str,
        when: datetime | None = None,
        *,
        web_edit: bool = False,
        new_subject: str | None = None,
    ) -> Message:
        """The recruiter presses Send: the draft leaves Drafts, the mail lands in Sent.

        ``web_edit``: sent from Gmail's web editor, which rebuilds the message: our
        ``X-Recruitmail-*`` headers are gone, the Message-ID and the message id are new (the
        thread stays). ``new_subject`` (implies ``web_edit``): the recruiter also changed the
        subject, and Gmail files the sent mail in a new thread.
        """
        with self.lock:
            user = user.lower()
            message = self.messages[user][self.drafts[user].pop(draft_id)]
            stamp = int(when.timestamp() * 1000) if when else _now()
            if not web_edit and new_subject is None:
                message.labels = (message.labels - {"DRAFT"}) | {"SENT"}
                message.internal_date = stamp
                return message
            mail = message.parsed
            out = EmailMessage()
            for name, value in mail.items():
                if name.lower().startswith("x-recruitmail") or name.lower() in (
                    "message-id",
                    "subject",
                    "content-type",
                    "content-transfer-encoding",
                    "mime-version",
                ):
                    continue
                out[name] = str(value)
            out["Subject"] = new_subject if new_subject is not None else str(mail["Subject"])
            out["Message-ID"] = make_msgid(domain="mail.gmail.com")
            text_part = mail.get_body(preferencelist=("plain",))
            html_part = mail.get_body(preferencelist=("html",))
            out.set_content(str(text_part.get_content()) if text_part is not None else "")
            if html_part is not None:
                out.add_alternative(str(html_part.get_content()), subtype="html")
            thread = message.thread_id if new_subject is None else self._new_id()
            sent = Message(self._new_id(), thread, out.as_bytes(), {"SENT"}, stamp)
            del self.messages[user][message.id]
            self.messages[user][sent.id] = sent
            return sent

    def delete_draft(self, user: str, draft_id: str) -> None:
        with self.lock:
            user = user.lower()
            del self.messages[user][self.drafts[user].pop(draft_id)]

    def add_sent(
        self, user: str, to: str, when: datetime, subject: str = "Hej", body: str = "Hej!\n"
    ) -> Message:
        with self.lock:
            mail = EmailMessage()
            mail["From"] = user
            mail["To"] = to
            mail["Subject"] = subject
            mail["Date"] = format_datetime(when)
            mail["Message-ID"] = make_msgid(domain="example.se")
            mail.set_content(body)
            message = Message(
                self._new_id(),
                self._new_id(),
                mail.as_bytes(),
                {"SENT"},
                int(when.timestamp() * 1000),
            )
            self.messages[user.lower()][message.id] = message
            return message

    def label_names(self, user: str, message_id: str) -> set[str]:
        with self.lock:
            user = user.lower()
            message = self.messages[user].get(message_id)
            if message is None:
                return set()
            return {self.labels[user].get(lb, lb) for lb in message.labels}

    def set_vacation(self, user: str, settings: dict[str, Any]) -> None:
        with self.lock:
            self.vacation[user.lower()] = settings

    # -- directory controls ---------------------------------------------------------------------

    def add_directory_user(
        self,
        address: str,
        name: str,
        *,
        title: str | None = None,
        language: str | None = None,
        suspended: bool = False,
    ) -> str:
        """A Workspace user as the Admin SDK describes it; returns its id."""
        user_id = str(100000000000 + int(hashlib.sha1(address.encode()).hexdigest()[:8], 16))
        user: dict[str, Any] = {
            "kind": "admin#directory#user",
            "id": user_id,
            "primaryEmail": address.lower(),
            "name": {"fullName": name, "givenName": name.split(" ")[0]},
            "suspended": suspended,
            "archived": False,
        }
        if title is not None:
            user["organizations"] = [
                {"title": "Intern", "primary": False},
                {"title": title, "primary": True, "type": "work"},
            ]
        if language is not None:
            user["languages"] = [
                {"languageCode": "en", "preference": "not_preferred"},
                {"languageCode": language, "preference": "preferred"},
            ]
        with self.lock:
            self.directory_users[user_id] = user
        return user_id

    def set_directory_group(self, address: str, members: list[str]) -> None:
        """A group whose members are user or group addresses (groups may nest)."""
        with self.lock:
            self.directory_groups[address.lower()] = [m.lower() for m in members]

    def directory(self, token: Token, rest: list[str], q: dict[str, list[str]]) -> dict[str, Any]:
        """``members.list`` and ``users.get`` of the Admin SDK Directory API, as documented:
        ``maxResults`` 1..200, ``pageToken`` paging, ``includeDerivedMembership`` flattening nested
        groups; ``viewType`` admin_view (the default) or domain_public; the impersonated user
        must hold an admin role that may read groups and users."""
        one = {k: v[-1] for k, v in q.items()}
        with self.lock:
            if token.user not in self.directory_admins:
                raise GoogleError(403, "forbidden", "Not Authorized to access this resource/api")
            if len(rest) == 3 and rest[0] == "groups" and rest[2] == "members":
                _check(token, "members.list")
                unknown = set(one) - {
                    "includeDerivedMembership", "maxResults", "pageToken", "roles", "alt",
                    "prettyPrint", "fields",
                }  # fmt: skip
                if unknown:
                    raise GoogleError(
                        400, "invalidParameter", f"Unknown parameter: {sorted(unknown)}"
                    )
                size = _int_param(one, "maxResults", 200, minimum=1)
                if size > 200:
                    raise GoogleError(400, "invalid", "Invalid Input: maxResults")
                members = self._group_members(
                    rest[1].lower(), one.get("includeDerivedMembership") == "true"
                )
                start = int(one.get("pageToken") or 0)
                answer: dict[str, Any] = {
                    "kind": "admin#directory#members",
                    "members": members[start : start + size],
                }
                if start + size < len(members):
                    answer["nextPageToken"] = str(start + size)
                return answer
            if len(rest) == 2 and rest[0] == "users":
                _check(token, "users.get")
                view = one.get("viewType", "admin_view")
                if view not in ("admin_view", "domain_public"):
                    raise GoogleError(400, "invalid", "Invalid Input: viewType")
                user = self._directory_user(rest[1])
                if user is None:
                    raise GoogleError(404, "notFound", "Resource Not Found: userKey")
                if view == "domain_public":
                    user = {k: v for k, v in user.items() if k not in ("suspended", "archived")}
                return user
        raise not_found()

    def _directory_user(self, key: str) -> dict[str, Any] | None:
        if key in self.directory_users:
            return dict(self.directory_users[key])
        return next(
            (dict(u) for u in self.directory_users.values() if u["primaryEmail"] == key.lower()),
            None,
        )

    def _group_members(self, address: str, derived: bool) -> list[dict[str, Any]]:
        if address not in self.directory_groups:
            raise GoogleError(404, "notFound", "Resource Not Found: groupKey")
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        pending = list(self.directory_groups[address])
        while pending:
            key = pending.pop(0)
            if key in seen:
                continue
            seen.add(key)
            if key in self.directory_groups:
                out.append({"kind": "admin#directory#member", "email": key, "role": "MEMBER",
                            "type": "GROUP", "status": "ACTIVE", "id": hashlib.sha1(key.encode()).hexdigest()[:12]})  # fmt: skip
                if derived:
                    pending.extend(self.directory_groups[key])
                continue
            user = self._directory_user(key)
            if user is not None:
                out.append({"kind": "admin#directory#member", "email": user["primaryEmail"],
                            "role": "MEMBER", "type": "USER", "id": user["id"],
                            "status": "SUSPENDED" if user.get("suspended") else "ACTIVE"})  # fmt: skip
        return out

    # -- fault controls -------------------------------------------------------------------------

    def inject_faults(
        self,
        rate: float,
        kinds: tuple[str, ...] = ("429", "403", "503"),
        seed: int = 7,
        *,
        retry_after: int | None = None,
    ) -> None:
        """Answer ``rate`` of API requests (drawn with a seeded generator) with a quota or outage
        error; ``retry_after`` (seconds) adds a Retry-After header to each."""
        with self.lock:
            self.faults = Faults(rate, kinds, random.Random(seed))
            self.retry_after = retry_after

    def fail_always(
        self, path_part: str, status: int, reason: str, *, retry_after: int | None = None
    ) -> None:
        """Every API request whose path contains ``path_part`` gets this error until
        ``clear_failures``; ``retry_after`` adds a Retry-After header (seconds)."""
        message = {
            400: "Invalid argument",
            403: "Request had insufficient authentication scopes."
            if reason == "insufficientPermissions"
            else "Forbidden",
            429: "Too many requests",
        }.get(status, "Backend Error")
        error = GoogleError(status, reason, message)
        error.retry_after = retry_after
        with self.lock:
            self.failures[path_part] = error

    def clear_failures(self) -> None:
        with self.lock:
            self.failures.clear()

    def failure_for(self, path: str) -> GoogleError | None:
        with self.lock:
            return next((e for part, e in self.failures.items() if part in path), None)

    def arrived(self) -> None:
        """Book an API request: early when it came before the last Retry-After elapsed."""
        with self.lock:
            if self.clock() < self.not_before:
                self.early_requests += 1

    def answered_with_retry_after(self, seconds: int) -> None:
        with self.lock:
            self.not_before = max(self.not_before, self.clock() + seconds)

    def drop_after_create(self, count: int = 1, mode: str = "fin") -> None:
        """The next ``count`` drafts.create are committed, then the connection is dropped
        (``fin``: closed cleanly without an answer; ``rst``: reset)."""
        with self.lock:
            self._drops.extend([mode] * count)

    # -- request handling (called by _Handler under no lock) ------------------------------------

    def token_endpoint(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            grant = form.get("grant_type", "")
            if grant == JWT_BEARER:
                return self._jwt_grant(form.get("assertion", ""))
            if grant == "refresh_token":
                return self._refresh_grant(form)
            if grant == "authorization_code":
                return self._code_grant(form)
            return 400, {"error": "unsupported_grant_type", "error_description": grant}

    def _access_token(self, user: str, scopes: frozenset[str]) -> dict[str, Any]:
        token = "ya29.fake-" + hashlib.sha1(f"{user}{next(self._ids)}".encode()).hexdigest()
        self.tokens[token] = Token(user, scopes, time.time() + self.token_lifetime)
        return {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    def _jwt_grant(self, assertion: str) -> tuple[int, dict[str, Any]]:
        def invalid(text: str) -> tuple[int, dict[str, Any]]:
            return 400, {"error": "invalid_grant", "error_description": text}

        try:
            head_b64, claims_b64, sig_b64 = assertion.split(".")
            header = json.loads(_unb64url(head_b64))
            claims = json.loads(_unb64url(claims_b64))
            signature = _unb64url(sig_b64)
        except ValueError:
            return invalid("Invalid JWT: malformed")
        account = self.service_accounts.get(str(claims.get("iss", "")))
        if account is None or header.get("alg") != "RS256":
            return invalid("Invalid JWT Signature.")
        try:
            account.public_key.verify(
                signature,
                f"{head_b64}.{claims_b64}".encode("ascii"),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except Exception:
            return invalid("Invalid JWT Signature.")
        if account.disabled or header.get("kid") not in (None, account.key_id):
            return invalid("Invalid JWT Signature.")
        # google-auth always names Google's own token endpoint as the audience, wherever it
        # posts the grant; Google expects exactly that.
        if claims.get("aud") not in (GOOGLE_TOKEN_URI, self.token_uri):
            return invalid(f"Invalid JWT: audience {claims.get('aud')!r} is not {self.token_uri!r}")
        now = time.time()
        if not (claims.get("iat", 0) - 300 <= now <= claims.get("exp", 0) + 300):
            return invalid(
                "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe"
            )
        scopes = frozenset(str(claims.get("scope", "")).split())
        subject = str(claims.get("sub", "")).lower()
        if not scopes:
            return 400, {
                "error": "invalid_scope",
                "error_description": "Empty or missing scope not allowed.",
            }
        if subject not in self.users:
            return invalid("Invalid email or User ID")
        if not scopes <= self.delegation.get(account.client_id, frozenset()):
            return 401, {
                "error": "unauthorized_client",
                "error_description": "Client is unauthorized to retrieve access tokens using this "
                "method, or client not authorized for any of the scopes requested.",
            }
        return 200, self._access_token(subject, scopes)

    def _refresh_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.oauth_clients.get(form.get("client_id", "")) != form.get("client_secret"):
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        grant = self.refresh_tokens.get(form.get("refresh_token", ""))
        if grant is None:
            return 400, {
                "error": "invalid_grant",
                "error_description": "Token has been expired or revoked.",
            }
        wanted = frozenset(form["scope"].split()) if form.get("scope") else grant.scopes
        if not wanted <= grant.scopes:
            return 400, {"error": "invalid_scope", "error_description": "Bad Request"}
        answer = self._access_token(grant.user, wanted)
        answer["scope"] = " ".join(sorted(wanted))
        return 200, answer

    def authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """The consent screen: the configured user consents; redirects back with a code."""
        with self.lock:
            if query.get("client_id") not in self.oauth_clients:
                return 400, "invalid client"
            if query.get("response_type") != "code" or not query.get("redirect_uri"):
                return 400, "bad request"
            code = "4/code-" + hashlib.sha1(str(next(self._ids)).encode()).hexdigest()
            self.codes[code] = dict(query)
            params = {"code": code, "scope": query.get("scope", "")}
            if query.get("state"):
                params["state"] = query["state"]
            return 302, f"{query['redirect_uri']}?{urlencode(params)}"

    def _code_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        asked = self.codes.pop(form.get("code", ""), None)
        if asked is None or asked.get("redirect_uri") != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
        if self.oauth_clients.get(form.get("client_id", "")) != form.get("client_secret"):
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        if asked.get("code_challenge"):
            verifier = form.get("code_verifier", "")
            challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
            if challenge != asked["code_challenge"]:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Missing code verifier.",
                }
        scopes = frozenset(asked.get("scope", "").split())
        answer = self._access_token(self.consenting_user, scopes)
        if asked.get("access_type") == "offline":
            answer["refresh_token"] = self.issue_refresh_token(self.consenting_user, sorted(scopes))
        answer["scope"] = " ".join(sorted(scopes))
        return 200, answer

    def authenticate(self, header: str) -> Token:
        with self.lock:
            token = self.tokens.get(header.removeprefix("Bearer ").strip())
            if not header.startswith("Bearer ") or token is None or token.expires < time.time():
                raise GoogleError(
                    401,
                    "authError",
                    "Request had invalid authentication credentials. Expected OAuth 2 access "
                    "token, login cookie or other valid authentication credential.",
                )
            return token

    def fault(self) -> GoogleError | None:
        with self.lock:
            if self.faults.rate <= 0 or self.faults.rng.random() >= self.faults.rate:
                return None
            self.faults.injected += 1
            kind = self.faults.rng.choice(self.faults.kinds)
        if kind == "429":
            error = GoogleError(429, "rateLimitExceeded", "Too many concurrent requests for user.")
        elif kind == "403":
            error = GoogleError(
                403, "userRateLimitExceeded", "User Rate Limit Exceeded", "PERMISSION_DENIED"
            )
        else:
            error = GoogleError(503, "backendError", "The service is currently unavailable.")
        error.retry_after = self.retry_after
        return error

    def take_drop(self) -> str | None:
        with self.lock:
            return self._drops.pop(0) if self._drops else None

    # -- Calendar API ---------------------------------------------------------------------------

    def events_list(self, user: str, calendar_id: str, q: dict[str, list[str]]) -> dict[str, Any]:
        if calendar_id not in ("primary", user):
            raise not_found()
        one = {k: v[-1] for k, v in q.items()}
        allowed = {
            "singleEvents", "maxResults", "pageToken", "syncToken", "timeMin", "timeMax",
            "showDeleted", "q", "orderBy", "updatedMin", "iCalUID", "timeZone", "alt",
            "prettyPrint", "fields",
        }  # fmt: skip
        unknown = set(one) - allowed
        if unknown:
            raise GoogleError(400, "invalidParameter", f"Unknown parameter: {sorted(unknown)}")
        if (
            "orderBy" in one
            and one.get("orderBy") == "startTime"
            and one.get("singleEvents") != "true"
        ):
            raise GoogleError(
                400, "invalid", "The requested ordering is not available for the particular query."
            )
        # maxResults: an integer of at least 1 (discovery document: "minimum": "1"); above the
        # documented 2500 Google answers a page of at most 2500 (it caps, it does not refuse).
        limit = min(_int_param(one, "maxResults", 250, minimum=1), 2500, self.page_limit)
        for bound in ("timeMin", "timeMax"):
            if bound in one and not _rfc3339_with_offset(one[bound]):
                raise GoogleError(400, "badRequest", "Bad Request")
        # A sync token belongs to the query that made it: everything but paging and the window.
        signature = json.dumps(
            {k: one.get(k) for k in ("singleEvents", "showDeleted", "timeZone")}, sort_keys=True
        )
        with self.lock:
            store = self._items[user]
            if "pageToken" in one:
                page = self._page_tokens.get(one["pageToken"])
                if page is None or page.signature != signature:
                    raise GoogleError(400, "invalid", "Invalid page token value.")
                ids, seq = page.ids, page.seq
                window, since = page.window, page.since
            elif "syncToken" in one:
                forbidden = [k for k in SYNC_TOKEN_FORBIDS if k in one]
                if forbidden:
                    raise GoogleError(
                        400, "invalid", f"Sync token cannot be used with {', '.join(forbidden)}."
                    )
                token = self._sync_tokens.get(one["syncToken"])
                if token is None:
                    raise GoogleError(400, "invalid", "Invalid sync token value.")
                if token.generation != self._generation:
                    raise GoogleError(
                        410,
                        "fullSyncRequired",
                        "Sync token is no longer valid, a full sync is required.",
                    )
                if token.signature != signature:
                    raise GoogleError(
                        400,
                        "invalid",
                        "The parameters differ from the ones the sync token was made with.",
                    )
                seq, since, window = self._seq, token.seq, None
                ids = sorted(
                    (i for i, (s, _) in store.items() if s > since), key=lambda i: store[i][0]
                )
            else:
                seq, since = self._seq, None
                t_min = datetime.fromisoformat(one["timeMin"]) if "timeMin" in one else None
                t_max = datetime.fromisoformat(one["timeMax"]) if "timeMax" in one else None
                if t_min and t_max and t_max <= t_min:
                    raise GoogleError(400, "timeRangeEmpty", "The specified time range is empty.")
                window = (
                    t_min or datetime.min.replace(tzinfo=UTC),
                    t_max or datetime.max.replace(tzinfo=UTC),
                )
                show_deleted = one.get("showDeleted") == "true"
                ids = []
                for event_id, (_, item) in store.items():
                    if item.get("status") == "cancelled":
                        if show_deleted:
                            ids.append(event_id)
                        continue
                    try:
                        start, end = _item_span(item)
                        inside = end > window[0] and start < window[1]
                    except Exception:  # a raw (hostile) resource: served, the client must cope
                        inside = True
                    if inside:
                        ids.append(event_id)
                ids.sort(key=lambda i: _sort_start(store[i][1]))
            page_ids, rest = ids[:limit], ids[limit:]
            items = [store[i][1] for i in page_ids if i in store]
            answer: dict[str, Any] = {
                "kind": "calendar#events",
                "etag": f'"{seq}"',
                "summary": user,
                "updated": datetime.now(UTC).isoformat(),
                "timeZone": self.time_zone,
                "accessRole": "owner",
                "defaultReminders": [],
                "items": items,
            }
            if rest:
                page_token = "pt-" + hashlib.sha1(str(next(self._ids)).encode()).hexdigest()
                self._page_tokens[page_token] = PageToken(rest, seq, signature, window, since)
                answer["nextPageToken"] = page_token
            else:
                sync = "st-" + hashlib.sha1(str(next(self._ids)).encode()).hexdigest()
                self._sync_tokens[sync] = SyncToken(seq, signature, self._generation)
                answer["nextSyncToken"] = sync
            return answer

    # -- Gmail API ------------------------------------------------------------------------------

    def _draft_json(
        self, user: str, draft_id: str, fmt: str = "minimal", headers: list[str] | None = None
    ) -> dict[str, Any]:
        message = self.messages[user][self.drafts[user][draft_id]]
        return {"id": draft_id, "message": self._message_json(message, fmt, headers)}

    def _message_json(
        self, message: Message, fmt: str, headers: list[str] | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"id": message.id, "threadId": message.thread_id}
        if fmt == "reference":
            return out
        out.update(
            labelIds=sorted(message.labels),
            snippet=_snippet(message.parsed),
            historyId=str(next(self._ids)),
            internalDate=str(message.internal_date),
            sizeEstimate=len(message.raw),
        )
        if fmt == "raw":
            out["raw"] = _b64url(message.raw)
        elif fmt == "full":
            out["payload"] = _payload(message.parsed, "")
        elif fmt == "metadata":
            wanted = {h.lower() for h in headers or []}
            out["payload"] = {
                "partId": "",
                "mimeType": message.parsed.get_content_type(),
                "filename": "",
                "headers": [
                    {"name": k, "value": str(v)}
                    for k, v in message.parsed.items()
                    if not wanted or k.lower() in wanted
                ],
            }
        return out

    def _matches(self, user: str, message: Message, query: str) -> bool:
        for term in query.split():
            name, _, value = term.partition(":")
            name = name.lower()
            if name == "rfc822msgid":
                if message.message_id.strip("<>") != value.strip("<>"):
                    return False
            elif name == "in":
                if value.upper() not in message.labels:
                    return False
            elif name == "label":
                ids = {i for i, n in self.labels[user].items() if n == value} | {value.upper()}
                if not message.labels & ids:
                    return False
            elif name == "to":
                addresses = {a.lower() for _, a in getaddresses(message.parsed.get_all("To", []))}
                if value.lower() not in addresses:
                    return False
            elif name in ("after", "before"):
                moment = int(value) * 1000
                if name == "after" and message.internal_date <= moment:
                    return False
                if name == "before" and message.internal_date >= moment:
                    return False
            else:
                raise GoogleError(400, "invalidArgument", f"the fake does not know {term!r}")
        return True

    def gmail(
        self, token: Token, method: str, parts: list[str], q: dict[str, list[str]], body: Any
    ) -> tuple[str, dict[str, Any]]:
        """Route ``/gmail/v1/users/{userId}/…``; returns (call name, answer)."""
        user_id, rest = parts[0], parts[1:]
        if user_id not in ("me", token.user):
            raise GoogleError(403, "forbidden", "Delegation denied for " + token.user)
        user = token.user
        one = {k: v[-1] for k, v in q.items()}
        route = (method, tuple(rest[:1]), len(rest))
        with self.lock:
            drafts, box = self.drafts[user], self.messages[user]
            if route == ("POST", ("drafts",), 1):
                return "drafts.create", self._create_draft(token, user, body)
            if route == ("GET", ("drafts",), 1):
                _check(token, "drafts.list")
                query = one.get("q", "")
                found = [d for d, m in drafts.items() if self._matches(user, box[m], query)]
                answer: dict[str, Any] = {"resultSizeEstimate": len(found)}
                if found:
                    answer["drafts"] = [self._draft_json(user, d, "reference") for d in found]
                return "drafts.list", answer
            if route[:2] == ("GET", ("drafts",)) and len(rest) == 2:
                _check(token, "drafts.get")
                if rest[1] not in drafts:
                    raise not_found()
                return "drafts.get", self._draft_json(user, rest[1], one.get("format", "full"))
            if route[:2] == ("PUT", ("drafts",)) and len(rest) == 2:
                _check(token, "drafts.update")
                return "drafts.update", self._update_draft(user, rest[1], body)
            if route == ("GET", ("messages",), 1):
                _check(token, "messages.list")
                if "q" in one and METADATA_ONLY in token.scopes:
                    raise GoogleError(
                        403, "forbidden", "Metadata scope does not support 'q' parameter"
                    )
                labels = set(q.get("labelIds", []))
                found_messages = [
                    m
                    for m in box.values()
                    if labels <= m.labels
                    and self._matches(user, m, one.get("q", ""))
                    and "TRASH" not in m.labels
                ]
                found_messages.sort(key=lambda m: m.internal_date, reverse=True)
                start = int(one.get("pageToken", "0") or "0")
                size = min(_int_param(one, "maxResults", 100, minimum=0) or 100, 500)
                page = found_messages[start : start + size]
                answer = {"resultSizeEstimate": len(found_messages)}
                if page:
                    answer["messages"] = [self._message_json(m, "reference") for m in page]
                if start + size < len(found_messages):
                    answer["nextPageToken"] = str(start + size)
                return "messages.list", answer
            if route[:2] == ("GET", ("messages",)) and len(rest) == 2:
                _check(token, "messages.get")
                fmt = one.get("format", "full")
                if METADATA_ONLY in token.scopes and fmt not in ("metadata", "minimal"):
                    raise GoogleError(
                        403, "forbidden", f"Metadata scope doesn't allow format {fmt.upper()}"
                    )
                message = box.get(rest[1])
                if message is None:
                    raise not_found()
                return "messages.get", self._message_json(message, fmt, q.get("metadataHeaders"))
            if (
                method == "POST"
                and len(rest) == 3
                and rest[0] == "messages"
                and rest[2] == "modify"
            ):
                _check(token, "messages.modify")
                message = box.get(rest[1])
                if message is None:
                    raise not_found()
                for label in (body or {}).get("addLabelIds", []):
                    if label not in self.labels[user] and label not in SYSTEM_LABELS:
                        raise GoogleError(400, "invalidArgument", f"Invalid label: {label}")
                    message.labels.add(label)
                for label in (body or {}).get("removeLabelIds", []):
                    message.labels.discard(label)
                return "messages.modify", self._message_json(message, "minimal")
            if route[:2] == ("GET", ("threads",)) and len(rest) == 2:
                _check(token, "threads.get")
                fmt = one.get("format", "full")
                if METADATA_ONLY in token.scopes and fmt not in ("metadata", "minimal"):
                    raise GoogleError(
                        403, "forbidden", f"Metadata scope doesn't allow format {fmt.upper()}"
                    )
                members = sorted(
                    (m for m in box.values() if m.thread_id == rest[1]),
                    key=lambda m: m.internal_date,
                )
                if not members:
                    raise not_found()
                return "threads.get", {
                    "id": rest[1],
                    "historyId": str(next(self._ids)),
                    "messages": [
                        self._message_json(m, fmt, q.get("metadataHeaders")) for m in members
                    ],
                }
            if route == ("GET", ("labels",), 1):
                _check(token, "labels.list")
                labels_json = [{"id": s, "name": s, "type": "system"} for s in SYSTEM_LABELS]
                labels_json += [
                    {"id": i, "name": n, "type": "user"} for i, n in self.labels[user].items()
                ]
                return "labels.list", {"labels": labels_json}
            if route == ("POST", ("labels",), 1):
                _check(token, "labels.create")
                name = str((body or {}).get("name", ""))
                if not name or name in self.labels[user].values() or name.upper() in SYSTEM_LABELS:
                    raise GoogleError(409, "duplicate", "Label name exists or conflicts")
                label_id = f"Label_{next(self._ids)}"
                self.labels[user][label_id] = name
                return "labels.create", {"id": label_id, "name": name, "type": "user"}
            if rest == ["settings", "vacation"] and method == "GET":
                _check(token, "settings.getVacation")
                return "settings.getVacation", self.vacation.get(user, {"enableAutoReply": False})
        raise GoogleError(404, "notFound", f"the fake has no {method} /{'/'.join(rest)}")

    def _parse_raw(self, body: Any) -> tuple[bytes, str | None]:
        message = (body or {}).get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("raw"), str):
            raise GoogleError(400, "invalidArgument", "Missing draft message")
        try:
            raw = _unb64url(message["raw"])
        except ValueError:
            raise GoogleError(400, "invalidArgument", "Invalid value for ByteString") from None
        mail = message_from_bytes(raw, policy=policy.default)
        if not mail.get("To") and not mail.get("Subject"):
            raise GoogleError(400, "invalidArgument", "Invalid RFC 822 message")
        thread = message.get("threadId")
        return raw, str(thread) if thread else None

    def _thread_for(self, user: str, raw: bytes, thread: str | None) -> str:
        if thread is None:
            return self._new_id()
        members = [m for m in self.messages[user].values() if m.thread_id == thread]
        if not members:
            raise not_found()
        mail = message_from_bytes(raw, policy=policy.default)
        # Gmail joins a thread only when the references and the subject agree.
        subject = _base_subject(str(mail.get("Subject", "")))
        if not mail.get("In-Reply-To") and not mail.get("References"):
            return self._new_id()
        if all(_base_subject(str(m.parsed.get("Subject", ""))) != subject for m in members):
            return self._new_id()
        return thread

    def _create_draft(self, token: Token, user: str, body: Any) -> dict[str, Any]:
        _check(token, "drafts.create")
        raw, thread = self._parse_raw(body)
        message = Message(
            self._new_id(), self._thread_for(user, raw, thread), raw, {"DRAFT"}, _now()
        )
        draft_id = f"r{next(self._ids) * 104729}"
        self.messages[user][message.id] = message
        self.drafts[user][draft_id] = message.id
        return self._draft_json(user, draft_id, "minimal")

    def _update_draft(self, user: str, draft_id: str, body: Any) -> dict[str, Any]:
        if draft_id not in self.drafts[user]:
            raise not_found()
        raw, thread = self._parse_raw(body)
        old = self.messages[user].pop(self.drafts[user][draft_id])
        message = Message(self._new_id(), thread or old.thread_id, raw, set(old.labels), _now())
        self.messages[user][message.id] = message
        self.drafts[user][draft_id] = message.id
        return self._draft_json(user, draft_id, "minimal")


def _sort_start(item: dict[str, Any]) -> datetime:
    try:
        start = _item_span(item)[0]
        return start if start.tzinfo is not None else start.replace(tzinfo=UTC)
    except Exception:
        return datetime.min.replace(tzinfo=UTC)


def _int_param(one: dict[str, str], name: str, default: int, *, minimum: int) -> int:
    if name not in one:
        return default
    try:
        value = int(one[name])
    except ValueError:
        raise GoogleError(400, "invalid", f"Invalid value '{one[name]}' for {name}") from None
    if value < minimum:
        raise GoogleError(
            400,
            "invalid",
            f"Invalid value '{value}'. Values must be within the range: [{minimum}, ]",
        )
    return value


def _rfc3339_with_offset(value: str) -> bool:
    """timeMin/timeMax must be RFC 3339 with a mandatory offset ("…Z" or "…+01:00")."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value and moment.tzinfo is not None


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    ignore = {"etag", "updated", "created"}
    return {k: v for k, v in old.items() if k not in ignore} == {
        k: v for k, v in new.items() if k not in ignore
    }


def _now() -> int:
    return int(time.time() * 1000)


def _payload(part: EmailMessage, part_id: str) -> dict[str, Any]:
    """A MIME part as ``format=full`` gives it: headers, the decoded body as base64url
    ``body.data`` for a leaf, the parts of a multipart (numbered "0", "0.1", … as Gmail does)."""
    out: dict[str, Any] = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": [{"name": k, "value": str(v)} for k, v in part.items()],
    }
    if part.is_multipart():
        out["body"] = {"size": 0}
        out["parts"] = [
            _payload(child, f"{part_id}.{n}" if part_id else str(n))  # type: ignore[arg-type]
            for n, child in enumerate(part.iter_parts())
        ]
    else:
        data = part.get_payload(decode=True) or b""
        assert isinstance(data, bytes)
        out["body"] = {"size": len(data), "data": _b64url(data)}
    return out


def _snippet(mail: EmailMessage) -> str:
    body = mail.get_body(preferencelist=("plain",))
    text = str(body.get_content()) if body is not None else ""
    return " ".join(text.split())[:100]


def _base_subject(subject: str) -> str:
    text = subject.strip()
    while text.lower().startswith(("re:", "sv:", "fwd:", "vs:")):
        text = text.split(":", 1)[1].strip()
    return text


def _check(token: Token, call: str) -> None:
    if not token.scopes & ALLOWED[call]:
        raise GoogleError(
            403,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: GoogleFake

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self, mode: str) -> None:
        if mode == "rst":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR) if mode == "fin" else None
        finally:
            self.connection.close()

    def _handle(self, method: str) -> None:
        fake = self.fake
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length", "0") or "0")
        raw_body = self.rfile.read(length) if length else b""
        path = split.path
        api = (
            "gmail"
            if path.startswith("/gmail/")
            else "calendar"
            if path.startswith("/calendar/")
            else "other"
        )
        if path == "/token":
            api = "token"
        if path.startswith("/o/oauth2/"):
            api = "auth"
        record = Recorded(method, path, query, "", api)
        with fake.lock:
            fake.requests.append(record)

        if path.startswith("/upload/"):
            with fake.lock:
                fake.violations.append(f"upload request: {method} {path}")
            self._send(400, GoogleError(400, "badRequest", "uploads are forbidden here").body())
            return
        if path.rstrip("/").endswith(("/drafts/send", "/messages/send")):
            with fake.lock:
                fake.violations.append(f"send request: {method} {path}")
            self._send(403, GoogleError(403, "forbidden", "recruitmail must never send").body())
            return
        if api == "token":
            if method != "POST":
                self._send(405, {"error": "method_not_allowed"})
                return
            form = {k: v[-1] for k, v in parse_qs(raw_body.decode("utf-8")).items()}
            status, payload = fake.token_endpoint(form)
            self._send(status, payload)
            return
        if api == "auth":
            status, location = fake.authorize({k: v[-1] for k, v in query.items()})
            if status == 302:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._send(status, {"error": location})
            return
        try:
            fake.arrived()
            token = fake.authenticate(self.headers.get("Authorization", ""))
            record.user = token.user
            failure = fake.failure_for(path)
            if failure is not None:
                raise failure
            fault = fake.fault()
            if fault is not None:
                raise fault
            body: Any = None
            if raw_body:
                if "application/json" not in self.headers.get("Content-Type", ""):
                    raise GoogleError(400, "badContent", "Media type not supported: JSON only")
                body = json.loads(raw_body)
            parts = [p for p in path.split("/") if p]
            if (
                api == "calendar"
                and parts[:3] == ["calendar", "v3", "calendars"]
                and len(parts) == 5
                and parts[4] == "events"
                and method == "GET"
            ):
                _check(token, "events.list")
                self._send(200, fake.events_list(token.user, parts[3], query))
                return
            if api == "gmail" and parts[:3] == ["gmail", "v1", "users"] and len(parts) >= 5:
                call, answer = fake.gmail(token, method, parts[3:], query, body)
                if call == "drafts.create":
                    mode = fake.take_drop()
                    if mode is not None:
                        self._drop(mode)
                        return
                self._send(200, answer)
                return
            if parts[:3] == ["admin", "directory", "v1"] and method == "GET":
                self._send(200, fake.directory(token, [unquote(p) for p in parts[3:]], query))
                return
            raise GoogleError(404, "notFound", f"the fake has no {method} {path}")
        except GoogleError as exc:
            headers = {}
            if exc.retry_after is not None:
                headers["Retry-After"] = str(exc.retry_after)
                fake.answered_with_retry_after(exc.retry_after)
            self._send(exc.code, exc.body(), headers)
