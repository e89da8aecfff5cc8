"""The Maildir draft sink: the contract suite, with a mail client played by the stdlib ``mailbox``
module, plus what only files bring (names, flags, permissions, atomic writes)."""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import mailbox
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from recruitmail import connectors
from recruitmail.connectors.maildir import OBSOLETE_KEYWORD, MaildirSink, SinkOptions, open_sink
from recruitmail.contracts.connector import (
    KEY_HEADER,
    ConnectorContext,
    KnowsLastContact,
    MailboxSink,
)
from recruitmail.contracts.errors import ConfigError, PermanentError
from recruitmail.contracts.models import DraftRef, DraftState
from tests.contract.mailbox_sink import CANDIDATE, MAILBOX, MailboxSinkContract, draft_message


def context(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(
        mailbox=MAILBOX,
        mailbox_name="Rut Rekryterare",
        time_zone="Europe/Stockholm",
        company_domains=("example.se",),
        state_dir=tmp_path,
    )


def base_of(path: Path) -> str:
    return path.name.split(":", 1)[0]


class MaildirBackend:
    """A Maildir++ tree, and a mail client (the stdlib ``mailbox`` module) working on it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.root = tmp_path / "Maildir"

    def sink(self) -> MaildirSink:
        return open_sink(SinkOptions(path=self.root), context(self.tmp_path))

    def folder(self, name: str) -> mailbox.Maildir:
        return mailbox.Maildir(self.root / name, factory=None, create=False)

    def draft_files(self) -> list[Path]:
        drafts = self.root / ".Drafts"
        files = [*drafts.glob("cur/*"), *drafts.glob("new/*")]
        return sorted(f for f in files if "T" not in f.name.partition(":2,")[2])

    def drafts(self) -> list[Message]:
        return [
            email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
            for f in self.draft_files()
        ]

    def file_of(self, ref: DraftRef) -> Path:
        [path] = [f for f in self.draft_files() if base_of(f) == ref.remote_id]
        return path

    def _key_of(self, ref: DraftRef) -> str:
        # The mailbox module keys Maildir messages by the file's base name, as our refs are.
        assert ref.remote_id in self.folder(".Drafts"), f"no draft {ref.remote_id}"
        return ref.remote_id

    def edit(self, ref: DraftRef) -> None:
        # As mutt does: the edited message is saved as a new file and the old one removed.
        drafts = self.folder(".Drafts")
        key = self._key_of(ref)
        parsed = email.message_from_bytes(drafts.get_bytes(key), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        text = parsed.get_body(("plain",))
        assert text is not None
        text.set_content(
            "Hej Anna!\n\nJag ser fram emot att träffas på torsdag.\n", cte="quoted-printable"
        )
        edited = mailbox.MaildirMessage(parsed.as_bytes())
        edited.set_subdir("cur")
        edited.set_flags("DS")
        drafts.add(edited)
        drafts.remove(key)

    def send(self, ref: DraftRef) -> None:
        drafts, sent = self.folder(".Drafts"), self.folder(".Sent")
        key = self._key_of(ref)
        copy = mailbox.MaildirMessage(drafts.get_bytes(key))
        copy.set_subdir("cur")
        copy.set_flags("S")
        sent.add(copy)
        drafts.remove(key)

    def delete(self, ref: DraftRef) -> None:
        drafts = self.folder(".Drafts")
        drafts.remove(self._key_of(ref))

    def add_sent(self, to: str, when: datetime) -> None:
        mail = EmailMessage()
        mail["From"] = MAILBOX
        mail["To"] = to
        mail["Subject"] = "Hej"
        mail["Date"] = format_datetime(when)
        mail.set_content("Hej!\n")
        self.folder(".Sent").add(mailbox.MaildirMessage(mail.as_bytes()))

    def marked_obsolete(self, ref: DraftRef) -> bool:
        candidates = [f for f in self.draft_files() if base_of(f) == ref.remote_id]
        if not candidates:
            return False
        path = candidates[0]
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        keywords = " ".join(str(v) for v in parsed.get_all("X-Keywords") or [])
        return OBSOLETE_KEYWORD in keywords and "F" in path.name.partition(":2,")[2]


class TestMaildirContract(MailboxSinkContract):
    @pytest.fixture
    def mailbox_backend(self, tmp_path: Path) -> Iterator[MaildirBackend]:
        yield MaildirBackend(tmp_path)


@pytest.fixture
def backend(tmp_path: Path) -> MaildirBackend:
    return MaildirBackend(tmp_path)


def test_the_sink_keeps_the_protocols() -> None:
    sink: MailboxSink = MaildirSink.__new__(MaildirSink)
    assert isinstance(sink, KnowsLastContact)


def test_missing_folders_are_created_private(backend: MaildirBackend) -> None:
    backend.sink()
    for folder in (backend.root, backend.root / ".Drafts", backend.root / ".Sent"):
        for sub in ("", "cur", "new", "tmp"):
            mode = stat.S_IMODE((folder / sub).stat().st_mode)
            assert mode == 0o700, f"{folder / sub} has mode {oct(mode)}"
    assert (backend.root / ".Drafts" / "maildirfolder").exists()
    # Any Maildir++ reader sees the folders.
    assert set(mailbox.Maildir(backend.root, create=False).list_folders()) >= {"Drafts", "Sent"}


def test_draft_file_is_named_by_key_flagged_draft_and_fingerprinted(
    backend: MaildirBackend,
) -> None:
    message = draft_message()
    ref = backend.sink().create_draft(message)
    [path] = backend.draft_files()
    assert path.parent.name == "cur"
    assert path.name == f"{ref.remote_id}:2,D"
    assert message.key.id in path.name
    data = path.read_bytes()
    assert ref.fingerprint == hashlib.sha256(data).hexdigest()
    assert b"\r\n" not in data  # Maildir files use the local line ending
    assert list((backend.root / ".Drafts" / "tmp").iterdir()) == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_draft_carries_a_date(backend: MaildirBackend) -> None:
    backend.sink().create_draft(draft_message())
    [mail] = backend.drafts()
    assert mail["Date"] is not None
    assert mail["Date"].datetime.tzinfo is not None


def test_flag_change_by_a_client_keeps_the_draft_pending(backend: MaildirBackend) -> None:
    sink = backend.sink()
    message = draft_message()
    ref = sink.create_draft(message)
    path = backend.file_of(ref)
    path.rename(path.with_name(f"{ref.remote_id}:2,DS"))  # the client marked it seen
    assert sink.draft_state(ref) is DraftState.PENDING
    found = sink.find_draft(message.key)
    assert found is not None and found.remote_id == ref.remote_id


def test_draft_renamed_entirely_is_still_found_by_its_header(backend: MaildirBackend) -> None:
    sink = backend.sink()
    message = draft_message()
    ref = sink.create_draft(message)
    path = backend.file_of(ref)
    path.rename(path.with_name("1700000000.thunderbird-copy.host:2,D"))
    found = sink.find_draft(message.key)
    assert found is not None and found.remote_id == "1700000000.thunderbird-copy.host"
    assert sink.draft_state(ref) is DraftState.PENDING


def test_draft_marked_for_deletion_counts_as_deleted(backend: MaildirBackend) -> None:
    sink = backend.sink()
    ref = sink.create_draft(draft_message())
    path = backend.file_of(ref)
    path.rename(path.with_name(f"{ref.remote_id}:2,DT"))
    assert sink.draft_state(ref) is DraftState.DELETED


def test_update_keeps_the_file_name(backend: MaildirBackend) -> None:
    sink = backend.sink()
    ref = sink.create_draft(draft_message())
    updated = sink.update_draft(ref, draft_message(subject="Ny tid"))
    assert updated.remote_id == ref.remote_id
    assert updated.fingerprint != ref.fingerprint
    [path] = backend.draft_files()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == updated.fingerprint


def test_obsolete_mark_leaves_the_content_byte_identical(backend: MaildirBackend) -> None:
    sink = backend.sink()
    ref = sink.create_draft(draft_message())
    before = backend.file_of(ref).read_bytes()
    sink.mark_obsolete(ref)
    path = backend.file_of(ref)
    after = path.read_bytes()
    assert after == (
        f"X-Keywords: {OBSOLETE_KEYWORD}\nKeywords: {OBSOLETE_KEYWORD}\n".encode() + before
    )
    assert path.name == f"{ref.remote_id}:2,DF"
    # The recruiter's view is unchanged apart from the mark: still pending, still ours.
    assert sink.draft_state(ref) is DraftState.PENDING


def test_marking_a_sent_draft_touches_nothing(backend: MaildirBackend) -> None:
    sink = backend.sink()
    ref = sink.create_draft(draft_message())
    backend.send(ref)
    [sent] = list((backend.root / ".Sent" / "cur").iterdir())
    before = sent.read_bytes()
    sink.mark_obsolete(ref)
    assert sent.read_bytes() == before
    assert backend.drafts() == []


def test_last_contact_counts_cc_and_ignores_drafts(backend: MaildirBackend) -> None:
    sink = backend.sink()
    sink.create_draft(draft_message())  # a draft is not contact
    when = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    mail = EmailMessage()
    mail["From"] = MAILBOX
    mail["To"] = "per@example.se"
    mail["Cc"] = f"Anna Svensson <{CANDIDATE.upper()}>"
    mail["Date"] = format_datetime(when)
    mail.set_content("Hej!\n")
    backend.folder(".Sent").add(mailbox.MaildirMessage(mail.as_bytes()))
    assert sink.last_contact(CANDIDATE, datetime(2026, 1, 1, tzinfo=UTC)) == when


def test_other_clients_mail_with_broken_headers_is_ignored(backend: MaildirBackend) -> None:
    sink = backend.sink()
    (backend.root / ".Sent" / "cur" / "1.broken.host:2,S").write_bytes(b"\x00\xff garbage")
    (backend.root / ".Drafts" / "cur" / "2.broken.host:2,D").write_bytes(b"Subject: =?x?\n\nhi")
    message = draft_message()
    ref = sink.create_draft(message)
    assert sink.find_draft(message.key) == ref
    assert sink.draft_state(ref) is DraftState.PENDING
    assert sink.last_contact(CANDIDATE, datetime(2026, 1, 1, tzinfo=UTC)) is None


def test_key_header_is_written(backend: MaildirBackend) -> None:
    message = draft_message()
    backend.sink().create_draft(message)
    [mail] = backend.drafts()
    assert mail[KEY_HEADER] == message.key.id


def test_sink_is_built_through_the_registry(tmp_path: Path) -> None:
    sink = connectors.open_sink(
        "maildir",
        {"path": str(tmp_path / "mail"), "drafts_folder": ".Utkast", "sent_folder": ".Skickat"},
        context(tmp_path),
        "mailboxes[0].sink",
    )
    sink.create_draft(draft_message())
    assert len(list((tmp_path / "mail" / ".Utkast" / "cur").iterdir())) == 1
    assert (tmp_path / "mail" / ".Skickat" / "cur").is_dir()
    sink.close()
    sink.close()


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({}, "path"),
        ({"path": "/tmp/x", "drafts_folder": "../elsewhere"}, "drafts_folder"),
        ({"path": "/tmp/x", "sent_folder": ""}, "sent_folder"),
        ({"path": "/tmp/x", "colour": "red"}, "colour"),
    ],
)
def test_bad_options_are_configuration_errors(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        connectors.validate_options("maildir", "sink", raw, "mailboxes[0].sink")


def test_uncreatable_maildir_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot create the Maildir"):
        open_sink(SinkOptions(path=blocker / "Maildir"), context(tmp_path))


# --- a Maildir others can write into: FIFOs, devices, links -----------------------------------


def test_a_fifo_in_sent_is_skipped_with_a_reason_and_never_opened(
    backend: MaildirBackend, caplog: pytest.LogCaptureFixture
) -> None:
    sink = backend.sink()
    backend.add_sent(CANDIDATE, datetime(2026, 3, 2, 9, tzinfo=UTC))
    os.mkfifo(backend.root / ".Sent" / "cur" / "1700000000.fifo.host:2,S")
    with caplog.at_level(logging.WARNING, logger="recruitmail.connectors.maildir"):
        # Opening the FIFO for reading would block here for good.
        assert sink.last_contact(CANDIDATE, datetime(2026, 1, 1, tzinfo=UTC)) == datetime(
            2026, 3, 2, 9, tzinfo=UTC
        )
        sink.last_contact(CANDIDATE, datetime(2026, 1, 1, tzinfo=UTC))
    warnings = [r.getMessage() for r in caplog.records if "a FIFO" in r.getMessage()]
    assert len(warnings) == 1  # said once, not on every pass


def test_a_symlinked_message_file_is_not_read(backend: MaildirBackend, tmp_path: Path) -> None:
    sink = backend.sink()
    outside = tmp_path / "outside.eml"
    outside.write_bytes(
        f"To: {CANDIDATE}\nDate: Mon, 02 Mar 2026 09:00:00 +0000\nSubject: x\n\nx\n".encode()
    )
    (backend.root / ".Sent" / "cur" / "1700000000.link.host:2,S").symlink_to(outside)
    assert sink.last_contact(CANDIDATE, datetime(2026, 1, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize("folder", [".Drafts", ".Drafts/cur", ".Drafts/tmp", ".Sent", ".Sent/new"])
def test_a_symlinked_maildir_folder_is_refused(tmp_path: Path, folder: str) -> None:
    root = tmp_path / "Maildir"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for sub in ("cur", "new", "tmp"):
        (elsewhere / sub).mkdir()
    (root / folder).parent.mkdir(parents=True, exist_ok=True)
    (root / folder).symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symbolic link"):
        open_sink(SinkOptions(path=root), context(tmp_path))
    assert not any(elsewhere.rglob("*rm-*"))


def test_a_drafts_folder_replaced_by_a_link_later_is_not_written_through(
    backend: MaildirBackend, tmp_path: Path
) -> None:
    sink = backend.sink()
    cur = backend.root / ".Drafts" / "cur"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cur.rmdir()
    cur.symlink_to(elsewhere)
    with pytest.raises(PermanentError, match="symbolic link"):
        sink.create_draft(draft_message())
    assert list(elsewhere.iterdir()) == []
    assert list((backend.root / ".Drafts" / "tmp").iterdir()) == []


def test_an_idn_candidate_is_written_with_an_idna_domain(backend: MaildirBackend) -> None:
    sink = backend.sink()
    sink.create_draft(draft_message(to_name="Åsa Öberg", to_address="asa@exämple.se"))
    [path] = backend.draft_files()
    raw = path.read_bytes()
    assert b"<asa@xn--exmple-cua.se>" in raw
    [draft] = backend.drafts()
    [to] = draft["To"].addresses
    assert (to.display_name, to.username, to.domain) == ("Åsa Öberg", "asa", "xn--exmple-cua.se")


def test_last_contact_sees_idna_and_trailing_dot_spellings_as_the_same_person(
    backend: MaildirBackend,
) -> None:
    sink = backend.sink()
    backend.add_sent("asa@xn--exmple-cua.se.", datetime(2026, 3, 2, 9, tzinfo=UTC))
    since = datetime(2026, 1, 1, tzinfo=UTC)
    assert sink.last_contact("Asa@exämple.se", since) == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert sink.last_contact("asa@exämple.se.", since) == datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_a_maildir_root_that_is_a_link_is_accepted(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "Maildir").symlink_to(real)
    sink = open_sink(SinkOptions(path=tmp_path / "Maildir"), context(tmp_path))
    sink.create_draft(draft_message())
    assert len(list((real / ".Drafts" / "cur").iterdir())) == 1


# -- the index of Drafts and Sent ------------------------------------------------------------


def test_look_ups_are_answered_from_the_index_not_a_listing_each(
    backend: MaildirBackend,
) -> None:
    sink = backend.sink()
    refs = [sink.create_draft(draft_message(f"interview-{n}@example.se")) for n in range(40)]
    real_scandir = os.scandir
    listings: list[str] = []

    def counting_scandir(path: Any) -> Any:
        listings.append(str(path))
        return real_scandir(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "scandir", counting_scandir)
        for n, ref in enumerate(refs):
            assert sink.find_draft(draft_message(f"interview-{n}@example.se").key) == ref
        assert sink.find_draft(draft_message("never-drafted@example.se").key) is None
    # Before the index: Drafts and Sent (cur and new each) were listed for every look-up, 164
    # listings here. Now at most the Sent folder's, while it is too new to be sure of.
    assert not [p for p in listings if ".Drafts" in p]
    assert len(listings) < 20


def test_a_draft_the_recruiter_sent_after_the_index_was_taken_is_found_in_sent(
    backend: MaildirBackend,
) -> None:
    sink = backend.sink()
    message = draft_message()
    ref = sink.create_draft(message)
    assert sink.find_draft(message.key) == ref  # the index knows it in Drafts
    backend.send(ref)  # moved to Sent, maybe within the same tick of the file system's clock
    found = sink.find_draft(message.key)
    assert found is not None and found.remote_id != ref.remote_id
    assert sink.draft_state(ref) is DraftState.SENT
    assert len(backend.draft_files()) == 0


def test_a_draft_a_client_renamed_after_the_index_was_taken_is_still_found(
    backend: MaildirBackend,
) -> None:
    sink = backend.sink()
    message = draft_message()
    ref = sink.create_draft(message)
    assert sink.find_draft(message.key) == ref
    [path] = backend.draft_files()
    path.rename(path.with_name(path.name + "S"))  # marked seen, as a client does: a rename
    assert sink.find_draft(message.key) == ref
    backend.edit(ref)  # rewritten under a new name entirely
    found = sink.find_draft(message.key)
    assert found is not None and found.remote_id != ref.remote_id


def test_a_mail_the_recruiter_sends_counts_at_once_for_last_contact(
    backend: MaildirBackend,
) -> None:
    sink = backend.sink()
    since = datetime(2026, 12, 1, tzinfo=UTC)
    assert sink.last_contact(CANDIDATE, since) is None
    when = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    backend.add_sent(CANDIDATE, when)  # within the same tick as the listing, as like as not
    assert sink.last_contact(CANDIDATE, since) == when


def test_drafts_written_by_another_sink_are_found_after_their_folder_changed(
    backend: MaildirBackend,
) -> None:
    first, second = backend.sink(), backend.sink()  # e.g. the daemon and a `recruitmail once`
    assert first.find_draft(draft_message().key) is None
    ref = second.create_draft(draft_message())
    second.flush()
    cur = backend.root / ".Drafts" / "cur"
    # The folder's modification time moves on with the clock; a file system whose clock did
    # not tick between the two writes shows it at its next tick.
    later = cur.stat().st_mtime_ns + 1_000_000_000
    os.utime(cur, ns=(later, later))
    assert first.find_draft(draft_message().key) == ref


def test_flush_and_close_keep_every_draft(
    backend: MaildirBackend,
) -> None:
    sink = backend.sink()
    sink.create_draft(draft_message())
    sink.flush()
    sink.flush()  # nothing left: a no-op
    sink.create_draft(draft_message("interview-2@example.se"))
    sink.close()
    assert len(backend.draft_files()) == 2
