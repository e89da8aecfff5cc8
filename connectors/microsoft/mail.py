"""The Microsoft 365 draft sink: Outlook drafts over Graph, found again by a key property.

Every draft carries the ``DraftKey`` digest as a single-value extended property, so that
``find_draft`` finds it in any folder even when our ledger never heard the 201. Ids are immutable
(``Prefer: IdType="ImmutableId"`` on every call), so a sent draft still answers, as ``isDraft: false``.

A ``DraftRef``'s fingerprint is a digest of what the recruiter can change (subject, body,
recipients) as Graph stored it. Not the ``changeKey``: that also moves when we add our obsolete
category or Outlook merely opens the draft, which would mistake our own hand for the recruiter's.

What survives the recruiter's hand: the immutable id does (Graph documents that it stays while
the item stays in the mailbox, Sent Items included), so ``draft_state`` decides by id alone. The
key property, our ``X-`` header and our Message-ID are not promised to survive an edit in Outlook
on the web or desktop; they are used only to find a draft whose create answer was lost.

Every write (the create's POST, the PATCHes of an update or an obsolete mark) hands the context's
``may_write`` to ``GraphClient.request``, which asks it right before each attempt leaves: a create
throttled while this instance's lease ran out is not sent again from here.

The recruiter's last contact with a candidate is read with ``$search`` over Sent Items
(``recipients:`` covers To, Cc and Bcc) and matched here: Exchange refuses the lambda filter
``toRecipients/any(…)`` that the filter documentation suggests (400 ErrorInvalidUrlQueryFilter).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from recruitmail.connectors.microsoft.calendar import parse_date_time_zone, parse_instant
from recruitmail.connectors.microsoft.client import GraphClient, json_of, release
from recruitmail.connectors.microsoft.options import GRAPH_KEY_PROPERTY_GUID, SinkOptions
from recruitmail.connectors.microsoft.zones import to_iana
from recruitmail.contracts.connector import KEY_HEADER, ConnectorContext, own_words
from recruitmail.contracts.errors import PermanentError
from recruitmail.contracts.mime import check_address, clean_header
from recruitmail.contracts.models import (
    DraftKey,
    DraftMessage,
    DraftRef,
    DraftState,
    Period,
    PersonInfo,
    Recipient,
    normalise_address,
)

log = logging.getLogger(__name__)

KEY_PROPERTY = f"String {{{GRAPH_KEY_PROPERTY_GUID}}} Name RecruitmailKey"
"""The extended property that carries ``DraftKey.id`` on every draft we create."""

_FIELDS = (
    "id,isDraft,parentFolderId,subject,body,toRecipients,ccRecipients,createdDateTime,categories"
)
_CONTACT_FIELDS = "sentDateTime,toRecipients,ccRecipients,bccRecipients"
CONTACT_PAGE = 25
CONTACT_PAGES = 4  # $search returns the newest first: a few pages reach far back enough
EDITED = "edited by the recruiter; left as it is"


def _recipients(items: list[Any] | None) -> list[str]:
    return sorted(
        normalise_address(str((r.get("emailAddress") or {}).get("address") or ""))
        for r in items or []
    )


def fingerprint(message: dict[str, Any]) -> str:
    """A digest of what the recruiter can edit in a draft, as Graph stored it."""
    material = [
        message.get("subject") or "",
        (message.get("body") or {}).get("content") or "",
        _recipients(message.get("toRecipients")),
        _recipients(message.get("ccRecipients")),
    ]
    digest = hashlib.sha256(json.dumps(material, ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"sha256:{digest[:40]}"


def _literal(value: str) -> str:
    """A string literal for an OData ``$filter``."""
    return "'" + value.replace("'", "''") + "'"


def key_filter(key: DraftKey) -> str:
    """The documented filter that finds a message by our key property (testing id and value)."""
    return (
        f"singleValueExtendedProperties/Any(ep: ep/id eq {_literal(KEY_PROPERTY)} "
        f"and ep/value eq {_literal(key.id)})"
    )


def _recipient(recipient: Recipient) -> dict[str, Any]:
    address: dict[str, str] = {"address": check_address(recipient.address)}
    if recipient.name:
        address["name"] = clean_header(recipient.name, 120)
    return {"emailAddress": address}


class GraphSink:
    """Drafts in one recruiter's Outlook mailbox, plus what the mailbox knows about them."""

    def __init__(
        self, client: GraphClient, options: SinkOptions, context: ConnectorContext
    ) -> None:
        self.client = client
        self.options = options
        self.user = (options.user or context.mailbox).strip()
        self.country = context.country
        self.may_write = context.may_write
        self.clock: Callable[[], float] = time.monotonic
        self._base = f"/users/{quote(self.user, safe='@')}"
        self._folders: dict[str, str] = {}
        self._settings: tuple[float, dict[str, Any]] | None = None
        self._people: dict[str, PersonInfo | None] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _get(self, path: str, permission: str, params: dict[str, str] | None = None) -> Any:
        return self.client.request(
            "GET",
            self._base + path,
            mailbox=self.user,
            permission=permission,
            params=params,
            expect=frozenset({404}),
        )

    def _content(self, message: DraftMessage) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "subject": clean_header(message.subject),
            "body": {"contentType": "HTML", "content": message.html},
            "toRecipients": [_recipient(r) for r in message.to],
        }
        payload["ccRecipients"] = [_recipient(r) for r in message.cc]
        return payload

    def create_draft(self, message: DraftMessage) -> DraftRef:
        """POST the draft with its key; a lost answer raises ``AmbiguousError`` (look up first)."""
        payload = self._content(message)
        categories = [self.options.category, *(clean_header(c, 60) for c in message.categories)]
        payload["categories"] = list(dict.fromkeys(c for c in categories if c))
        payload["singleValueExtendedProperties"] = [{"id": KEY_PROPERTY, "value": message.key.id}]
        payload["internetMessageHeaders"] = [{"name": KEY_HEADER, "value": message.key.id}]
        # Settable while a message is a draft: the same Message-ID every other sink gives this key.
        payload["internetMessageId"] = message.message_id
        response = self.client.request(
            "POST",
            self._base + "/messages",
            mailbox=self.user,
            permission="Mail.ReadWrite",
            json_body=payload,
            may_write=self.may_write,
        )
        created = json_of(response, "the new draft")
        log.info("drafted message %s in %s", message.key.kind.value, self.user)
        return DraftRef(str(created["id"]), fingerprint(created))

    def find_draft(self, key: DraftKey) -> DraftRef | None:
        """The message carrying ``key`` in any folder (the oldest, should there be several)."""
        params = {"$filter": key_filter(key), "$select": _FIELDS, "$top": "10"}
        response = self._get("/messages", "Mail.ReadWrite", params)
        if response.status_code == 404:
            return None
        found = json_of(response, "a draft search").get("value") or []
        if not found:
            return None
        oldest = min(found, key=lambda m: str(m.get("createdDateTime") or ""))
        return DraftRef(str(oldest["id"]), fingerprint(oldest))

    def _folder(self, well_known: str) -> str:
        with self._lock:
            known = self._folders.get(well_known)
        if known is None:
            response = self._get(f"/mailFolders/{well_known}", "Mail.ReadWrite", {"$select": "id"})
            known = "" if response.status_code == 404 else str(json_of(response, "a folder")["id"])
            with self._lock:
                self._folders[well_known] = known
        return known

    def _read(self, ref: DraftRef) -> dict[str, Any] | None:
        response = self._get(
            f"/messages/{quote(ref.remote_id, safe='')}", "Mail.ReadWrite", {"$select": _FIELDS}
        )
        if response.status_code == 404:
            return None
        return json_of(response, "a draft")

    def draft_state(self, ref: DraftRef) -> DraftState:
        """Pending, edited by the recruiter, sent, or deleted (gone or in Deleted Items)."""
        message = self._read(ref)
        return self._state_of(message, ref)

    def _state_of(self, message: dict[str, Any] | None, ref: DraftRef) -> DraftState:
        if message is None:
            return DraftState.DELETED
        if message.get("isDraft") is False:
            return DraftState.SENT
        parent = str(message.get("parentFolderId") or "")
        if parent and parent == self._folder("deleteditems"):
            return DraftState.DELETED
        if ref.fingerprint and fingerprint(message) != ref.fingerprint:
            return DraftState.EDITED
        return DraftState.PENDING

    def update_draft(self, ref: DraftRef, message: DraftMessage) -> DraftRef:
        """Rewrite a draft that is still as we wrote it; anything else raises ``PermanentError``."""
        state = self.draft_state(ref)
        if state is not DraftState.PENDING:
            raise PermanentError(f"the draft is {state.value}; recruitmail leaves it alone")
        response = self.client.request(
            "PATCH",
            self._base + f"/messages/{quote(ref.remote_id, safe='')}",
            mailbox=self.user,
            permission="Mail.ReadWrite",
            json_body=self._content(message),
            may_write=self.may_write,
        )
        return DraftRef(ref.remote_id, fingerprint(json_of(response, "the updated draft")))

    def mark_obsolete(self, ref: DraftRef) -> None:
        """Add the obsolete category to a draft still as we wrote it; sent, deleted or gone ones
        stay as they are, and an edited one raises ``PermanentError`` (the recruiter's hand wins)."""
        message = self._read(ref)
        if message is None or self._state_of(message, ref) in (DraftState.SENT, DraftState.DELETED):
            return
        if ref.fingerprint and fingerprint(message) != ref.fingerprint:
            raise PermanentError(EDITED)
        categories = [str(c) for c in message.get("categories") or []]
        if self.options.obsolete_category in categories:
            return
        self.client.request(
            "PATCH",
            self._base + f"/messages/{quote(ref.remote_id, safe='')}",
            mailbox=self.user,
            permission="Mail.ReadWrite",
            json_body={"categories": [*categories, self.options.obsolete_category]},
            may_write=self.may_write,
        )

    def last_contact(self, address: str, since: datetime) -> datetime | None:
        """The newest mail in Sent Items to ``address`` (To, Cc or Bcc) sent after ``since``."""
        newest = self._newest_sent(address, since, _CONTACT_FIELDS)
        return newest[0] if newest is not None else None

    def last_sent_text(self, address: str, since: datetime) -> str | None:
        """The opening of the newest mail in Sent Items to ``address`` after ``since``: its
        ``bodyPreview`` (Graph's first 255 characters of the body as text), as ``own_words``.
        The same ``$search`` as ``last_contact``: one request for most candidates."""
        newest = self._newest_sent(address, since, _CONTACT_FIELDS + ",bodyPreview")
        if newest is None:
            return None
        return own_words(str(newest[1].get("bodyPreview") or ""))

    def _newest_sent(
        self, address: str, since: datetime, fields: str
    ) -> tuple[datetime, dict[str, Any]] | None:
        """The newest mail in Sent Items to ``address`` (To, Cc or Bcc) sent after ``since``,
        with its ``fields``."""
        wanted = normalise_address(address)
        # KQL: the address as one quoted term; quotes and backslashes cannot be part of it.
        term = wanted.replace('"', "").replace("\\", "")
        params: dict[str, str] | None = {
            "$search": f'"recipients:{term}"',
            "$select": fields,
            "$top": str(CONTACT_PAGE),
        }
        link = self._base + "/mailFolders/sentitems/messages"
        newest: tuple[datetime, dict[str, Any]] | None = None
        for _ in range(CONTACT_PAGES):
            response = self.client.request(
                "GET",
                link,
                mailbox=self.user,
                permission="Mail.ReadWrite",
                params=params,
                expect=frozenset({404}),
            )
            if response.status_code == 404:
                return None
            page = json_of(response, "a sent-items search")
            oldest: datetime | None = None
            for message in page.get("value") or []:
                try:
                    sent = parse_instant(str(message["sentDateTime"]))
                except (KeyError, TypeError, ValueError):
                    continue
                oldest = sent if oldest is None else min(oldest, sent)
                addressed = {
                    *_recipients(message.get("toRecipients")),
                    *_recipients(message.get("ccRecipients")),
                    *_recipients(message.get("bccRecipients")),
                }
                # $search matches words, not addresses: confirm the address here.
                if sent > since and wanted in addressed and (newest is None or sent > newest[0]):
                    newest = (sent, message)
            following = page.get("@odata.nextLink")
            if newest is not None or not following or (oldest is not None and oldest <= since):
                break
            link, params = str(following), None
        return newest

    def _mailbox_settings(self) -> dict[str, Any]:
        now = self.clock()
        cached = self._settings
        if cached is not None and now - cached[0] < self.options.settings_ttl_seconds:
            return cached[1]
        response = self._get("/mailboxSettings", "MailboxSettings.Read")
        settings = {} if response.status_code == 404 else json_of(response, "mailbox settings")
        self._settings = (now, settings)
        return settings

    def time_zone(self) -> str | None:
        """The mailbox's own time zone as an IANA name."""
        return to_iana(str(self._mailbox_settings().get("timeZone") or ""), self.country)

    def out_of_office(self) -> list[Period]:
        """The scheduled automatic replies, as a period (an open-ended one has no known end)."""
        replies = self._mailbox_settings().get("automaticRepliesSetting") or {}
        if str(replies.get("status") or "").lower() != "scheduled":
            return []
        try:
            start = parse_date_time_zone(replies["scheduledStartDateTime"], self.country)
            end = parse_date_time_zone(replies["scheduledEndDateTime"], self.country)
        except (KeyError, TypeError, ValueError, PermanentError) as exc:
            log.warning("mailbox %s: unreadable automatic-replies schedule (%s)", self.user, exc)
            return []
        return [Period(start, end)] if end > start else []

    def lookup_person(self, address: str) -> PersonInfo | None:
        """A colleague's name and job title from the directory (when ``directory_titles`` is on)."""
        if not self.options.directory_titles:
            return None
        wanted = normalise_address(address)
        if wanted in self._people:
            return self._people[wanted]
        response = self.client.request(
            "GET",
            f"/users/{quote(wanted, safe='@')}",
            mailbox=self.user,
            permission="User.Read.All",
            params={"$select": "displayName,jobTitle"},
            expect=frozenset({404}),
        )
        person = None
        if response.status_code != 404:
            data = json_of(response, "a directory entry")
            person = PersonInfo(
                wanted, str(data.get("displayName") or ""), str(data.get("jobTitle") or "")
            )
        self._people[wanted] = person
        return person

    def close(self) -> None:
        """Let go of the shared client. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            release(self.client)
