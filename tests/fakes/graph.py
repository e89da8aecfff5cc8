"""A strict fake of Microsoft Graph and its identity provider, over TLS on loopback.

It implements the documented behaviour recruitmail relies on and refuses what real Graph refuses:
calendarView delta (paging, delta links, ``@removed``, expiry in its three documented forms, the
window baked into the token, ``Prefer`` headers per page), messages with single-value extended
properties and the filter rules, well-known folders, mailbox settings, the directory, and an
OpenID/OAuth endpoint that msal accepts (client credentials with secret or certificate, device
code, refresh). Faults are injected through methods (throttling with ``Retry-After``, a revoked
token, a dropped connection after a committed POST, latency). Every request is recorded with the
time it arrived, the earliest time it was allowed to, and how many were in flight for its mailbox.

Test data goes in through ``put_event`` (a ``tests.scenario.spec.EventSpec``), ``add_mailbox``,
``add_person`` and ``add_sent``; results come out through ``drafts``/``messages``/``mime``.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.message
import hashlib
import html
import ipaddress
import json
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dateutil.rrule import rrulestr

from recruitmail.connectors.microsoft.zones import WINDOWS_TO_IANA
from tests.scenario.spec import EventSpec, Who

UTC = dt.UTC
IANA_TO_WINDOWS = {"Europe/Stockholm": "W. Europe Standard Time", "UTC": "UTC"}
ALL_PERMISSIONS = frozenset(
    {
        "Calendars.Read",
        "Mail.ReadWrite",
        "MailboxSettings.Read",
        "User.Read.All",
        "GroupMember.Read.All",
    }
)
ACCESS_POLICY_MESSAGE = "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings."
MESSAGE_FIELDS = frozenset(
    {
        "id", "subject", "body", "bodyPreview", "toRecipients", "ccRecipients", "bccRecipients",
        "categories", "isDraft", "parentFolderId", "createdDateTime", "lastModifiedDateTime",
        "sentDateTime", "receivedDateTime", "changeKey", "internetMessageId", "from", "sender",
        "conversationId", "importance", "isRead", "hasAttachments", "internetMessageHeaders",
        "singleValueExtendedProperties",
    }
)  # fmt: skip
WRITABLE_MESSAGE_FIELDS = frozenset(
    {
        "subject", "body", "toRecipients", "ccRecipients", "bccRecipients", "categories",
        "importance", "internetMessageId", "internetMessageHeaders", "singleValueExtendedProperties",
        "isRead", "from",
    }
)  # fmt: skip
DELTA_QUERY = frozenset({"startDateTime", "endDateTime", "$deltatoken", "$skiptoken"})
EXT_PROPERTY_ID = re.compile(
    r"^String \{[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\} Name \S+$"
)
WELL_KNOWN = ("drafts", "sentitems", "deleteditems", "inbox")
BATCH_LIMIT = 20
BATCH_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_RESPONSE_TO_GRAPH = {
    "accepted": "accepted",
    "tentative": "tentativelyAccepted",
    "declined": "declined",
    "needs_action": "notResponded",
}


class GraphFault(Exception):
    """A Graph error answer: status, code, message (and extra headers)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


