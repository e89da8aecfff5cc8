"""The Gmail draft sink: drafts written with ``drafts.create`` (raw JSON, never an upload), joined
to our earlier mail's thread when Gmail would, labelled when obsolete; the vacation responder.

What became of a draft once written (pending, edited, sent, deleted) is read by ``state``. Every
write (``drafts.create``/``update``, ``messages.modify``, ``labels.create``) asks the context's
``may_write`` before each attempt (``_Caller.call``).
"""

from __future__ import annotations

import base64
import binascii
import html
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import getaddresses
from typing import Any

from googleapiclient.http import HttpRequest

from recruitmail.connectors.google.auth import _grant
from recruitmail.connectors.google.client import Sleeper, _build, _Caller, _close, _endpoint
from recruitmail.connectors.google.headers import (
    CREATED_HEADER,
    DIGEST_HEADER,
    _b64,
    _header,
    _recipient_digest,
    _Ref,
    content_digest,
)
from recruitmail.connectors.google.options import (
    DEFAULT_GMAIL_ENDPOINT,
    GMAIL_MODIFY,
    SinkOptions,
    gmail_scopes,
)
from recruitmail.connectors.google.state import GmailState
from recruitmail.contracts.connector import ConnectorContext, own_words
from recruitmail.contracts.errors import PermanentError
from recruitmail.contracts.limits import MAX_BODY_CHARS
from recruitmail.contracts.mime import to_bytes
from recruitmail.contracts.models import (
    DraftKey,
    DraftMessage,
    DraftRef,
    DraftState,
    Period,
    normalise_address,
)

log = logging.getLogger(__name__)


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
        self._state = GmailState(self._caller, self._service, self._scopes, context, clock)

    @property
    def requests(self) -> int:
        """API requests made so far."""
        return self._caller.requests

    @property
    def _users(self) -> Any:
        return self._service.users()

    def find_draft(self, key: DraftKey) -> DraftRef | None:
        """The draft whose Message-ID is the key's; once sent, its Sent copy (needs read_sent)."""
        return self._state.find_draft(key)

    def draft_state(self, ref: DraftRef) -> DraftState:
        """Pending or edited while it is a draft; sent or deleted once it left the drafts
        (``GmailState.draft_state`` says how each is told)."""
        return self._state.draft_state(ref)

    # -- writing --------------------------------------------------------------------------------

    def _earlier(self, message_id: str) -> tuple[str, str] | None:
        """(thread id, subject) of our earlier mail ``message_id``: a draft, else a Sent mail."""
        earlier = self._state.draft_by_message_id(message_id)
        if earlier is not None:
            got = self._state.get_draft(str(earlier["id"]), "metadata")
            if got is not None:
                return str(earlier["message"]["threadId"]), _header(got["message"], "subject")
        return self._state.sent_message(message_id)

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
            found = self._state.draft_by_message_id(message.message_id)
            if found is not None:
                log.info("google drafts.create: found draft %s after a server error", found["id"])
            return found

        created_draft = self._caller.call(
            lambda: self._users.drafts().create(userId="me", body=body),
            "drafts.create",
            on_server_error=already_there,
            may_write=self._context.may_write,
        )
        log.info("google: created draft %s (%s)", created_draft.get("id"), message.key.kind.value)
        ref = _Ref.of(
            created_draft,
            message.key.id,
            int(created.timestamp() * 1000),
            _recipient_digest(message.to[0].address) if message.to else "",
        )
        return DraftRef(ref.text(), digest)

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
            may_write=self._context.may_write,
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
        full = self._state.get_draft(draft_id, "minimal") if draft_id else None
        if full is None:
            return  # sent or deleted meanwhile: nothing left to mark
        label = self._obsolete_label_id()
        message_id = str(full["message"]["id"])
        self._caller.call(
            lambda: self._users.messages().modify(
                userId="me", id=message_id, body={"addLabelIds": [label]}
            ),
            "messages.modify",
            may_write=self._context.may_write,
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
                may_write=self._context.may_write,
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
        return self._state.last_contact(address, since)

    def last_sent_text(self, address: str, since: datetime) -> str | None:
        """The opening of the newest Sent mail to ``address`` after ``since`` (``own_words`` of
        its text part, else of Gmail's snippet). Reading a body needs gmail.modify
        (``label_obsolete``): under gmail.metadata Gmail refuses both the search and the body,
        so without it nothing is read and ``None`` comes back."""
        if GMAIL_MODIFY not in self._scopes:
            return None
        wanted = normalise_address(address)
        # Gmail's search takes the address as one word; quotes and spaces cannot be part of it.
        term = "".join(ch for ch in wanted if ch not in '"() \\')
        query = f"to:{term} in:sent after:{int(since.timestamp())}"
        listing = self._caller.call(
            lambda: self._users.messages().list(userId="me", q=query, maxResults=SENT_LOOK),
            "messages.list",
        )
        for found in (listing.get("messages") or [])[:SENT_LOOK]:

            def request(message_id: str = str(found.get("id", ""))) -> HttpRequest:
                return self._users.messages().get(userId="me", id=message_id, format="full")

            got = self._caller.call(request, "messages.get")
            payload = got.get("payload") or {}
            headers = [
                str(h.get("value", ""))
                for h in payload.get("headers") or []
                if str(h.get("name", "")).lower() in ("to", "cc")
            ]
            # Gmail's search matches words: confirm the address is a recipient.
            if wanted not in {normalise_address(a) for _, a in getaddresses(headers) if a}:
                continue
            text = _plain_text(payload) or html.unescape(str(got.get("snippet") or ""))
            return own_words(text)
        return None

    def close(self) -> None:
        """Release the HTTP connections."""
        _close(self._service)


SENT_LOOK = 5
"""Sent mails (newest first) read to find one really addressed to the candidate."""


def _plain_text(part: dict[str, Any], depth: int = 0) -> str:
    """The first text/plain body in a ``format=full`` payload (depth-first, bounded)."""
    if depth > 10:
        return ""
    if str(part.get("mimeType", "")).lower() == "text/plain":
        data = str((part.get("body") or {}).get("data") or "")[: 4 * MAX_BODY_CHARS]
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except (ValueError, binascii.Error):
            return ""
        return raw.decode("utf-8", "replace")[:MAX_BODY_CHARS]
    for child in part.get("parts") or []:
        found = _plain_text(child, depth + 1)
        if found:
            return found
    return ""


_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|sv|aw|fwd?|vs|vb)\s*:\s*)+", re.IGNORECASE)


def _base_subject(subject: str) -> str:
    """A subject as Gmail compares them for threading: reply prefixes and spacing ignored."""
    return " ".join(_REPLY_PREFIX.sub("", subject).split()).casefold()
