"""Where our drafts stand in Gmail: pending or edited while in Drafts, sent or deleted once they
left, and when the recruiter last wrote to a candidate.

What Gmail lets us read depends on the scopes: ``gmail.compose`` reads drafts only; with
``gmail.metadata`` (or ``gmail.modify``) the headers of Sent mail are read too (``_SentScan``),
which is how a sent draft is told from a deleted one and how the last contact is found.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any, cast

from googleapiclient.http import HttpRequest

from recruitmail.connectors.google.client import NotFound, _Caller
from recruitmail.connectors.google.headers import (
    _bare,
    _header,
    _message_id_of,
    _recipient_digest,
    _recipient_digest_of,
    _Ref,
    _unb64,
    _written_created,
    _written_digest,
    content_digest,
)
from recruitmail.connectors.google.options import GMAIL_METADATA, GMAIL_MODIFY
from recruitmail.contracts.connector import KEY_HEADER, ConnectorContext
from recruitmail.contracts.errors import PermanentError
from recruitmail.contracts.models import DraftKey, DraftRef, DraftState, normalise_address

log = logging.getLogger(__name__)

SENT_LABEL = "SENT"
MAX_DRAFT_PAGES = 20  # drafts.list pages (100 each) searched for a draft saved under a new id


class GmailState:
    """Reads what became of the drafts of one mailbox; ``GmailSink`` asks it and writes."""

    def __init__(
        self,
        caller: _Caller,
        service: Any,
        scopes: list[str],
        context: ConnectorContext,
        clock: Callable[[], datetime],
    ) -> None:
        self._caller = caller
        self._service = service
        self._scopes = scopes
        self._context = context
        self._clock = clock
        self._lock = threading.Lock()
        self._sent_scan: _SentScan | None = None

    @property
    def _users(self) -> Any:
        return self._service.users()

    def _can_read_sent(self) -> bool:
        return GMAIL_METADATA in self._scopes or GMAIL_MODIFY in self._scopes

    # -- lookups --------------------------------------------------------------------------------

    def draft_by_message_id(self, message_id: str) -> dict[str, Any] | None:
        listing = self._caller.call(
            lambda: self._users.drafts().list(
                userId="me", q=f"rfc822msgid:{_bare(message_id)}", maxResults=10
            ),
            "drafts.list",
        )
        drafts = listing.get("drafts") or []
        return cast(dict[str, Any], drafts[0]) if drafts else None

    def get_draft(self, draft_id: str, fmt: str) -> dict[str, Any] | None:
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
        found = self.draft_by_message_id(key.message_id())
        full = self.get_draft(str(found["id"]), "raw") if found is not None else None
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
        earlier = self.sent_message(message_id)
        return earlier[0] if earlier is not None else None

    def sent_message(self, message_id: str) -> tuple[str, str] | None:
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
        full = self.get_draft(mine.draft_id, "raw") if mine.draft_id else None
        if full is None and mine.draft_id and mine.key_id:
            # The editor may have saved it under a new draft id: look for our Message-ID.
            found = self.draft_by_message_id(_message_id_of(mine.key_id, self._context.mailbox))
            if found is not None and str(found.get("id")) != mine.draft_id:
                full = self.get_draft(str(found["id"]), "raw")
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
                got = self.get_draft(str(draft.get("id", "")), "metadata")
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
