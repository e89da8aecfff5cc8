"""IMAP draft sink: drafts APPENDed to the ``\\Drafts`` folder of any standards mailbox.

Works with Dovecot, Fastmail, Nextcloud-hosted mail, Gmail and Outlook.com (over IMAP), with or
without UIDPLUS. A draft is found again by its ``X-Recruitmail-Key`` header (or its deterministic
Message-ID) in Drafts, then in Sent. The sink never sends, never deletes and never expunges: a
pending draft is "updated" by appending the replacement and tagging the old one with the obsolete
keyword, so the recruiter sees both and nothing is lost.

Each write (the APPEND of a draft, the STORE of the obsolete keyword) asks the context's
``may_write`` right before the command is sent, after any reconnect: an instance whose lease on
the mailbox ran out meanwhile sends nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recruitmail.connectors.maildir import MAX_SENT_BYTES, message_text
from recruitmail.connectors.tls import tls_context
from recruitmail.contracts import limits
from recruitmail.contracts.connector import KEY_HEADER, ConnectorContext, own_words
from recruitmail.contracts.errors import (
    AmbiguousError,
    AuthError,
    ConfigError,
    PermanentError,
    TransientError,
)
from recruitmail.contracts.mime import address_key, to_bytes
from recruitmail.contracts.models import DraftKey, DraftMessage, DraftRef, DraftState
from recruitmail.contracts.secrets import load_secret

log = logging.getLogger(__name__)

T = TypeVar("T")

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
DRAFT_FLAGS = (b"\\Draft", b"\\Seen")

# Errors that mean the connection is gone (reset, EOF, timeout, TLS failure mid-stream), as
# opposed to the server answering NO or BAD.
_DROPPED: tuple[type[BaseException], ...] = (IMAPClientAbortError, OSError, EOFError)
_ATOM_SPECIALS = set('(){ %*"\\]')
_WARNED_PLAIN: set[tuple[str, str]] = set()


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_reference(value: str | None) -> str | None:
    if value is not None and value.partition(":")[0] not in ("credential", "file", "env"):
        raise ValueError(
            "give a secret reference (credential:NAME, file:/path or env:NAME), not the secret itself"
        )
    return value


class SinkOptions(BaseModel):
    """Options of the ``imap`` sink (``[mailboxes.sink]`` with ``type = "imap"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(description="IMAP server host name, e.g. imap.fastmail.com.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Port; default 993 for tls, 143 for starttls and plain."
    )
    security: Literal["tls", "starttls", "plain"] = Field(
        "tls", description="tls (implicit, port 993), starttls, or plain (loopback servers only)."
    )
    username: str = Field(description="Login name, usually the recruiter's address.")
    password: str | None = Field(
        None, description="Secret reference to the password or app password, e.g. credential:imap."
    )
    oauth2_token: str | None = Field(
        None,
        description="Secret reference to an OAuth2 access token (XOAUTH2) instead of a password.",
    )
    drafts_folder: str = Field(
        "Drafts", description="Drafts folder name, used when the server marks none as \\Drafts."
    )
    sent_folder: str = Field(
        "Sent", description="Sent folder name, used when the server marks none as \\Sent."
    )
    obsolete_keyword: str = Field(
        "recruitmail-obsolete", description="IMAP keyword set on drafts that are no longer wanted."
    )
    ca_file: Path | None = Field(None, description="CA bundle to trust instead of the system's.")
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for the server.")

    @field_validator("password", "oauth2_token")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        return _check_reference(value)

    @field_validator("obsolete_keyword")
    @classmethod
    def _keyword(cls, value: str) -> str:
        if (
            not value
            or value.startswith("\\")
            or any(ch in _ATOM_SPECIALS or ord(ch) < 33 or ord(ch) > 126 for ch in value)
        ):
            raise ValueError("an IMAP keyword is one word of plain ASCII letters, digits, - or _")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SinkOptions:
        if self.security == "plain" and not _is_loopback(self.host):
            raise ValueError(
                f"security = 'plain' would send the password unencrypted to {self.host}; "
                "use tls or starttls (plain is only for a server on this machine)"
            )
        if (self.password is None) == (self.oauth2_token is None):
            raise ValueError("set exactly one of password or oauth2_token (secret references)")
        return self

    @property
    def effective_port(self) -> int:
        """The configured port, or the standard one for the chosen security."""
        if self.port is not None:
            return self.port
        return 993 if self.security == "tls" else 143


def open_sink(options: SinkOptions, context: ConnectorContext) -> ImapSink:
    """Build the sink; the secret is read now so that a wrong reference fails at start-up."""
    sink = ImapSink(options, context)
    sink.check_secret()
    if options.security == "plain" and (context.mailbox, options.host) not in _WARNED_PLAIN:
        # Once per process: the daemon reopens sinks on every pass.
        _WARNED_PLAIN.add((context.mailbox, options.host))
        log.warning(
            "IMAP sink for %s talks to %s without TLS: acceptable only for a server on this machine",
            context.mailbox,
            options.host,
        )
    return sink


def _ref(folder: str, uidvalidity: int, uid: int, key_id: str, fingerprint: str) -> DraftRef:
    remote = json.dumps(
        {"f": folder, "v": uidvalidity, "u": uid, "k": key_id}, separators=(",", ":")
    )
    return DraftRef(remote_id=remote, fingerprint=fingerprint)


def _parse_ref(ref: DraftRef) -> tuple[str, int, int, str]:
    try:
        data = json.loads(ref.remote_id)
        return str(data["f"]), int(data["v"]), int(data["u"]), str(data["k"])
    except (ValueError, KeyError, TypeError):
        raise PermanentError(f"not a draft reference of the imap sink: {ref.remote_id!r}") from None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key_criteria(key_id: str) -> list[Any]:
    # HEADER search is a substring match: the Message-ID "<rm-ID@domain>" contains "rm-ID".
    return ["OR", "HEADER", KEY_HEADER, key_id, "HEADER", "Message-ID", f"rm-{key_id}"]


class ImapSink:
    """Drafts in one recruiter's IMAP mailbox (``MailboxSink`` and ``KnowsLastContact``)."""

    def __init__(self, options: SinkOptions, context: ConnectorContext) -> None:
        self._options = options
        self._context = context
        self._client: IMAPClient | None = None
        self._drafts: str | None = None
        self._sent: str | None = None
        self._uidplus = False
        self._where = f"{options.username} at {options.host}:{options.effective_port}"

    # -- connection -------------------------------------------------------------------------

    def check_secret(self) -> str:
        """Read the configured password or token (``ConfigError`` if the reference is wrong)."""
        reference = self._options.oauth2_token or self._options.password or ""
        what = "imap oauth2_token" if self._options.oauth2_token else "imap password"
        return load_secret(reference, f"mailbox {self._context.mailbox}: {what}")

    def _ssl_context(self) -> ssl.SSLContext:
        # The one trust store of every connector: ca_file, else SSL_CERT_FILE /
        # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE / SSL_CERT_DIR, else the system's.
        return tls_context(self._options.ca_file)

    def _connect(self) -> IMAPClient:
        opts = self._options
        secret = self.check_secret()  # read on every login: a refreshed token file is picked up
        context = self._ssl_context() if opts.security != "plain" else None
        try:
            client = IMAPClient(
                opts.host,
                port=opts.effective_port,
                ssl=opts.security == "tls",
                ssl_context=context,
                timeout=opts.timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(
                f"IMAP server {opts.host}: its TLS certificate is not trusted ({exc.verify_message}); "
                "set ca_file to the CA that signed it"
            ) from None
        except _DROPPED as exc:
            raise TransientError(f"cannot connect to IMAP server {opts.host}: {exc}") from None
        try:
            if opts.security == "starttls":
                client.starttls(context)
            client.normalise_times = False  # keep INTERNALDATE time-zone aware
            if opts.oauth2_token:
                client.oauth2_login(opts.username, secret)
            else:
                client.login(opts.username, secret)
            self._uidplus = client.has_capability("UIDPLUS")
            self._find_folders(client)
        except LoginError as exc:
            _shutdown(client)
            text = str(exc)
            # IMAPClient wraps everything LOGIN raises, a dropped connection included: that is
            # an outage, not a wrong password.
            if _busy(text) or isinstance(exc.__context__, _DROPPED):
                raise TransientError(
                    f"IMAP login for {self._where}: server unavailable ({text[:200]})",
                    retry_after=_retry_hint(text, opts.host),
                ) from None
            raise AuthError(
                f"IMAP login for {self._where} refused ({text}); check the username and the "
                + ("OAuth2 token" if opts.oauth2_token else "password or app password")
            ) from None
        except ssl.SSLCertVerificationError as exc:
            _shutdown(client)
            raise ConfigError(
                f"IMAP server {opts.host}: its TLS certificate is not trusted ({exc.verify_message}); "
                "set ca_file to the CA that signed it"
            ) from None
        except _DROPPED as exc:
            _shutdown(client)
            raise TransientError(
                f"IMAP connection to {opts.host} lost while logging in: {exc}"
            ) from None
        except IMAPClientError as exc:
            _shutdown(client)
            raise ConfigError(f"IMAP server {opts.host} refused the session setup: {exc}") from None
        except ConfigError:
            _shutdown(client)
            raise
        log.debug("connected to IMAP %s (UIDPLUS: %s)", self._where, self._uidplus)
        return client

    def _find_folders(self, client: IMAPClient) -> None:
        folders = client.list_folders()
        by_flag: dict[bytes, str] = {}
        names = set()
        for flags, _delimiter, name in folders:
            names.add(name)
            for flag in flags:
                by_flag.setdefault(flag, name)
        drafts = by_flag.get(b"\\Drafts")
        if drafts is None and self._options.drafts_folder in names:
            drafts = self._options.drafts_folder
        if drafts is None:
            raise ConfigError(
                f"mailbox {self._context.mailbox}: the IMAP server marks no folder as \\Drafts and "
                f"has no folder named {self._options.drafts_folder!r}; set drafts_folder"
            )
        sent = by_flag.get(b"\\Sent")
        if sent is None and self._options.sent_folder in names:
            sent = self._options.sent_folder
        if sent is None:
            log.warning(
                "mailbox %s: no \\Sent folder and none named %r: sent drafts look deleted and "
                "last contact is unknown; set sent_folder",
                self._context.mailbox,
                self._options.sent_folder,
            )
        self._drafts, self._sent = drafts, sent

    def _ensure(self) -> IMAPClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _drop(self) -> None:
        if self._client is not None:
            _shutdown(self._client)
        self._client = None

    def _run(self, what: str, operation: Callable[[IMAPClient], T]) -> T:
        """Run an idempotent ``operation``, reconnecting once if the connection was dropped."""
        for attempt in (1, 2):
            client = self._ensure()
            try:
                return operation(client)
            except _DROPPED as exc:
                self._drop()
                if attempt == 2:
                    raise TransientError(
                        f"IMAP connection to {self._options.host} lost while {what}: {exc}"
                    ) from None
                log.info(
                    "IMAP connection to %s lost while %s; reconnecting", self._options.host, what
                )
            except IMAPClientError as exc:
                text = str(exc)
                if _busy(text):
                    # RFC 5530 codes for "not now": a pass later, not a permanent refusal.
                    raise TransientError(
                        f"IMAP server {self._options.host} is busy while {what} ({text[:200]})",
                        retry_after=_retry_hint(text, self._options.host),
                    ) from None
                raise PermanentError(f"IMAP server refused {what}: {text[:300]}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Log out. Safe to call more than once."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - a dead connection needs no clean goodbye
                _shutdown(client)

    # -- helpers inside one connection ------------------------------------------------------

    def _folders(self) -> tuple[str, str | None]:
        assert self._drafts is not None
        return self._drafts, self._sent

    def _search_key(
        self, client: IMAPClient, folder: str, key_id: str, *extra: Any
    ) -> tuple[int, list[int]]:
        """UIDVALIDITY of ``folder`` and the UIDs (oldest first) of live messages carrying the key."""
        status = client.select_folder(folder, readonly=True)
        uids = client.search([*_key_criteria(key_id), "NOT", "DELETED", *extra])
        return int(status[b"UIDVALIDITY"]), sorted(int(u) for u in uids)

    def _fetch_body(self, client: IMAPClient, uid: int) -> tuple[bytes, tuple[bytes, ...]] | None:
        data = client.fetch([uid], ["BODY.PEEK[]", "FLAGS"])
        item = data.get(uid)
        if item is None:
            return None
        return bytes(item[b"BODY[]"]), tuple(item[b"FLAGS"])

    # -- MailboxSink ------------------------------------------------------------------------

    def find_draft(self, key: DraftKey) -> DraftRef | None:
        """The draft carrying ``key`` in Drafts (the live one first), else its copy in Sent."""

        def find(client: IMAPClient) -> DraftRef | None:
            drafts, sent = self._folders()
            for folder in (drafts, sent):
                if folder is None:
                    continue
                validity, uids = self._search_key(client, folder, key.id)
                if not uids:
                    continue
                if folder == drafts:
                    # Prefer a draft that is not marked obsolete (the replacement of an update).
                    _, live = self._search_key(
                        client, folder, key.id, "UNKEYWORD", self._options.obsolete_keyword
                    )
                    uids = live or uids
                uid = uids[-1]
                fetched = self._fetch_body(client, uid)
                if fetched is None:
                    continue
                return _ref(folder, validity, uid, key.id, _digest(fetched[0]))
            return None

        return self._run("looking up a draft", find)

    def create_draft(self, message: DraftMessage) -> DraftRef:
        """APPEND the draft to Drafts with ``\\Draft`` and ``\\Seen``; the key travels in its headers."""
        # A Date header, as every mail client writes one into its drafts.
        data = to_bytes(message, date=datetime.now(UTC))
        fingerprint = _digest(data)
        # Make sure the connection is alive first, so that a stale one costs a reconnect and
        # not an ambiguous APPEND.
        self._run("checking the connection", lambda c: c.noop())
        client = self._ensure()
        drafts, _ = self._folders()
        self._context.may_write()  # after the reconnect, right before the APPEND
        try:
            response = client.append(drafts, data, flags=DRAFT_FLAGS)
        except _DROPPED as exc:
            self._drop()
            raise AmbiguousError(
                f"IMAP connection to {self._options.host} lost during APPEND ({exc}); the draft may "
                "have been saved: look it up before trying again"
            ) from None
        except IMAPClientError as exc:
            text = str(exc)
            if "OVERQUOTA" in text.upper():
                raise TransientError(
                    f"mailbox {self._context.mailbox} is over quota: {text}"
                ) from None
            raise PermanentError(f"IMAP server refused the draft: {text}") from None
        uid_info = _appenduid(response) if self._uidplus else None
        if uid_info is not None:
            validity, uid = uid_info
            log.info("draft appended to %s (uid %d)", drafts, uid)
            return _ref(drafts, validity, uid, message.key.id, fingerprint)
        try:
            # Without UIDPLUS the new message is the newest one carrying the key.
            validity, uids = self._run(
                "finding the appended draft",
                lambda c: self._search_key(c, drafts, message.key.id),
            )
        except TransientError as exc:
            raise AmbiguousError(
                f"the draft was saved but could not be found again ({exc}); look it up later"
            ) from None
        if not uids:
            raise AmbiguousError("the server accepted the draft but a search does not find it yet")
        log.info("draft appended to %s (uid %d, found by search)", drafts, uids[-1])
        return _ref(drafts, validity, uids[-1], message.key.id, fingerprint)

    def draft_state(self, ref: DraftRef) -> DraftState:
        """PENDING if the same message is still there unchanged, EDITED if changed or re-saved by a
        client, SENT if it (or a message carrying its key) is in Sent, else DELETED."""
        folder, validity, uid, key_id = _parse_ref(ref)

        def state(client: IMAPClient) -> DraftState:
            drafts, sent = self._folders()
            status = client.select_folder(folder, readonly=True)
            if int(status[b"UIDVALIDITY"]) == validity:
                fetched = self._fetch_body(client, uid)
                if fetched is not None and b"\\Deleted" not in fetched[1]:
                    if folder == sent:
                        return DraftState.SENT
                    if not ref.fingerprint or _digest(fetched[0]) == ref.fingerprint:
                        return DraftState.PENDING
                    return DraftState.EDITED
            if sent is not None and self._search_key(client, sent, key_id)[1]:
                return DraftState.SENT
            others = self._search_key(
                client, drafts, key_id, "UNKEYWORD", self._options.obsolete_keyword
            )[1]
            if [u for u in others if not (folder == drafts and u == uid)]:
                # A client saved the edited draft as a new message (IMAP cannot change one).
                return DraftState.EDITED
            return DraftState.DELETED

        return self._run("reading a draft's state", state)

    def update_draft(self, ref: DraftRef, message: DraftMessage) -> DraftRef:
        """Replace a PENDING draft: append the new one, then tag the old one obsolete.

        IMAP cannot change a stored message and recruitmail never deletes one, so the old draft
        stays in the folder carrying the obsolete keyword. An edited, sent or deleted draft is
        left alone (``PermanentError``).
        """
        current = self.draft_state(ref)
        if current is not DraftState.PENDING:
            raise PermanentError(f"the draft is {current.value}; recruitmail does not replace it")
        replacement = self.create_draft(message)
        self.mark_obsolete(ref)
        return replacement

    def mark_obsolete(self, ref: DraftRef) -> None:
        """Set the obsolete keyword on the draft (or on what a client re-saved in its place)."""
        folder, validity, uid, key_id = _parse_ref(ref)
        keyword = self._options.obsolete_keyword.encode("ascii")

        def mark(client: IMAPClient) -> None:
            drafts, _ = self._folders()
            status = client.select_folder(folder)
            targets: list[int] = []
            if (
                int(status[b"UIDVALIDITY"]) == validity
                and self._fetch_body(client, uid) is not None
            ):
                targets = [uid]
            elif folder == drafts:
                targets = client.search([*_key_criteria(key_id), "NOT", "DELETED"])
            if targets:
                self._context.may_write()  # on every attempt: a reconnect may have taken long
                client.add_flags(targets, [keyword])
                log.info("marked %d draft(s) in %s obsolete", len(targets), folder)
            else:
                log.info("draft to mark obsolete is no longer in %s", folder)

        self._run("marking a draft obsolete", mark)

    # -- KnowsLastContact -------------------------------------------------------------------

    def _sent_to(
        self, client: IMAPClient, wanted: str, since: datetime
    ) -> list[tuple[datetime, int]]:
        """(Date, UID) of each mail in Sent addressed (To or Cc) to ``wanted`` at or after
        ``since``; empty without a Sent folder. Leaves Sent selected."""
        _, sent = self._folders()
        if sent is None:
            return []
        client.select_folder(sent, readonly=True)
        # Search by the local part only: servers disagree on how they match a domain written
        # as IDNA or with a final dot (Dovecot finds neither spelling), and the recipients are
        # compared exactly below.
        term = wanted.rpartition("@")[0] or wanted
        charset = None if term.isascii() else "UTF-8"
        # SENTSINCE compares the Date: header's day (SINCE would compare the day the server
        # stored the mail, which an APPEND by another client may not set); a day earlier
        # covers the header's own time zone. TO is a substring match: both refined below.
        uids = client.search(
            ["OR", "TO", term, "CC", term, "SENTSINCE", (since - timedelta(days=1)).date()],
            charset=charset,
        )
        if not uids:
            return []
        fetched = client.fetch(uids, ["INTERNALDATE", "BODY.PEEK[HEADER.FIELDS (TO CC DATE)]"])
        found = []
        for uid, item in fetched.items():
            when = _when(item)
            if when is not None and when >= since and wanted in _recipients(item):
                found.append((when, int(uid)))
        return found

    def last_contact(self, address: str, since: datetime) -> datetime | None:
        """Newest mail in Sent addressed (To or Cc) to ``address`` at or after ``since``."""
        wanted = address_key(address)
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)

        def newest(client: IMAPClient) -> datetime | None:
            return max((when for when, _ in self._sent_to(client, wanted, since)), default=None)

        result = self._run("reading sent mail", newest)
        log.debug("last contact with %s since %s: %s", wanted, since, result)
        return result

    # -- KnowsCorrespondence ----------------------------------------------------------------

    def last_sent_text(self, address: str, since: datetime) -> str | None:
        """The opening of the newest mail in Sent to ``address`` (To or Cc) after ``since``:
        ``own_words`` of its text, read from at most ``MAX_SENT_BYTES`` of the message."""
        wanted = address_key(address)
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)

        def newest_text(client: IMAPClient) -> str | None:
            after = [
                (when, uid) for when, uid in self._sent_to(client, wanted, since) if when > since
            ]
            if not after:
                return None
            uid = max(after)[1]
            part = f"BODY.PEEK[]<0.{MAX_SENT_BYTES}>"
            body = client.fetch([uid], [part]).get(uid) or {}
            data = next((v for k, v in body.items() if k.startswith(b"BODY[]")), b"")
            return own_words(message_text(bytes(data))) if isinstance(data, bytes) else ""

        return self._run("reading sent mail", newest_text)


def _recipients(item: dict[bytes, Any]) -> set[str]:
    headers = _header_block(item)
    values = headers.get_all("To", []) + headers.get_all("Cc", [])
    return {address_key(addr) for _, addr in getaddresses(values) if addr}


def _header_block(item: dict[bytes, Any]) -> Any:
    raw = b""
    for name, value in item.items():
        if name.startswith(b"BODY[HEADER.FIELDS") and isinstance(value, bytes):
            raw = value
    return BytesHeaderParser().parsebytes(raw)


def _when(item: dict[bytes, Any]) -> datetime | None:
    date_header = _header_block(item).get("Date")
    if date_header:
        try:
            parsed = parsedate_to_datetime(str(date_header))
            if parsed.tzinfo is not None:
                return parsed
        except (TypeError, ValueError):
            pass
    internal = item.get(b"INTERNALDATE")
    if isinstance(internal, datetime):
        return internal if internal.tzinfo else internal.replace(tzinfo=UTC)
    return None


_BUSY_CODES = ("[UNAVAILABLE]", "[LIMIT]", "[INUSE]", "[THROTTLED]", "[OVERQUOTA]")
_SECONDS = re.compile(r"(\d{1,20})\s*(?:s\b|sec\b|secs\b|seconds?\b)", re.IGNORECASE)


def _busy(text: str) -> bool:
    upper = text.upper()
    return any(code in upper for code in _BUSY_CODES)


def _retry_hint(text: str, host: str) -> float | None:
    """Seconds to wait when the server's text names them ("try again in 30 seconds"), capped
    at an hour (and logged when it asked for more); IMAP has no Retry-After of its own."""
    match = _SECONDS.search(text)
    if match is None:
        return None
    asked = float(match.group(1))
    capped = limits.capped_retry_after(asked)
    if capped < asked:
        log.warning(
            "IMAP server %s asked to wait %.0f seconds; waiting %.0f at most", host, asked, capped
        )
    return capped


def _appenduid(response: Any) -> tuple[int, int] | None:
    """``(uidvalidity, uid)`` from an ``[APPENDUID v uid]`` response code (RFC 4315)."""
    text = response.decode("ascii", "replace") if isinstance(response, bytes) else str(response)
    marker = "[APPENDUID "
    start = text.upper().find(marker)
    if start < 0:
        return None
    parts = text[start + len(marker) :].split("]", 1)[0].split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None  # a set of UIDs (MULTIAPPEND) or garbage: search instead
    return int(parts[0]), int(parts[1])


def _shutdown(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:  # noqa: BLE001 - closing a broken socket may fail in many ways
        log.debug("closing the IMAP socket failed", exc_info=True)