# --- TLS -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThrowawayCA:
    """A CA made for one test run, and a server certificate for 127.0.0.1 signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def create(cls, directory: Path) -> ThrowawayCA:
        now = dt.datetime.now(UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recruitmail test CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        found = cls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
        found.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        found.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        found.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return found


# --- stored data ---------------------------------------------------------------------------------


def _graph_id(*parts: str) -> str:
    digest = hashlib.sha256("|".join(parts).encode("utf-8")).digest()
    return "AAMkAG" + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> dt.datetime:
    cleaned = re.sub(r"(\.\d{1,6})\d*", r"\1", value.strip()).replace("Z", "+00:00")
    moment = dt.datetime.fromisoformat(cleaned)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Instance:
    """One calendar item as calendarView shows it (single event, occurrence or exception)."""

    id: str
    spec: EventSpec
    kind: str  # singleInstance | occurrence | exception
    start: dt.datetime
    end: dt.datetime
    original_start: dt.datetime | None
    master_id: str | None
    seq: int = 0
    fingerprint: str = ""


@dataclass
class FakeGroup:
    """A directory group: its members are user or group object ids."""

    USER_FIELDS = (
        "displayName", "mail", "userPrincipalName", "jobTitle", "preferredLanguage",
        "accountEnabled", "givenName", "surname", "mobilePhone", "officeLocation",
        "businessPhones", "department", "usageLocation",
    )  # fmt: skip

    id: str
    mail: str
    members: list[str]


@dataclass
class Message:
    immutable_id: str
    rest_id: str
    folder: str
    data: dict[str, Any]
    properties: dict[str, str]
    hard_deleted: bool = False
    order: int = 0  # creation order (timestamps have one-second resolution)


@dataclass
class Mailbox:
    address: str
    name: str
    settings: dict[str, Any]
    instances: dict[str, Instance] = field(default_factory=dict)
    masters: dict[str, EventSpec] = field(default_factory=dict)
    gone: dict[str, int] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    raw: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # key -> (seq, event)

    def folder_id(self, name: str) -> str:
        return _graph_id(self.address, "folder", name)


@dataclass
class DeltaToken:
    mailbox: str
    start: dt.datetime
    end: dt.datetime
    seq: int
    known: frozenset[str]
    expired: str = ""  # "", "410", "syncStateNotFound", "resyncRequired"


@dataclass
class Session:
    """The pages of one delta round, served by skip tokens; the last page mints a delta token."""

    items: list[dict[str, Any]]
    token: DeltaToken
    zone: str = "UTC"  # the outlook.timezone the round began with


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    mailbox: str
    arrived: float
    in_flight: int
    prefer: tuple[str, ...]
    not_before: float | None = None
    status: int = 0
    batched: bool = False  # one of the requests inside a ``$batch``

    @property
    def early(self) -> bool:
        return self.not_before is not None and self.arrived < self.not_before


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "p", "div", "li"):
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        self.out.append(data)


def _plain(body_html: str) -> str:
    parser = _Text()
    parser.feed(body_html)
    return "".join(parser.out).strip() + "\n"


# --- the server ----------------------------------------------------------------------------------


class FakeGraph:
    """Graph and its identity provider on ``https://127.0.0.1:PORT``; use as a context manager."""

    tenant = "contoso-tenant-id"
    client_id = "11111111-2222-3333-4444-555555555555"
    client_secret = "fake-client-secret"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.tls = ThrowawayCA.create(directory)
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        self.people: dict[str, dict[str, str]] = {}
        self.groups: dict[str, FakeGroup] = {}  # the directory's groups by object id
        self.directory_users: dict[str, dict[str, Any]] = {}  # user object id -> user
        self.requests: list[Recorded] = []
        self.granted: set[str] = set(ALL_PERMISSIONS)
        self.blocked: set[str] = set()
        self.app_thumbprint: str | None = None
        self.app_public_key: Any = None
        self.device_user: str | None = None
        self.latency = 0.0
        self.batch_inner_latency = 0.0  # service time of each request inside a $batch
        self.seq = 0
        self._tokens: dict[str, str | None] = {}  # access token -> delegated user (None: app)
        self._refresh: dict[str, str] = {}
        self._delta: dict[str, DeltaToken] = {}
        self._sessions: dict[str, tuple[Session, int]] = {}
        self._in_flight: dict[str, int] = {}
        self._not_before: dict[str, float] = {}
        self._throttle_rate = 0.0
        self._throttle_statuses: tuple[int, ...] = (429,)
        self._retry_after = 1
        self._rng = random.Random(0)
        self._revoke_once = False
        self._drop_after_post = 0
        self._fail_next: list[tuple[str, int, str, float | None]] = []
        self._fail_always: dict[str, tuple[int, str, float | None]] = {}
        self.violations: list[str] = []  # what Graph tolerates but documents as wrong
        self.token_requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> FakeGraph:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        fake = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 512

            def get_request(self) -> tuple[Any, Any]:
                sock, address = self.socket.accept()
                # The handshake happens in the handler's thread, not in the accept loop.
                return context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                ), address

        class Handler(_Handler):
            server_fake = fake

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_file

    def options(self, mailbox: str, **extra: Any) -> dict[str, Any]:
        """Connector options (as the TOML holds them) pointing at this fake, app-only by secret."""
        raw: dict[str, Any] = {
            "tenant": self.tenant,
            "client_id": self.client_id,
            "client_secret": f"file:{self.secret_file()}",
            "authority_host": self.base,
            "graph_endpoint": self.base,
            "ca_file": str(self.ca_file),
            "user": mailbox,
        }
        raw.update(extra)
        return {k: v for k, v in raw.items() if v is not None}

    def secret_file(self) -> Path:
        path = self.directory / "client-secret"
        if not path.exists():
            path.write_text(self.client_secret + "\n", encoding="utf-8")
        return path

    # --- test API: data ---

    def add_mailbox(
        self,
        address: str,
        name: str = "",
        *,
        time_zone: str = "W. Europe Standard Time",
        automatic_replies: dict[str, Any] | None = None,
    ) -> None:
        settings = {
            "timeZone": time_zone,
            "automaticRepliesSetting": automatic_replies or {"status": "disabled"},
            "workingHours": {
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"]
            },
        }
        with self.lock:
            self.mailboxes[address.lower()] = Mailbox(address.lower(), name, settings)
            self.people.setdefault(address.lower(), {"displayName": name, "jobTitle": ""})

    def add_person(self, address: str, name: str, title: str) -> None:
        with self.lock:
            self.people[address.lower()] = {"displayName": name, "jobTitle": title}

    def box(self, address: str) -> Mailbox:
        return self.mailboxes[address.lower()]

    # --- test API: the directory's groups ---

    def add_directory_user(
        self,
        address: str | None,
        name: str = "",
        *,
        title: str | None = None,
        language: str | None = None,
        enabled: bool = True,
    ) -> str:
        """A user of the directory (``address`` None: one without a mailbox); returns its id."""
        user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"user:{address or name}"))
        with self.lock:
            self.directory_users[user_id] = {
                "id": user_id, "displayName": name or None, "mail": address,
                "userPrincipalName": address or f"{user_id}@contoso.onmicrosoft.com",
                "jobTitle": title, "preferredLanguage": language, "accountEnabled": enabled,
                "givenName": None, "surname": None, "mobilePhone": None, "officeLocation": None,
                "businessPhones": [], "department": None, "usageLocation": None,
            }  # fmt: skip
        return user_id

    def add_group(self, mail: str, members: list[str] | None = None) -> str:
        """A security group with ``members`` (user or group object ids); returns its id."""
        group_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"group:{mail}"))
        with self.lock:
            self.groups[group_id] = FakeGroup(group_id, mail.lower(), list(members or []))
        return group_id

    def set_group_members(self, group_id: str, members: list[str]) -> None:
        with self.lock:
            self.groups[group_id].members = list(members)

    def put_event(self, mailbox: str, spec: EventSpec) -> None:
        """Create or replace (by uid) an event, as Outlook would store it."""
        with self.lock:
            box = self.box(mailbox)
            box.masters[spec.uid] = spec
            fresh = {i.id: i for i in self._instances(box.address, spec)}
            old = [i for i in box.instances.values() if i.spec.uid == spec.uid]
            for instance in old:
                if instance.id not in fresh:
                    del box.instances[instance.id]
                    self.seq += 1
                    box.gone[instance.id] = self.seq
            for instance in fresh.values():
                before = box.instances.get(instance.id)
                instance.fingerprint = json.dumps(
                    self._event_json(box, instance, "UTC"), sort_keys=True
                )
                if before is not None and before.fingerprint == instance.fingerprint:
                    continue
                self.seq += 1
                instance.seq = self.seq
                box.instances[instance.id] = instance
                box.gone.pop(instance.id, None)

    def put_raw_event(self, mailbox: str, resource: dict[str, Any]) -> None:
        """Store a Graph event resource exactly as given (it may be malformed or absurd: a bad
        dateTime, 50,000 attendees, a 10 MB body); calendarView delta serves it like any other
        event. Stored again under the same ``id``, it replaces the earlier one as a change."""
        with self.lock:
            box = self.box(mailbox)
            given = resource.get("id") if isinstance(resource, dict) else None
            key = str(given or f"raw-{len(box.raw)}-{uuid.uuid4().hex}")
            self.seq += 1
            box.raw[key] = (self.seq, resource)
            box.gone.pop(key, None)

    def delete_event(self, mailbox: str, uid: str) -> None:
        with self.lock:
            box = self.box(mailbox)
            box.masters.pop(uid, None)
            for instance in [i for i in box.instances.values() if i.spec.uid == uid]:
                del box.instances[instance.id]
                self.seq += 1
                box.gone[instance.id] = self.seq

    def _instances(self, mailbox: str, spec: EventSpec) -> list[Instance]:
        if not spec.rrule:
            return [
                Instance(
                    _graph_id(mailbox, spec.uid),
                    spec,
                    "singleInstance",
                    spec.start,
                    spec.end,
                    None,
                    None,
                )
            ]
        master = _graph_id(mailbox, spec.uid, "master")
        length = spec.end - spec.start
        rule = rrulestr(spec.rrule, dtstart=spec.start)
        excluded = {e.astimezone(UTC) for e in spec.exdates}
        moved = {m.original_start.astimezone(UTC): m for m in spec.moved}
        out = []
        for occurrence in rule:
            original = occurrence.astimezone(UTC)
            if original in excluded:
                continue
            iid = _graph_id(mailbox, spec.uid, _stamp(original))
            if original in moved:
                move = moved[original]
                out.append(
                    Instance(iid, spec, "exception", move.start, move.end, occurrence, master)
                )
            else:
                out.append(
                    Instance(
                        iid, spec, "occurrence", occurrence, occurrence + length, occurrence, master
                    )
                )
        return out

    def add_sent(
        self, mailbox: str, to: str, when: dt.datetime, subject: str = "Hej", body: str = ""
    ) -> str:
        """A mail the recruiter sent (it sits in Sent Items); ``body`` is its text."""
        with self.lock:
            box = self.box(mailbox)
            data: dict[str, Any] = {"subject": subject, "toRecipients": [_who(to)]}
            if body:
                data["body"] = {"contentType": "text", "content": body}
            message = self._new_message(box, data, "sentitems")
            message.data.update(
                isDraft=False, sentDateTime=_stamp(when), receivedDateTime=_stamp(when)
            )
            return message.immutable_id

    def messages(self, mailbox: str, folder: str | None = None) -> list[Message]:
        with self.lock:
            return [
                m
                for m in self.box(mailbox).messages.values()
                if not m.hard_deleted and (folder is None or m.folder == folder)
            ]

    def drafts(self, mailbox: str) -> list[Message]:
        return [m for m in self.messages(mailbox, "drafts") if m.data.get("isDraft")]

    def message(self, mailbox: str, message_id: str) -> Message:
        with self.lock:
            for m in self.box(mailbox).messages.values():
                if message_id in (m.immutable_id, m.rest_id):
                    return m
        raise KeyError(message_id)

    def mime(self, mailbox: str, message: Message) -> bytes:
        """The message as Exchange exports it (``GET …/$value``): text and HTML alternatives."""
        box = self.box(mailbox)
        data = message.data
        mail = EmailMessage(policy=default_policy)
        mail["From"] = Address(box.name, addr_spec=box.address)
        for header, key in (("To", "toRecipients"), ("Cc", "ccRecipients")):
            people = [
                Address(r["emailAddress"].get("name", ""), addr_spec=r["emailAddress"]["address"])
                for r in data.get(key) or []
            ]
            if people:
                mail[header] = people
        mail["Subject"] = data.get("subject", "")
        mail["Message-ID"] = data["internetMessageId"]
        mail["Date"] = format_datetime(_parse_time(data["createdDateTime"]))
        for extra in data.get("internetMessageHeaders") or []:
            mail[extra["name"]] = extra["value"]
        body = data.get("body") or {"contentType": "text", "content": ""}
        if body["contentType"].lower() == "html":
            mail.set_content(_plain(body["content"]))
            mail.add_alternative(body["content"], subtype="html")
            # A fixed boundary: the same message exports to the same bytes every time.
            mail.set_boundary("=_" + hashlib.sha1(message.immutable_id.encode()).hexdigest())
        else:
            mail.set_content(body["content"])
        return mail.as_bytes()

    # --- test API: what the recruiter does in Outlook ---

    def edit_message(self, mailbox: str, message_id: str, html_body: str | None = None) -> None:
        with self.lock:
            message = self.message(mailbox, message_id)
            content = html_body or message.data["body"]["content"] + "<p>Hälsningar, Rut</p>"
            message.data["body"] = {"contentType": "html", "content": content}
            self._touch(message)

    def send_message(self, mailbox: str, message_id: str, *, web_edit: bool = False) -> None:
        """The recruiter presses Send. With ``web_edit`` the draft was first edited in Outlook on
        the web or desktop, modelled for the worst case the documentation leaves open: the client
        rebuilds the body and the message, so our extended property, our ``X-`` header and our
        Message-ID are gone. What the documentation does promise stays: the immutable id survives
        the move to Sent Items, and the sent copy reads back with ``isDraft: false``."""
        with self.lock:
            box = self.box(mailbox)
            message = self.message(mailbox, message_id)
            if web_edit:
                content = message.data["body"]["content"]
                message.data["body"] = {
                    "contentType": "html",
                    "content": f'<html><body><div dir="ltr">{content}</div></body></html>',
                }
                message.properties = {}
                message.data.pop("internetMessageHeaders", None)
                message.data["internetMessageId"] = (
                    f"<{uuid.uuid4().hex.upper()}@EXAMPLEPR01.prod.outlook.example>"
                )
            now = _stamp(dt.datetime.now(UTC))
            message.data.update(isDraft=False, sentDateTime=now, receivedDateTime=now)
            self._move(box, message, "sentitems")

    def delete_message(self, mailbox: str, message_id: str, *, hard: bool = False) -> None:
        with self.lock:
            box = self.box(mailbox)
            message = self.message(mailbox, message_id)
            if hard:
                message.hard_deleted = True
            else:
                self._move(box, message, "deleteditems")

    def _move(self, box: Mailbox, message: Message, folder: str) -> None:
        message.folder = folder
        message.rest_id = "AAMkRest" + uuid.uuid4().hex  # default ids change when an item moves
        message.data["parentFolderId"] = box.folder_id(folder)
        self._touch(message)

    def _touch(self, message: Message) -> None:
        message.data["changeKey"] = uuid.uuid4().hex[:16]
        message.data["lastModifiedDateTime"] = _stamp(dt.datetime.now(UTC))

    # --- test API: faults ---

    def throttle(
        self,
        rate: float,
        statuses: tuple[int, ...] = (429, 503),
        retry_after: int = 1,
        seed: int = 7,
    ) -> None:
        """Answer ``rate`` of Graph requests with one of ``statuses`` and ``Retry-After``."""
        with self.lock:
            self._throttle_rate, self._throttle_statuses = rate, statuses
            self._retry_after, self._rng = retry_after, random.Random(seed)

    def fail_next(
        self,
        path_part: str,
        status: int,
        code: str = "ErrorItemNotFound",
        *,
        retry_after: float | None = None,
    ) -> None:
        """The next Graph request whose path contains ``path_part`` gets ``status`` (with a
        ``Retry-After`` header when ``retry_after`` is given)."""
        with self.lock:
            self._fail_next.append((path_part, status, code, retry_after))

    def fail_always(
        self, path_part: str, status: int, code: str, *, retry_after: float | None = None
    ) -> None:
        """Every Graph request whose path contains ``path_part`` gets ``status`` and ``code``
        until cleared with ``fail_always(path_part, 0, "")``."""
        with self.lock:
            if status == 0:
                self._fail_always.pop(path_part, None)
            else:
                self._fail_always[path_part] = (status, code, retry_after)

    def early_requests(self) -> list[Recorded]:
        """Requests that reached a mailbox before a Retry-After the fake gave it had elapsed."""
        return [r for r in self.graph_requests() if r.early]

    def revoke_tokens(self) -> None:
        """Every access token issued so far stops working (the next use answers 401)."""
        with self.lock:
            self._tokens.clear()

    def drop_after_next_post(self, count: int = 1) -> None:
        """The next POSTs to messages are carried out, then the connection closes unanswered."""
        with self.lock:
            self._drop_after_post = count

    def expire_delta_tokens(self, form: str = "410") -> None:
        """Every delta and skip token issued so far expires, answering in ``form``."""
        with self.lock:
            for token in self._delta.values():
                token.expired = form
            self._sessions.clear()

    def graph_requests(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith("/v1.0/")]

    def max_in_flight(self) -> int:
        return max((r.in_flight for r in self.graph_requests() if r.mailbox), default=0)

    # --- request handling ---

    @contextmanager
    def _flight(self, record: Recorded) -> Iterator[None]:
        with self.lock:
            self._in_flight[record.mailbox] = self._in_flight.get(record.mailbox, 0) + 1
            record.in_flight = self._in_flight[record.mailbox]
            self.requests.append(record)
        try:
            yield
        finally:
            with self.lock:
                self._in_flight[record.mailbox] -= 1

    def handle(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        query = parse_qs(split.query, keep_blank_values=True)
        path = unquote(split.path)
        prefer = _prefer_values(handler.headers.get_all("Prefer") or [])
        mailbox = _mailbox_of(path)
        record = Recorded(handler.command, path, query, mailbox, time.monotonic(), 0, prefer)
        body = handler.read_body()
        with self._flight(record):
            if self.latency:
                time.sleep(self.latency)
            try:
                if path.startswith("/v1.0/"):
                    status, payload, headers = self._answer(handler, record, body)
                else:
                    try:
                        status, payload, headers = self._identity(handler.command, path, body)
                    except GraphFault as fault:
                        status, payload, headers = self._fault(fault, "")
            except _Drop:
                record.status = -1
                handler.drop()
                return
            record.status = status
            handler.answer(status, payload, headers)

    def _answer(
        self, handler: _Handler | _InnerRequest, record: Recorded, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        """One Graph request, direct or inside a ``$batch``: the same checks, faults and waits."""
        with self.lock:
            # Outlook throttles per app and mailbox: after a Retry-After, every request to that
            # mailbox is early until it has elapsed, whatever its path.
            record.not_before = self._not_before.get(record.mailbox) if record.mailbox else None
        try:
            return self._graph(
                handler, record.path, record.query, record.prefer, body, record.mailbox,
                record.mailbox,
            )  # fmt: skip
        except GraphFault as fault:
            return self._fault(fault, record.mailbox)

    def _fault(self, fault: GraphFault, mailbox: str) -> tuple[int, Any, dict[str, str]]:
        wait = fault.headers.get("Retry-After")
        if wait and mailbox:
            with self.lock:
                self._not_before[mailbox] = time.monotonic() + float(wait)
        return (
            fault.status,
            {"error": {"code": fault.code, "message": fault.message}},
            fault.headers,
        )

    def _identity(self, method: str, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        prefix = f"/{self.tenant}"
        if path == f"{prefix}/v2.0/.well-known/openid-configuration" and method == "GET":
            base = f"{self.base}{prefix}"
            return (
                200,
                {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "jwks_uri": f"{base}/discovery/v2.0/keys",
                    "response_types_supported": ["code", "id_token", "token"],
                },
                {},
            )
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
        if path == f"{prefix}/oauth2/v2.0/devicecode" and method == "POST":
            if form.get("client_id") != self.client_id:
                return (
                    400,
                    {"error": "unauthorized_client", "error_description": "AADSTS700016"},
                    {},
                )
            code = uuid.uuid4().hex
            with self.lock:
                self._refresh["device:" + code] = form.get("scope", "")
            return (
                200,
                {
                    "device_code": code,
                    "user_code": "FAKE-CODE",
                    "verification_uri": f"{self.base}/devicelogin",
                    "expires_in": 900,
                    "interval": 1,
                    "message": f"To sign in, open {self.base}/devicelogin and enter the code FAKE-CODE.",
                },
                {},
            )
        if path != f"{prefix}/oauth2/v2.0/token" or method != "POST":
            raise GraphFault(404, "not_found", f"no identity endpoint {method} {path}")
        with self.lock:
            self.token_requests += 1
        if form.get("client_id") != self.client_id:
            return (
                400,
                {"error": "unauthorized_client", "error_description": "AADSTS700016: unknown app"},
                {},
            )
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            scope = form.get("scope", "")
            if scope != f"{self.base}/.default":
                return (
                    400,
                    {
                        "error": "invalid_scope",
                        "error_description": f"AADSTS70011: bad scope {scope}",
                    },
                    {},
                )
            if not self._client_authenticated(form):
                return (
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.",
                    },
                    {},
                )
            return 200, self._issue(None, scope), {}
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            with self.lock:
                scope = self._refresh.get("device:" + form.get("device_code", ""))
            if scope is None:
                return 400, {"error": "expired_token", "error_description": "AADSTS70019"}, {}
            if self.device_user is None:
                return (
                    400,
                    {"error": "authorization_pending", "error_description": "AADSTS70016"},
                    {},
                )
            return 200, self._issue(self.device_user, scope), {}
        if grant == "refresh_token":
            with self.lock:
                user = self._refresh.get(form.get("refresh_token", ""))
            if user is None:
                return (
                    400,
                    {"error": "invalid_grant", "error_description": "AADSTS700082: expired"},
                    {},
                )
            return 200, self._issue(user, form.get("scope", "")), {}
        return 400, {"error": "unsupported_grant_type", "error_description": grant}, {}

    def _client_authenticated(self, form: dict[str, str]) -> bool:
        if "client_secret" in form:
            return form["client_secret"] == self.client_secret
        assertion = form.get("client_assertion")
        if not assertion or self.app_public_key is None:
            return False
        import jwt

        try:
            header = jwt.get_unverified_header(assertion)
            jwt.decode(
                assertion,
                self.app_public_key,
                algorithms=["RS256", "PS256"],
                audience=f"{self.base}/{self.tenant}/oauth2/v2.0/token",
            )
        except jwt.PyJWTError:
            return False
        expected = (
            base64.urlsafe_b64encode(bytes.fromhex(self.app_thumbprint or "")).decode().rstrip("=")
        )
        # The certificate registered for the app, named by its SHA-1 thumbprint (padding varies).
        return str(header.get("x5t", "")).rstrip("=") == expected

    def _issue(self, user: str | None, scope: str) -> dict[str, Any]:
        token = "fake-at-" + uuid.uuid4().hex
        with self.lock:
            self._tokens[token] = user
        answer: dict[str, Any] = {"token_type": "Bearer", "expires_in": 3600, "access_token": token}
        if user is None:
            return answer
        refresh = "fake-rt-" + uuid.uuid4().hex
        with self.lock:
            self._refresh[refresh] = user
        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, user))
        now = int(time.time())
        claims = {
            "iss": f"{self.base}/{self.tenant}/v2.0", "aud": self.client_id, "iat": now, "nbf": now,
            "exp": now + 3600, "oid": oid, "tid": self.tenant, "preferred_username": user,
            "name": user, "sub": oid,
        }  # fmt: skip
        encode = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
        answer.update(
            refresh_token=refresh,
            scope=" ".join(
                s for s in scope.split() if s not in ("openid", "profile", "offline_access")
            ),
            id_token=f"{encode({'alg': 'none', 'typ': 'JWT'})}.{encode(claims)}.",
            client_info=encode({"uid": oid, "utid": self.tenant}),
        )
        return answer

    # --- Graph ---

    def _graph(
        self,
        handler: _Handler,
        path: str,
        query: dict[str, list[str]],
        prefer: tuple[str, ...],
        body: bytes,
        wait_key: str,
        mailbox: str,
    ) -> tuple[int, Any, dict[str, str]]:
        auth = handler.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            raise GraphFault(401, "InvalidAuthenticationToken", "Access token is empty.")
        with self.lock:
            if auth[7:] not in self._tokens:
                raise GraphFault(
                    401,
                    "InvalidAuthenticationToken",
                    "Access token has expired or is not yet valid.",
                )
            user = self._tokens[auth[7:]]
            if self._throttle_rate and self._rng.random() < self._throttle_rate:
                status = self._rng.choice(self._throttle_statuses)
                raise GraphFault(
                    status,
                    "TooManyRequests" if status == 429 else "ServiceUnavailable",
                    "Application is over its MailboxConcurrency limit.",
                    {"Retry-After": str(self._retry_after)},
                )
            for index, (part, status, code, *wait) in enumerate(self._fail_next):
                if part in path:
                    del self._fail_next[index]
                    raise GraphFault(status, code, "injected failure", _retry_after(wait))
            for part, (status, code, wait) in self._fail_always.items():
                if part in path:
                    raise GraphFault(status, code, "injected failure", _retry_after([wait]))
        for key in query:
            if key.startswith("$") and key not in (
                "$select",
                "$filter",
                "$top",
                "$orderby",
                "$expand",
                "$search",
                "$skip",
                "$deltatoken",
                "$skiptoken",
                "$count",
            ):
                raise GraphFault(400, "BadRequest", f"Query option '{key}' is not supported.")
        applied = _prefer(prefer)
        id_type = applied.get("idtype", "").strip('"')
        immutable = id_type == "ImmutableId"

        parts = [unquote(p) for p in path.split("/")[2:]]  # after /v1.0
        method = handler.command
        if parts == ["$batch"]:
            return self._batch(handler, body)
        if parts and parts[0] == "groups":
            return self._groups(handler, method, parts, query)
        if len(parts) < 2 or parts[0] != "users":
            raise GraphFault(
                400, "BadRequest", f"Resource not found for the segment '{'/'.join(parts)}'."
            )
        if len(parts) == 2 and mailbox not in self.mailboxes:
            return self._directory(method, mailbox, query, user)
        if mailbox not in self.mailboxes:
            raise GraphFault(404, "ErrorInvalidUser", f"The requested user '{mailbox}' is invalid.")
        box = self.mailboxes[mailbox]
        if user is None and mailbox in self.blocked:
            raise GraphFault(403, "ErrorAccessDenied", ACCESS_POLICY_MESSAGE)
        if user is not None and user.lower() != mailbox:
            raise GraphFault(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        rest = parts[2:]
        if len(rest) == 0:
            return self._directory(method, mailbox, query, user)
        if rest[0] == "calendarView" and len(rest) == 2 and rest[1] in ("delta", "delta()"):
            self._need(method, "GET", "Calendars.Read")
            return self._calendar_delta(box, query, applied)
        if rest[0] == "events" and len(rest) == 2:
            self._need(method, "GET", "Calendars.Read")
            return self._master(box, rest[1], query)
        if rest == ["messages"]:
            if method == "POST":
                self._need(method, "POST", "Mail.ReadWrite")
                return self._create(handler, box, body, immutable)
            self._need(method, "GET", "Mail.ReadWrite")
            return self._list(box, None, query, immutable)
        if rest[0] == "messages" and len(rest) in (2, 3):
            self._need(method, method, "Mail.ReadWrite")
            return self._one(handler, box, rest, query, body, immutable)
        if rest[0] == "mailFolders" and len(rest) == 2:
            self._need(method, "GET", "Mail.ReadWrite")
            return self._folder(box, rest[1])
        if rest[0] == "mailFolders" and len(rest) == 3 and rest[2] == "messages":
            self._need(method, "GET", "Mail.ReadWrite")
            return self._list(box, self._folder_name(box, rest[1]), query, immutable)
        if rest == ["mailboxSettings"]:
            self._need(method, "GET", "MailboxSettings.Read")
            return 200, _project(box.settings, query), {}
        raise GraphFault(400, "BadRequest", f"Resource not found for the segment '{rest[0]}'.")

    def _batch(self, handler: _Handler, body: bytes) -> tuple[int, Any, dict[str, str]]:
        """JSON batching as documented (learn.microsoft.com/graph/json-batching) and as Graph is
        reported to refuse it: at most 20 requests; ids unique, compared without case; URLs
        relative to the version (``/users/…``), an absolute one is refused; a known method; a body
        needs its own Content-Type; ``dependsOn`` names earlier requests, and a request whose
        dependency failed answers 424. A malformed batch is refused whole with 400; a parseable
        one answers 200 whatever its requests say.

        Each request goes through the same handling as a direct one: recorded on its own (it
        counts against its mailbox's limits individually), the same refusals, injected faults and
        throttling, a 429 with its own ``Retry-After`` that holds only that mailbox. Outlook runs
        at most four of a batch's requests at a time (throttling-limits, "Outlook service limits
        for JSON batching"); ``batch_inner_latency`` models each one's service time."""
        if handler.command != "POST":
            raise GraphFault(405, "Request_BadRequest", "$batch accepts POST only.")
        data = _json_body(body)
        requests = data.get("requests")
        if not isinstance(requests, list) or not requests:
            raise GraphFault(400, "BadRequest", "A batch needs a non-empty 'requests' array.")
        if len(requests) > BATCH_LIMIT:
            raise GraphFault(
                400, "BadRequest", "The number of requests in a batch is limited to 20."
            )
        seen: set[str] = set()
        for inner in requests:
            if not isinstance(inner, dict):
                raise GraphFault(400, "BadRequest", "Invalid batch payload format.")
            rid, url = inner.get("id"), inner.get("url")
            if not isinstance(rid, str) or not rid or not isinstance(url, str) or not url:
                raise GraphFault(400, "BadRequest", "Invalid batch payload format.")
            if rid.lower() in seen:
                raise GraphFault(
                    400, "BadRequest", f"Request Id {rid} has to be unique in a batch."
                )
            seen.add(rid.lower())
            if re.match(r"^[a-z][a-z0-9+.-]*://", url, re.IGNORECASE):
                raise GraphFault(400, "BadRequest", "Invalid batch payload format.")
            if str(inner.get("method") or "").upper() not in BATCH_METHODS:
                raise GraphFault(400, "BadRequest", "Invalid batch payload format.")
            if "body" in inner and not _has_header(inner.get("headers"), "Content-Type"):
                raise GraphFault(
                    400, "BadRequest", "Content-Type header is required for a request body."
                )
            depends = inner.get("dependsOn") or []
            if not isinstance(depends, list) or any(
                not isinstance(d, str) or d.lower() not in seen - {rid.lower()} for d in depends
            ):
                raise GraphFault(400, "BadRequest", "dependsOn names a request not before it.")
        answers: dict[str, dict[str, Any]] = {}
        failed: set[str] = set()
        independent = [r for r in requests if not r.get("dependsOn")]
        with ThreadPoolExecutor(max_workers=4) as pool:
            for inner, answer in zip(
                independent, pool.map(lambda r: self._inner(handler, r), independent), strict=True
            ):
                answers[inner["id"].lower()] = answer
        for inner in requests:
            if inner.get("dependsOn"):
                if any(d.lower() in failed for d in inner["dependsOn"]):
                    answers[inner["id"].lower()] = {
                        "id": inner["id"], "status": 424, "headers": {},
                        "body": {"error": {"code": "FailedDependency",
                                           "message": "A request this one depends on failed."}},
                    }  # fmt: skip
                else:
                    answers[inner["id"].lower()] = self._inner(handler, inner)
            if answers[inner["id"].lower()]["status"] >= 400:
                failed.add(inner["id"].lower())
        ordered = [answers[r["id"].lower()] for r in requests]
        ordered.reverse()  # answers come in any order: callers match them by id
        return 200, {"responses": ordered}, {}

    def _inner(self, handler: _Handler, inner: dict[str, Any]) -> dict[str, Any]:
        """One request of a batch, handled as a direct request would be."""
        headers = email.message.Message()
        headers["Authorization"] = handler.headers.get("Authorization", "")
        for name, value in (inner.get("headers") or {}).items():
            headers[name] = str(value)
        payload = json.dumps(inner["body"]).encode("utf-8") if "body" in inner else b""
        split = urlsplit("/v1.0/" + inner["url"].lstrip("/"))
        path = unquote(split.path)
        record = Recorded(
            str(inner["method"]).upper(),
            path,
            parse_qs(split.query, keep_blank_values=True),
            _mailbox_of(path),
            time.monotonic(),
            0,
            _prefer_values(headers.get_all("Prefer") or []),
            batched=True,
        )
        if record.path == "/v1.0/$batch":
            status, answer, extra = 400, {"error": {"code": "BadRequest",
                                                    "message": "A batch cannot hold a batch."}}, {}  # fmt: skip
        else:
            with self._flight(record):
                if self.batch_inner_latency:
                    time.sleep(self.batch_inner_latency)
                status, answer, extra = self._answer(
                    _InnerRequest(record.method, headers), record, payload
                )
        record.status = status
        if isinstance(answer, bytes):
            answer = base64.b64encode(answer).decode("ascii")
        return {"id": inner["id"], "status": status, "headers": extra, "body": answer}

    def _need(self, method: str, allowed: str, permission: str) -> None:
        if method != allowed:
            raise GraphFault(
                405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed here."
            )
        if permission not in self.granted:
            raise GraphFault(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )

    def _directory(
        self, method: str, address: str, query: dict[str, list[str]], user: str | None
    ) -> Any:
        self._need(method, "GET", "User.Read.All" if user is None else "User.Read.All")
        person = self.people.get(address)
        if person is None:
            raise GraphFault(
                404, "Request_ResourceNotFound", f"Resource '{address}' does not exist."
            )
        data = {
            "id": _graph_id("user", address),
            "mail": address,
            "userPrincipalName": address,
            **person,
        }
        return 200, _project(data, query), {}

    # the directory's groups

    def _groups(
        self,
        handler: _Handler | _InnerRequest,
        method: str,
        parts: list[str],
        query: dict[str, list[str]],
    ) -> tuple[int, Any, dict[str, str]]:
        """``/groups?$filter=mail eq '…'`` and ``/groups/{id}/transitiveMembers[/microsoft.graph.user]``
        as "List groups" and "List group transitive members" document them, refusing what they
        refuse: an OData cast (or ``$filter``, ``$orderby``, ``$search``) without the
        ``ConsistencyLevel: eventual`` header and ``$count=true`` (on every page), ``$filter`` on
        the relationship at all (Graph answers it is "currently not supported"), a ``$select`` of
        a property users do not have, a ``$top`` outside 1..999. Without User.Read.All a user
        member comes back with its id and type only (the documented "limited information")."""
        self._need(method, "GET", "GroupMember.Read.All")
        advanced = (
            handler.headers.get("ConsistencyLevel", "") == "eventual"
            and (query.get("$count") or [""])[0] == "true"
        )
        if parts == ["groups"]:
            wanted = (query.get("$filter") or [""])[0]
            match = re.fullmatch(r"mail eq '((?:[^']|'')*)'", wanted.strip())
            if match is None:
                raise GraphFault(
                    400,
                    "Request_UnsupportedQuery",
                    "Unsupported or invalid query filter clause specified for property 'mail' of resource 'Group'.",
                )
            mail = match.group(1).replace("''", "'").lower()
            with self.lock:
                found = [g for g in self.groups.values() if g.mail == mail]
            return (
                200,
                {
                    "value": [
                        _project({"id": g.id, "mail": g.mail, "displayName": g.mail}, query)
                        for g in found
                    ]
                },
                {},
            )
        if len(parts) < 3 or parts[2] != "transitiveMembers" or len(parts) > 4:
            raise GraphFault(
                400, "BadRequest", f"Resource not found for the segment '{'/'.join(parts[2:])}'."
            )
        cast = parts[3] if len(parts) == 4 else None
        if cast is not None and cast != "microsoft.graph.user":
            raise GraphFault(
                400, "Request_UnsupportedQuery", f"The type cast '{cast}' is not supported here."
            )
        if (cast or "$orderby" in query or "$search" in query) and not advanced:
            raise GraphFault(
                400,
                "Request_UnsupportedQuery",
                "Request with OData cast, $search or $orderby only works through MSGraph with a "
                "special request header: 'ConsistencyLevel: eventual' and '$count=true'.",
            )
        if "$filter" in query:
            raise GraphFault(
                400,
                "Request_UnsupportedQuery",
                "The specified filter to the reference property query is currently not supported.",
            )
        raw_top = (query.get("$top") or ["100"])[0]
        if not raw_top.isdigit() or not 1 <= int(raw_top) <= 999:
            raise GraphFault(
                400,
                "Request_BadRequest",
                f"Invalid page size specified: '{raw_top}'. Must be between 1 and 999 inclusive.",
            )
        select = [f.strip() for f in (query.get("$select") or [""])[0].split(",") if f.strip()]
        for name in select:
            if name not in ("id", *FakeGroup.USER_FIELDS):
                raise GraphFault(
                    400,
                    "Request_BadRequest",
                    f"Could not find a property named '{name}' on type 'microsoft.graph.user'.",
                )
        with self.lock:
            group = self.groups.get(parts[1].lower())
            if group is None:
                raise GraphFault(
                    404,
                    "Request_ResourceNotFound",
                    f"Resource '{parts[1]}' does not exist or one of its queried reference-property objects are not present.",
                )
            objects = self._transitive(group)
            full = "User.Read.All" in self.granted
        items: list[dict[str, Any]] = []
        for kind, data in objects:
            if cast is not None and kind != "user":
                continue
            item = {"@odata.type": f"#microsoft.graph.{kind}", "id": data["id"]}
            if kind == "group" or full:
                fields = select or list(data)
                item.update({k: data.get(k) for k in fields if k != "@odata.type"})
            items.append(item)
        start = int((query.get("$skiptoken") or ["0"])[0] or 0)
        page = items[start : start + int(raw_top)]
        answer: dict[str, Any] = {"value": page}
        if advanced:
            answer["@odata.count"] = len(items)
        if start + int(raw_top) < len(items):
            following = {k: v[0] for k, v in query.items() if k != "$skiptoken"}
            following["$skiptoken"] = str(start + int(raw_top))
            answer["@odata.nextLink"] = f"{self.base}/v1.0/{'/'.join(parts)}?{urlencode(following)}"
        return 200, answer, {}

    def _transitive(self, group: FakeGroup) -> list[tuple[str, dict[str, Any]]]:
        """Every object under ``group``, nested groups flattened, each once (under the lock)."""
        seen: set[str] = set()
        out: list[tuple[str, dict[str, Any]]] = []
        pending = list(group.members)
        while pending:
            member = pending.pop(0)
            if member in seen:
                continue
            seen.add(member)
            if member in self.groups:
                nested = self.groups[member]
                out.append(
                    ("group", {"id": nested.id, "mail": nested.mail, "displayName": nested.mail})
                )
                pending.extend(nested.members)
            elif member in self.directory_users:
                out.append(("user", dict(self.directory_users[member])))
        return out

    # calendar

    def _calendar_delta(
        self, box: Mailbox, query: dict[str, list[str]], applied: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        unknown = set(query) - DELTA_QUERY
        if unknown:
            raise GraphFault(
                400,
                "ErrorInvalidUrlQuery",
                f"The following parameters are not supported with change tracking over the "
                f"'CalendarView' resource: '{', '.join(sorted(unknown))}'.",
            )
        size = int(applied.get("odata.maxpagesize", "10"))
        zone = applied.get("outlook.timezone", '"UTC"').strip('"')
        headers = {"Preference-Applied": ", ".join(
            f"{k}={v}" for k, v in applied.items() if k in ("odata.maxpagesize", "outlook.timezone")
        )}  # fmt: skip
        with self.lock:
            if "$skiptoken" in query:
                entry = self._sessions.pop(query["$skiptoken"][0], None)
                if entry is None:
                    raise GraphFault(
                        410,
                        "SyncStateNotFound",
                        "The sync state is no longer valid.",
                        {"Location": ""},
                    )
                session, offset = entry
                if zone != session.zone:
                    # Graph does not refuse it: the page silently comes in another zone.
                    self.violations.append(
                        f"calendarView delta page without the round's Prefer outlook.timezone "
                        f"({session.zone!r} at first, {zone!r} now)"
                    )
            elif "$deltatoken" in query:
                token = self._delta.get(query["$deltatoken"][0])
                if token is None or token.mailbox != box.address:
                    raise GraphFault(400, "syncStateNotFound", "The sync state token is invalid.")
                if token.expired:
                    self._expired(box, token)
                session, offset = self._round(box, token), 0
                session.zone = zone
            else:
                if "startDateTime" not in query or "endDateTime" not in query:
                    raise GraphFault(
                        400,
                        "ErrorInvalidParameter",
                        "This request requires a time window specified by the query string "
                        "parameters StartDateTime and EndDateTime.",
                    )
                start = _parse_time(query["startDateTime"][0])
                end = _parse_time(query["endDateTime"][0])
                if end <= start:
                    raise GraphFault(
                        400, "ErrorInvalidParameter", "EndDateTime is before StartDateTime."
                    )
                empty = DeltaToken(box.address, start, end, 0, frozenset())
                session, offset = self._round(box, empty), 0
                session.zone = zone
            page = [self._render(box, item, zone) for item in session.items[offset : offset + size]]
            link = f"{self.base}/v1.0/users/{quote(box.address)}/calendarView/delta"
            answer: dict[str, Any] = {
                "@odata.context": f"{self.base}/v1.0/$metadata#Collection(event)",
                "value": page,
            }
            if offset + size < len(session.items):
                skip = uuid.uuid4().hex
                self._sessions[skip] = (session, offset + size)
                answer["@odata.nextLink"] = f"{link}?{urlencode({'$skiptoken': skip})}"
            else:
                delta = uuid.uuid4().hex
                self._delta[delta] = session.token
                answer["@odata.deltaLink"] = f"{link}?{urlencode({'$deltatoken': delta})}"
        return 200, answer, headers

    def _expired(self, box: Mailbox, token: DeltaToken) -> None:
        if token.expired == "410":
            fresh = urlencode(
                {"startDateTime": _stamp(token.start), "endDateTime": _stamp(token.end)}
            )
            raise GraphFault(
                410,
                "SyncStateNotFound",
                "The sync state generation is no longer valid; start a full sync.",
                {
                    "Location": f"{self.base}/v1.0/users/{quote(box.address)}/calendarView/delta?{fresh}"
                },
            )
        raise GraphFault(
            400, token.expired, "The sync state is invalid; a full resynchronization is required."
        )

    def _round(self, box: Mailbox, token: DeltaToken) -> Session:
        current = {
            i.id: i
            for i in box.instances.values()
            if i.start.astimezone(UTC) < token.end and i.end.astimezone(UTC) > token.start
        }
        items: list[dict[str, Any]] = []
        for instance in sorted(current.values(), key=lambda i: (i.start.astimezone(UTC), i.id)):
            if instance.id not in token.known or instance.seq > token.seq:
                items.append({"instance": instance.id})
        for gone in sorted(token.known - set(current) - set(box.raw)):
            items.append({"id": gone, "@removed": {"reason": "deleted"}})
        raw = {k for k, (_, event) in box.raw.items() if _raw_in_window(event, token)}
        for key in sorted(raw):
            if key not in token.known or box.raw[key][0] > token.seq:
                items.append({"raw": key})
        for gone in sorted(token.known & set(box.raw) - raw):
            items.append({"id": gone, "@removed": {"reason": "deleted"}})
        known = frozenset(current) | frozenset(raw)
        fresh = DeltaToken(box.address, token.start, token.end, self.seq, known)
        return Session(items, fresh)

    def _render(self, box: Mailbox, item: dict[str, Any], zone: str) -> dict[str, Any]:
        if "@removed" in item:
            return item
        if "raw" in item:
            entry = box.raw.get(item["raw"])
            return entry[1] if entry else {"id": item["raw"], "@removed": {"reason": "deleted"}}
        instance = box.instances.get(item["instance"])
        if instance is None:  # deleted while the round was being paged
            return {"id": item["instance"], "@removed": {"reason": "deleted"}}
        return self._event_json(box, instance, zone)

    def _event_json(self, box: Mailbox, instance: Instance, zone: str) -> dict[str, Any]:
        spec = instance.spec
        iana = WINDOWS_TO_IANA.get(zone, zone)
        tz = ZoneInfo("UTC" if iana in ("UTC", "Etc/UTC") else iana)

        def when(moment: dt.datetime) -> dict[str, str]:
            if spec.all_day:
                return {
                    "dateTime": moment.date().isoformat() + "T00:00:00.0000000",
                    "timeZone": zone,
                }
            return {
                "dateTime": moment.astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
                "timeZone": zone,
            }

        original_zone = IANA_TO_WINDOWS.get(str(spec.start.tzinfo), "UTC")
        ical = spec.uid
        if instance.kind != "singleInstance":
            # Graph gives every occurrence an iCalUId of its own.
            ical = (
                "040000008200E00074C5B7101A82E008" + hashlib.sha1(instance.id.encode()).hexdigest()
            )
        organizer_is_box = spec.organizer.address.lower() == box.address
        data: dict[str, Any] = {
            "@odata.etag": f'W/"{instance.seq}"',
            "id": instance.id,
            "iCalUId": ical,
            "type": instance.kind,
            "seriesMasterId": instance.master_id,
            "subject": spec.subject,
            "bodyPreview": spec.body[:255],
            "body": {"contentType": "html", "content": _outlook_html(spec.body)},
            "start": when(instance.start),
            "end": when(instance.end),
            "originalStartTimeZone": original_zone,
            "originalEndTimeZone": original_zone,
            "isAllDay": spec.all_day,
            "isCancelled": spec.cancelled,
            "isOrganizer": organizer_is_box,
            "location": {"displayName": spec.location, "locationType": "default"},
            "isOnlineMeeting": bool(spec.online_url),
            "onlineMeeting": {"joinUrl": spec.online_url} if spec.online_url else None,
            "organizer": {
                "emailAddress": {"name": spec.organizer.name, "address": spec.organizer.address}
            },
            "attendees": [_attendee(who) for who in spec.attendees],
            "categories": list(spec.categories),
            "responseStatus": {
                "response": "organizer" if organizer_is_box else "none",
                "time": "0001-01-01T00:00:00Z",
            },
            "lastModifiedDateTime": "2026-01-01T00:00:00Z",
            "changeKey": hashlib.sha1(
                json.dumps([spec.subject, _stamp(instance.start)]).encode()
            ).hexdigest()[:16],
        }
        if instance.original_start is not None:
            data["originalStart"] = _stamp(instance.original_start)
        return data

    def _master(self, box: Mailbox, master_id: str, query: dict[str, list[str]]) -> Any:
        for uid, spec in box.masters.items():
            if _graph_id(box.address, uid, "master") == master_id and spec.rrule:
                data = {
                    "id": master_id,
                    "iCalUId": uid,
                    "type": "seriesMaster",
                    "subject": spec.subject,
                }
                return 200, _project(data, query), {}
        raise GraphFault(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )

    # messages

    def _new_message(self, box: Mailbox, data: dict[str, Any], folder: str) -> Message:
        now = _stamp(dt.datetime.now(UTC))
        message = Message(
            "AAkALgImm" + uuid.uuid4().hex, "AAMkRest" + uuid.uuid4().hex, folder, {}, {}
        )
        message.data = {
            "subject": "",
            "body": {"contentType": "text", "content": ""},
            "toRecipients": [],
            "ccRecipients": [],
            "bccRecipients": [],
            "categories": [],
            "internetMessageId": f"<{uuid.uuid4().hex}@fake.outlook.example>",
            "isDraft": True,
            "isRead": True,
            "createdDateTime": now,
            "lastModifiedDateTime": now,
            "receivedDateTime": now,
            "sentDateTime": None,
            "parentFolderId": box.folder_id(folder),
            "changeKey": uuid.uuid4().hex[:16],
            "from": {"emailAddress": {"name": box.name, "address": box.address}},
            **data,
        }
        message.order = len(box.messages) + 1
        box.messages[message.immutable_id] = message
        return message

    def _create(self, handler: _Handler, box: Mailbox, body: bytes, immutable: bool) -> Any:
        if not (handler.headers.get("Content-Type") or "").lower().startswith("application/json"):
            raise GraphFault(415, "UnsupportedMediaType", "A POST to messages needs a JSON body.")
        data = _json_body(body)
        properties = self._check_message(data, creating=True)
        with self.lock:
            message = self._new_message(
                box,
                {k: v for k, v in data.items() if k != "singleValueExtendedProperties"},
                "drafts",
            )
            message.properties = properties
            if self._drop_after_post:
                self._drop_after_post -= 1
                raise _Drop()
        return (
            201,
            self._message_json(message, immutable, {}),
            {
                "Location": f"{self.base}/v1.0/users/{quote(box.address)}/messages/{message.immutable_id}"
            },
        )

    def _check_message(self, data: dict[str, Any], *, creating: bool) -> dict[str, str]:
        for key in data:
            if key not in WRITABLE_MESSAGE_FIELDS:
                raise GraphFault(
                    400,
                    "RequestBodyRead",
                    f"The property '{key}' does not exist on type 'microsoft.graph.message'.",
                )
        body = data.get("body")
        if body is not None and str(body.get("contentType", "")).lower() not in ("html", "text"):
            raise GraphFault(400, "RequestBodyRead", "body.contentType must be html or text")
        for key in ("toRecipients", "ccRecipients", "bccRecipients"):
            for recipient in data.get(key) or []:
                address = (recipient.get("emailAddress") or {}).get("address", "")
                if not re.fullmatch(r"[^\s@<>]+@[^\s@<>]+", address):
                    raise GraphFault(
                        400, "ErrorInvalidRecipients", "At least one recipient is not valid."
                    )
        for header in data.get("internetMessageHeaders") or []:
            if not creating or not str(header.get("name", "")).lower().startswith("x-"):
                raise GraphFault(
                    400, "InvalidInternetMessageHeader", "Only x- headers can be set, on create."
                )
        properties = {}
        for prop in data.get("singleValueExtendedProperties") or []:
            if not EXT_PROPERTY_ID.match(str(prop.get("id", ""))) or "value" not in prop:
                raise GraphFault(
                    400, "ErrorInvalidProperty", "The extended property id is not valid."
                )
            properties[prop["id"]] = str(prop["value"])
        return properties

    def _message_json(
        self, message: Message, immutable: bool, query: dict[str, list[str]]
    ) -> dict[str, Any]:
        data = {"id": message.immutable_id if immutable else message.rest_id, **message.data}
        if data["body"]["contentType"] == "html":
            data["body"] = {"contentType": "html", "content": data["body"]["content"]}
        data["bodyPreview"] = _plain(data["body"]["content"])[:255]
        expand = (query.get("$expand") or [""])[0]
        wanted = re.fullmatch(r"singleValueExtendedProperties\(\$filter=id eq '(.*)'\)", expand)
        if expand and not wanted:
            raise GraphFault(400, "BadRequest", f"Parsing OData Select and Expand failed: {expand}")
        if wanted and wanted.group(1) in message.properties:
            data["singleValueExtendedProperties"] = [
                {"id": wanted.group(1), "value": message.properties[wanted.group(1)]}
            ]
        return _project(data, query, keep=("singleValueExtendedProperties",))

    def _folder_name(self, box: Mailbox, name: str) -> str:
        for known in WELL_KNOWN:
            if name.lower() == known or name == box.folder_id(known):
                return known
        raise GraphFault(404, "ErrorInvalidIdMalformed", "Id is malformed.")

    def _folder(self, box: Mailbox, name: str) -> Any:
        known = self._folder_name(box, name)
        names = {
            "drafts": "Drafts",
            "sentitems": "Sent Items",
            "deleteditems": "Deleted Items",
            "inbox": "Inbox",
        }
        return 200, {"id": box.folder_id(known), "displayName": names[known]}, {}

    def _list(
        self, box: Mailbox, folder: str | None, query: dict[str, list[str]], immutable: bool
    ) -> Any:
        flt = (query.get("$filter") or [""])[0]
        order = (query.get("$orderby") or [""])[0]
        if "$search" in query and ("$filter" in query or "$orderby" in query):
            raise GraphFault(
                400, "ErrorInvalidUrlQuery", "$search can not be combined with $filter or $orderby."
            )
        if "$search" in query:
            return self._search(box, folder, query, immutable)
        top = _top(query)
        clauses = _parse_filter(flt) if flt else []
        if order:
            ordered = [p.strip().split()[0] for p in order.split(",")]
            leading = [c.prop for c in clauses[: len(ordered)]]
            if clauses and leading != ordered:
                raise GraphFault(
                    400,
                    "InefficientFilter",
                    "The restriction or sort order is too complex for this operation.",
                )
        with self.lock:
            found = [
                m for m in box.messages.values()
                if not m.hard_deleted and (folder is None or m.folder == folder)
                and all(c.matches(m) for c in clauses)
            ]  # fmt: skip
        key = order.split()[0] if order else "receivedDateTime"
        descending = not order or order.lower().endswith("desc")
        found.sort(key=lambda m: str(m.data.get(key) or ""), reverse=descending)
        skip = int((query.get("$skip") or ["0"])[0])
        page = [self._message_json(m, immutable, query) for m in found[skip : skip + top]]
        answer: dict[str, Any] = {"value": page}
        if skip + top < len(found):
            rest = {k: v[0] for k, v in query.items()} | {"$skip": str(skip + top)}
            answer["@odata.nextLink"] = (
                f"{self.base}/v1.0/users/{quote(box.address)}/messages?{urlencode(rest)}"
            )
        return 200, answer, {}

    def _search(
        self, box: Mailbox, folder: str | None, query: dict[str, list[str]], immutable: bool
    ) -> Any:
        """``$search`` over messages (KQL): ``to:``, ``cc:``, ``bcc:``, ``recipients:``,
        ``participants:``, ``from:``, ``subject:`` or free words. The documented rules: the
        value is a double-quoted string; no ``$filter``, ``$orderby`` or ``$skip``; results come
        newest sent first; at most 1,000 in all, paged with a skip token."""
        if "$skip" in query:
            raise GraphFault(400, "ErrorInvalidUrlQuery", "$skip is not supported with $search.")
        raw = query["$search"][0]
        if len(raw) < 2 or not (raw.startswith('"') and raw.endswith('"')):
            raise GraphFault(
                400, "BadRequest", "Syntax error: the $search value must be a double-quoted string."
            )
        top = _top(query)
        term = raw[1:-1].replace('\\"', '"')
        field, colon, value = term.partition(":")
        fields = {
            "to": ("toRecipients",),
            "cc": ("ccRecipients",),
            "bcc": ("bccRecipients",),
            "recipients": ("toRecipients", "ccRecipients", "bccRecipients"),
            "participants": ("from", "toRecipients", "ccRecipients", "bccRecipients"),
            "from": ("from",),
        }
        wanted = value.strip().lower()

        def matches(message: Message) -> bool:
            data = message.data
            if colon and field.lower() in fields:
                addresses = []
                for name in fields[field.lower()]:
                    people = data.get(name) or []
                    for person in people if isinstance(people, list) else [people]:
                        addresses.append(str(person["emailAddress"]["address"]).lower())
                return wanted in addresses
            if colon and field.lower() == "subject":
                return wanted in str(data.get("subject") or "").lower()
            text = f"{data.get('subject') or ''} {_plain(data['body']['content'])}".lower()
            return all(word in text for word in term.lower().split())

        with self.lock:
            found = [
                m for m in box.messages.values()
                if not m.hard_deleted and (folder is None or m.folder == folder) and matches(m)
            ]  # fmt: skip
        found.sort(key=lambda m: str(m.data.get("sentDateTime") or m.data["createdDateTime"]))
        found = found[::-1][:1000]
        offset = int((query.get("$skiptoken") or ["0"])[0])
        page = [self._message_json(m, immutable, query) for m in found[offset : offset + top]]
        answer: dict[str, Any] = {"value": page}
        if offset + top < len(found):
            rest = {k: v[0] for k, v in query.items()} | {"$skiptoken": str(offset + top)}
            where = f"mailFolders/{folder}/messages" if folder else "messages"
            answer["@odata.nextLink"] = (
                f"{self.base}/v1.0/users/{quote(box.address)}/{where}?{urlencode(rest)}"
            )
        return 200, answer, {}

    def _one(
        self,
        handler: _Handler,
        box: Mailbox,
        rest: list[str],
        query: dict[str, list[str]],
        body: bytes,
        immutable: bool,
    ) -> Any:
        with self.lock:
            message = next(
                (
                    m
                    for m in box.messages.values()
                    if rest[1] in (m.immutable_id, m.rest_id) and not m.hard_deleted
                ),
                None,
            )
        if message is None:
            raise GraphFault(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if len(rest) == 3:
            if rest[2] != "$value" or handler.command != "GET":
                raise GraphFault(400, "BadRequest", f"Unsupported segment {rest[2]}")
            return 200, self.mime(box.address, message), {"Content-Type": "message/rfc822"}
        if handler.command == "GET":
            return 200, self._message_json(message, immutable, query), {}
        if handler.command == "PATCH":
            if (
                not (handler.headers.get("Content-Type") or "")
                .lower()
                .startswith("application/json")
            ):
                raise GraphFault(415, "UnsupportedMediaType", "A PATCH needs a JSON body.")
            data = _json_body(body)
            properties = self._check_message(data, creating=False)
            with self.lock:
                content = set(data) - {"categories", "isRead", "singleValueExtendedProperties"}
                if content and not message.data.get("isDraft"):
                    raise GraphFault(
                        400,
                        "ErrorInvalidPropertyUpdateSentMessage",
                        "Sent messages cannot be changed.",
                    )
                message.data.update(
                    {k: v for k, v in data.items() if k != "singleValueExtendedProperties"}
                )
                message.properties.update(properties)
                self._touch(message)
            return 200, self._message_json(message, immutable, {}), {}
        if handler.command == "DELETE":
            with self.lock:
                self._move(box, message, "deleteditems")
            return 204, None, {}
        raise GraphFault(
            405, "Request_BadRequest", f"The HTTP method '{handler.command}' is not allowed."
        )


# --- helpers -------------------------------------------------------------------------------------


@dataclass
class _InnerRequest:
    """What ``_graph`` reads of a request, for the requests inside a ``$batch``."""

    command: str
    headers: Any


class _Drop(Exception):
    """Close the connection without answering."""


def _prefer_values(values: list[str]) -> tuple[str, ...]:
    """Every ``Prefer`` preference of a request, however its headers split them."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def _mailbox_of(path: str) -> str:
    match = re.match(r"^/v1\.0/users/([^/]+)", path)
    return unquote(match.group(1)).lower() if match else ""


def _has_header(headers: Any, name: str) -> bool:
    return isinstance(headers, dict) and any(k.lower() == name.lower() for k in headers)


def _prefer(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        name, _, setting = value.partition("=")
        out[name.strip().lower()] = setting.strip()
    return out


def _top(query: dict[str, list[str]]) -> int:
    raw = (query.get("$top") or ["10"])[0]
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise GraphFault(400, "ErrorInvalidUrlQuery", f"The value of $top is not valid: {raw}")
    return int(raw)


def _retry_after(wait: list[float | None]) -> dict[str, str]:
    return {"Retry-After": str(int(wait[0]))} if wait and wait[0] is not None else {}


def _raw_in_window(event: dict[str, Any], token: DeltaToken) -> bool:
    """Whether a raw event falls in a delta round's window; one whose times cannot be read is
    served anyway (that is what a hostile-calendar test wants to see handled)."""
    try:
        start = _parse_time(str(event["start"]["dateTime"]))
        end = _parse_time(str(event["end"]["dateTime"]))
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
        return True
    return start < token.end and end > token.start


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise GraphFault(400, "BadRequest", "Unable to read JSON request payload.") from None
    if not isinstance(data, dict):
        raise GraphFault(400, "BadRequest", "The request body must be a JSON object.")
    return data


def _project(
    data: dict[str, Any], query: dict[str, list[str]], keep: tuple[str, ...] = ()
) -> dict[str, Any]:
    select = (query.get("$select") or [""])[0]
    if not select:
        return data
    wanted = [s.strip() for s in select.split(",") if s.strip()]
    for name in wanted:
        if (
            name not in data
            and name not in MESSAGE_FIELDS
            and name
            not in ("displayName", "jobTitle", "iCalUId", "timeZone", "automaticRepliesSetting")
        ):
            raise GraphFault(400, "BadRequest", f"Could not find a property named '{name}'.")
    return {k: v for k, v in data.items() if k in wanted or k in ("id", "@odata.etag") or k in keep}


def _who(address: str, name: str = "") -> dict[str, Any]:
    return {"emailAddress": {"address": address, "name": name or address}}


def _attendee(who: Who) -> dict[str, Any]:
    return {
        "type": "resource" if who.resource else "required",
        "status": {"response": _RESPONSE_TO_GRAPH[who.response], "time": "0001-01-01T00:00:00Z"},
        "emailAddress": {"name": who.name, "address": who.address},
    }


def _outlook_html(text: str) -> str:
    """A plain body as Outlook stores it: one div per line, an empty line as a div with a br."""
    lines = "".join(
        f"<div>{html.escape(line)}</div>" if line.strip() else "<div><br></div>"
        for line in text.split("\n")
    )
    return (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        f'<style>p {{margin:0}}</style></head><body><div class="elementToProof">{lines}</div></body></html>'
    )


@dataclass(frozen=True)
class Clause:
    """One top-level clause of a message ``$filter`` the fake understands."""

    prop: str
    op: str
    value: Any

    def matches(self, message: Message) -> bool:
        if self.prop == "singleValueExtendedProperties":
            pid, value = self.value
            return message.properties.get(pid) == value
        if self.prop in ("toRecipients", "ccRecipients"):
            addresses = [
                r["emailAddress"]["address"].lower() for r in message.data.get(self.prop) or []
            ]
            return str(self.value).lower() in addresses
        actual = message.data.get(self.prop)
        if actual is None:
            return False
        if isinstance(self.value, dt.datetime):
            actual = _parse_time(str(actual))
        elif isinstance(self.value, str):
            actual, value = str(actual).lower(), self.value.lower()
            return {"eq": actual == value, "ne": actual != value}.get(self.op, False)
        return {
            "eq": actual == self.value, "ne": actual != self.value, "ge": actual >= self.value,
            "gt": actual > self.value, "le": actual <= self.value, "lt": actual < self.value,
        }[self.op]  # fmt: skip


_FILTERABLE = {
    "sentDateTime",
    "receivedDateTime",
    "createdDateTime",
    "lastModifiedDateTime",
    "isDraft",
    "subject",
    "internetMessageId",
}


def _split_and(text: str) -> list[str]:
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and text[i : i + 5].lower() == " and ":
            parts.append(text[start:i])
            start = i + 5
            i += 4
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _parse_filter(text: str) -> list[Clause]:
    clauses = []
    for part in _split_and(text):
        ext = re.fullmatch(
            r"singleValueExtendedProperties/any\((\w+):\s*(.*)\)", part, re.IGNORECASE
        )
        if ext:
            var, inner = ext.groups()
            tests = dict(
                (m.group(1), m.group(2).replace("''", "'"))
                for m in re.finditer(rf"{var}/(id|value) eq '((?:[^']|'')*)'", inner)
            )
            if set(tests) != {"id", "value"} or len(_split_and(inner)) != 2:
                raise GraphFault(
                    400,
                    "ErrorInvalidUrlQueryFilter",
                    "An extended property filter must test both id and value.",
                )
            clauses.append(
                Clause("singleValueExtendedProperties", "any", (tests["id"], tests["value"]))
            )
            continue
        if re.match(r"(to|cc|bcc)Recipients/", part, re.IGNORECASE):
            # The filter documentation's lambda examples suggest this works; Exchange refuses it
            # (microsoft-graph-explorer-v4 issue 3957, python-o365 issues 452 and 521).
            raise GraphFault(
                400,
                "ErrorInvalidUrlQueryFilter",
                "The query filter contains one or more invalid nodes.",
            )
        simple = re.fullmatch(r"(\w+) (eq|ne|ge|gt|le|lt) (.+)", part)
        if not simple or simple.group(1) not in _FILTERABLE:
            raise GraphFault(400, "BadRequest", f"Invalid filter clause: {part}")
        prop, op, raw = simple.groups()
        value: Any
        if raw in ("true", "false"):
            value = raw == "true"
        elif raw.startswith("'") and raw.endswith("'"):
            value = raw[1:-1].replace("''", "'")
        elif re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z?", raw):
            value = _parse_time(raw)
        else:
            raise GraphFault(400, "BadRequest", f"Invalid filter value: {raw}")
        clauses.append(Clause(prop, op, value))
    return clauses


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeGraph

    def setup(self) -> None:
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            self.request.close()
            raise
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake records requests itself."""

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        if isinstance(payload, bytes):
            data = payload
            kind = headers.pop("Content-Type", "application/octet-stream")
        elif payload is None:
            data, kind = b"", ""
        else:
            data, kind = (
                json.dumps(payload).encode("utf-8"),
                "application/json; odata.metadata=minimal",
            )
        self.send_response(status)
        if kind:
            self.send_header("Content-Type", kind)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def drop(self) -> None:
        self.close_connection = True
        with suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)

    def _any(self) -> None:
        self.server_fake.handle(self)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _any
