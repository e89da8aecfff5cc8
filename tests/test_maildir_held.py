"""Held creates of the Maildir sink: a batch's drafts are written to tmp/, then ``flush`` makes
them whole on disk together and only then puts them into cur/ (docs/RELIABILITY.md, "A batch of
drafts"). What a mail client, a look-up and a killed process see at each step."""

from __future__ import annotations

import email
import email.policy
import os
import time
from pathlib import Path

from recruitmail.connectors.maildir import MaildirSink
from recruitmail.contracts.connector import KEY_HEADER
from tests.contract.mailbox_sink import draft_message
from tests.test_maildir import MaildirBackend


def tmp_files(backend: MaildirBackend) -> list[Path]:
    return sorted((backend.root / ".Drafts" / "tmp").iterdir())


def test_a_held_draft_is_found_by_its_key_but_shown_to_no_client_before_the_flush(
    tmp_path: Path,
) -> None:
    backend = MaildirBackend(tmp_path)
    sink = backend.sink()
    sink.hold()
    message = draft_message()
    ref = sink.create_draft(message)
    assert backend.draft_files() == []  # a mail client sees nothing yet
    assert sink.find_draft(message.key) == ref  # the pass that wrote it does
    sink.flush()
    [path] = backend.draft_files()
    assert path.name.endswith(":2,D")
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed[KEY_HEADER] == message.key.id
    assert tmp_files(backend) == []
    assert sink.find_draft(message.key) == ref
    assert backend.sink().find_draft(message.key) == ref  # and a new process finds it


def test_a_batch_of_held_drafts_lands_whole_and_creates_after_the_flush_are_not_held(
    tmp_path: Path,
) -> None:
    backend = MaildirBackend(tmp_path)
    sink = backend.sink()
    sink.hold()
    refs = [sink.create_draft(draft_message(f"interview-{n}@example.se")) for n in range(20)]
    sink.flush()
    assert sorted(p.name.split(":")[0] for p in backend.draft_files()) == sorted(
        r.remote_id for r in refs
    )
    for ref in refs:
        assert backend.sink().draft_state(ref).value == "pending"  # content as written
    sink.create_draft(draft_message("interview-late@example.se"))  # no hold: at once
    assert len(backend.draft_files()) == 21


def test_a_process_killed_before_its_flush_leaves_no_draft_and_the_next_creates_it_once(
    tmp_path: Path,
) -> None:
    backend = MaildirBackend(tmp_path)
    killed = backend.sink()
    killed.hold()
    message = draft_message()
    killed.create_draft(message)
    del killed  # never flushed nor closed, as after SIGKILL: the file stays in tmp/
    assert len(tmp_files(backend)) == 1
    assert backend.draft_files() == []

    nxt: MaildirSink = backend.sink()
    assert nxt.find_draft(message.key) is None  # nothing any client could see
    nxt.hold()
    ref = nxt.create_draft(message)
    nxt.flush()
    [path] = backend.draft_files()
    assert path.name.startswith(ref.remote_id)
    assert tmp_files(backend) == []  # the killed process's file is gone with it


def test_close_puts_held_drafts_in_place(tmp_path: Path) -> None:
    backend = MaildirBackend(tmp_path)
    sink = backend.sink()
    sink.hold()
    sink.create_draft(draft_message())
    sink.close()
    assert len(backend.draft_files()) == 1
    assert tmp_files(backend) == []


def test_files_abandoned_in_tmp_for_36_hours_go_and_fresher_ones_of_others_stay(
    tmp_path: Path,
) -> None:
    backend = MaildirBackend(tmp_path)
    killed = backend.sink()
    killed.hold()
    killed.create_draft(draft_message("interview-never-again@example.se"))
    del killed  # a draft the next passes never ask for again (its interview was cancelled)
    tmp = backend.root / ".Drafts" / "tmp"
    [abandoned] = tmp_files(backend)
    client_old = tmp / "1700000000.M1P1.client"  # another program's file, as old
    client_fresh = tmp / "1700000001.M1P1.client"  # one being written right now
    client_old.write_bytes(b"Subject: half\r\n")
    client_fresh.write_bytes(b"Subject: half\r\n")
    two_days_ago = time.time() - 48 * 3600
    for path in (abandoned, client_old):
        os.utime(path, (two_days_ago, two_days_ago))

    nxt = backend.sink()
    nxt.hold()
    nxt.create_draft(draft_message("interview-new@example.se"))
    nxt.flush()
    assert tmp_files(backend) == [client_fresh]
    assert len(backend.draft_files()) == 1
