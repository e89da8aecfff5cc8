"""The contract every ``MailboxSink`` keeps, as a test class each connector's tests inherit.

A test module provides one fixture, ``mailbox_backend`` (function scope: a fresh, empty mailbox
per test, for the recruiter ``MAILBOX``), returning an object with:

- ``sink() -> MailboxSink`` — a sink writing into that mailbox; each call may return a new
  instance (a restarted daemon), and all of them see the same mailbox;
- ``drafts() -> list[email.message.Message]`` — the drafts now in the Drafts folder, read
  independently of the sink (files, IMAP, the fake server's store), parsed with
  ``email.message_from_bytes(raw, policy=email.policy.default)``;
- ``edit(ref: DraftRef) -> None`` — change the draft's text as the recruiter's mail client would;
- ``send(ref: DraftRef) -> None`` — send it as a client would: it leaves Drafts, a copy with the
  same Message-ID lands in Sent;
- ``delete(ref: DraftRef) -> None`` — delete the draft as a client would;
- ``add_sent(to: str, when: datetime) -> None`` — put a mail the recruiter sent to ``to`` at
  ``when`` into Sent (used only when the sink has ``KnowsLastContact``);
- ``marked_obsolete(ref: DraftRef) -> bool`` — whether the draft carries the obsolete marker the
  client shows (keyword, category or label), read independently of the sink.

Then ``class TestMySink(MailboxSinkContract): ...``. A backend that cannot do something the suite
checks (e.g. Gmail under ``gmail.compose`` cannot see Sent) overrides that test with a
``pytest.skip`` saying why.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import pytest

from recruitmail.contracts.connector import KEY_HEADER, KnowsLastContact
from recruitmail.contracts.errors import PermanentError
from recruitmail.contracts.models import DraftKey, DraftMessage, DraftState, MailKind, Recipient

MAILBOX = "rekryterare@example.se"
CANDIDATE = "anna.svensson@candidate.example"

HOSTILE_TEXTS = (
    "Eve\r\nBcc: x@evil.example",
    "=?UTF-8?Q?=0A?=Bcc: x@evil.example",
    "Eve\nBcc: x@evil.example\n",
    "Eve\u2028Bcc: x@evil.example",
)


def draft_message(
    occasion: str = "interview-1@example.se",
    *,
    subject: str = "Välkommen till intervjun, Anna!",
    to_name: str = "Anna Svensson",
    to_address: str = CANDIDATE,
    text: str = "Hej Anna!\n\nVälkommen på intervju torsdag 12 mars kl. 14:00.\n",
    kind: MailKind = MailKind.WELCOME,
) -> DraftMessage:
    """A rendered welcome mail from the recruiter to the candidate."""
    key = DraftKey(mailbox=MAILBOX, candidate=CANDIDATE, kind=kind, occasion=occasion)
    return DraftMessage(
        key=key,
        sender=Recipient(MAILBOX, "Rut Rekryterare"),
        to=(Recipient(to_address, to_name),),
        subject=subject,
        text=text,
        html=f"<p>{text.strip()}</p>",
    )


def parts(mail: Message) -> dict[str, str]:
    """Content type → decoded text of each leaf part."""
    out: dict[str, str] = {}
    for part in mail.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out[part.get_content_type()] = payload.decode(part.get_content_charset() or "utf-8")
    return out


def with_key(mails: list[Message], key: DraftKey) -> list[Message]:
    return [
        m for m in mails if m.get(KEY_HEADER) == key.id or m.get("Message-ID") == key.message_id()
    ]


class MailboxSinkContract:
    """Behaviour every draft sink shows, whatever the provider."""

    def test_created_draft_is_found_by_its_key(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        message = draft_message()
        ref = sink.create_draft(message)
        found = sink.find_draft(message.key)
        assert found is not None
        assert found.remote_id == ref.remote_id

    def test_a_restarted_sink_finds_the_draft(self, mailbox_backend: Any) -> None:
        """The crash case: the draft landed, the ledger never heard of it."""
        message = draft_message()
        ref = mailbox_backend.sink().create_draft(message)
        found = mailbox_backend.sink().find_draft(message.key)
        assert found is not None and found.remote_id == ref.remote_id

    def test_unknown_key_is_not_found(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        sink.create_draft(draft_message("interview-1@example.se"))
        assert sink.find_draft(draft_message("someone-else@example.se").key) is None

    def test_created_draft_is_a_proper_mail(self, mailbox_backend: Any) -> None:
        message = draft_message()
        mailbox_backend.sink().create_draft(message)
        [mail] = mailbox_backend.drafts()

        assert mail.get_content_type() == "multipart/alternative"
        texts = parts(mail)
        assert "Välkommen på intervju torsdag 12 mars kl. 14:00." in texts["text/plain"]
        assert "<p>Hej Anna!" in texts["text/html"]
        assert CANDIDATE in str(mail["To"]).lower()
        assert "Anna Svensson" in str(mail["To"])
        assert MAILBOX in str(mail["From"]).lower()
        assert str(mail["Subject"]) == "Välkommen till intervjun, Anna!"
        assert mail["Message-ID"] == message.key.message_id()
        assert mail[KEY_HEADER] == message.key.id

    def test_two_keys_make_two_drafts(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        first, second = draft_message("a@example.se"), draft_message("b@example.se")
        ref_a, ref_b = sink.create_draft(first), sink.create_draft(second)
        assert ref_a.remote_id != ref_b.remote_id
        assert len(mailbox_backend.drafts()) == 2
        found = sink.find_draft(second.key)
        assert found is not None and found.remote_id == ref_b.remote_id

    def test_new_draft_is_pending(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        ref = sink.create_draft(draft_message())
        assert sink.draft_state(ref) is DraftState.PENDING

    def test_edited_draft_is_edited(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        ref = sink.create_draft(draft_message())
        mailbox_backend.edit(ref)
        assert sink.draft_state(ref) is DraftState.EDITED

    def test_sent_draft_is_sent(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        ref = sink.create_draft(draft_message())
        mailbox_backend.send(ref)
        assert sink.draft_state(ref) is DraftState.SENT

    def test_sent_draft_is_still_found_by_its_key(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        message = draft_message()
        ref = sink.create_draft(message)
        mailbox_backend.send(ref)
        found = sink.find_draft(message.key)
        assert found is not None
        assert sink.draft_state(found) is DraftState.SENT

    def test_deleted_draft_is_deleted(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        ref = sink.create_draft(draft_message())
        mailbox_backend.delete(ref)
        assert sink.draft_state(ref) is DraftState.DELETED

    def test_pending_draft_can_be_updated(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        message = draft_message()
        ref = sink.create_draft(message)
        newer = draft_message(subject="Ny tid för intervjun", text="Hej Anna!\n\nNy tid: 15:00.\n")
        updated = sink.update_draft(ref, newer)

        [mail] = mailbox_backend.drafts()
        assert str(mail["Subject"]) == "Ny tid för intervjun"
        assert "Ny tid: 15:00." in parts(mail)["text/plain"]
        assert mail["Message-ID"] == message.key.message_id()
        assert sink.draft_state(updated) is DraftState.PENDING
        found = sink.find_draft(message.key)
        assert found is not None and found.remote_id == updated.remote_id

    def test_edited_draft_is_never_updated(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        ref = sink.create_draft(draft_message())
        mailbox_backend.edit(ref)
        before = [m.as_bytes() for m in mailbox_backend.drafts()]
        with pytest.raises(PermanentError):
            sink.update_draft(ref, draft_message(subject="Ny tid för intervjun"))
        assert [m.as_bytes() for m in mailbox_backend.drafts()] == before

    def test_sent_draft_is_never_updated(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        ref = sink.create_draft(draft_message())
        mailbox_backend.send(ref)
        with pytest.raises(PermanentError):
            sink.update_draft(ref, draft_message(subject="Ny tid för intervjun"))
        assert mailbox_backend.drafts() == []

    def test_obsolete_draft_is_kept_and_marked(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        message = draft_message()
        ref = sink.create_draft(message)
        assert not mailbox_backend.marked_obsolete(ref)
        sink.mark_obsolete(ref)

        [mail] = mailbox_backend.drafts()
        assert mail["Message-ID"] == message.key.message_id()
        assert "Välkommen på intervju" in parts(mail)["text/plain"]
        assert mailbox_backend.marked_obsolete(ref)
        found = sink.find_draft(message.key)
        assert found is not None
        assert mailbox_backend.marked_obsolete(found)

    def test_marking_obsolete_twice_is_harmless(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        ref = sink.create_draft(draft_message())
        sink.mark_obsolete(ref)
        sink.mark_obsolete(ref)
        assert len(mailbox_backend.drafts()) == 1
        assert mailbox_backend.marked_obsolete(ref)

    def test_last_contact_is_the_newest_sent_mail_to_the_address(
        self, mailbox_backend: Any
    ) -> None:
        sink = mailbox_backend.sink()
        if not isinstance(sink, KnowsLastContact):
            pytest.skip("this sink cannot read sent mail")
        monday = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
        mailbox_backend.add_sent(CANDIDATE, monday)
        mailbox_backend.add_sent("Anna.Svensson@Candidate.Example", monday + timedelta(days=2))
        mailbox_backend.add_sent("someone.else@candidate.example", monday + timedelta(days=3))

        newest = sink.last_contact(CANDIDATE, monday - timedelta(days=30))
        assert newest is not None
        assert newest.astimezone(UTC) == monday + timedelta(days=2)
        assert sink.last_contact(CANDIDATE, monday + timedelta(days=2, seconds=1)) is None
        assert sink.last_contact("nobody@candidate.example", monday - timedelta(days=30)) is None

    @pytest.mark.parametrize("hostile", HOSTILE_TEXTS)
    def test_hostile_subject_or_name_adds_no_header(
        self, mailbox_backend: Any, hostile: str
    ) -> None:
        message = draft_message(subject=f"Intervju {hostile}", to_name=hostile)
        mailbox_backend.sink().create_draft(message)
        [mail] = mailbox_backend.drafts()

        assert mail.get_all("Bcc") is None
        names = [name.lower() for name in mail]
        assert len(names) == len(set(names)), f"a header appears twice: {names}"
        for name, value in mail.items():
            assert "\n" not in str(value) and "\r" not in str(value), f"{name} spans lines"
            assert "x@evil.example" not in str(value) or name.lower() in ("subject", "to")
        assert parts(mail)["text/plain"].startswith("Hej Anna!")

    def test_hostile_address_is_refused_and_nothing_is_written(self, mailbox_backend: Any) -> None:
        sink = mailbox_backend.sink()
        with pytest.raises(PermanentError):
            sink.create_draft(
                draft_message(to_address="anna@candidate.example\r\nBcc: x@evil.example")
            )
        assert mailbox_backend.drafts() == []
