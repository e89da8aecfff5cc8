"""The Google fake as a scenario backend: the calendar in Calendar, the mailbox in Gmail."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from email.message import Message
from pathlib import Path

from recruitmail.connectors import google
from recruitmail.contracts.connector import KEY_HEADER
from tests.fakes.google import GoogleFake
from tests.scenario import two_weeks
from tests.scenario.default_backend import parse, personal_mail
from tests.scenario.spec import EventSpec

USER = two_weeks.RECRUITER.address


class GoogleBackend:
    """The scenario's calendar in the fake's Calendar, its mailbox in the fake's Gmail."""

    def __init__(self, fake: GoogleFake, root: Path, expire_after_puts: int = 0) -> None:
        self.fake = fake
        self.expire_after_puts = expire_after_puts
        self.puts = 0
        # The recruiter's own mails (message ids), and the keys of the drafts she sent from
        # Gmail's web editor, which dropped our headers (message id → key).
        self.personal: set[str] = set()
        self.edited: dict[str, str] = {}
        fake.add_user(USER)
        info, client_id = fake.create_service_account()
        sink = google.SinkOptions(key_file=Path("k"), read_sent=True, label_obsolete=True)
        fake.grant_delegation(client_id, google.all_scopes(sink))
        self.key = root / "google-key.json"
        self.key.write_text(json.dumps(info))
        self.key.chmod(0o600)

    def put(self, spec: EventSpec) -> None:
        # Google Calendar has no categories; a recruiter marks the language in the description.
        if "EN" in spec.categories:
            spec = replace(spec, body=f"{spec.body}\nLanguage: en\n", categories=())
        self.fake.put(USER, spec)
        self.puts += 1
        if self.puts == self.expire_after_puts:
            self.fake.expire_sync_tokens()  # Google's 410 fullSyncRequired from here on

    def delete(self, uid: str) -> None:
        self.fake.delete(USER, uid)

    def send_to(self, candidate: str, when: datetime, web_edit: bool = False) -> None:
        with self.fake.lock:
            mine = [
                (m.internal_date, draft_id, m)
                for draft_id, message_id in self.fake.drafts[USER].items()
                for m in [self.fake.messages[USER][message_id]]
                if candidate in str(m.parsed["To"])
            ]
        assert mine, f"no draft to {candidate} to send at {when}"
        _, draft_id, draft = max(mine, key=lambda item: (item[0], item[1]))
        if web_edit:
            key = str(draft.parsed[KEY_HEADER] or "")
            sent = self.fake.send_draft(USER, draft_id, when, web_edit=True)
            self.edited[sent.id] = key
        else:
            self.fake.send_draft(USER, draft_id, when)

    def write_personal_mail(self, to: tuple[str, ...], cc: tuple[str, ...], when: datetime) -> None:
        """A mail the recruiter wrote in Gmail, labelled SENT."""
        message = self.fake.add_sent(USER, to[0], when, subject="Kort avstämning")
        # add_sent knows one To recipient; the recruiter's mail has more, and a Cc.
        with self.fake.lock:
            message.raw = personal_mail(to, cc, when).as_bytes()
        self.personal.add(message.id)

    def config(self) -> str:
        return (
            f'\n[mailboxes.source]\ntype = "google"\nkey_file = "{self.key}"\n'
            f'calendar_endpoint = "{self.fake.url}"\n'
            f'\n[mailboxes.sink]\ntype = "google"\nkey_file = "{self.key}"\n'
            f'gmail_endpoint = "{self.fake.url}"\nread_sent = true\nlabel_obsolete = true\n'
        )

    def messages(self) -> list[Message]:
        out = []
        with self.fake.lock:
            stored = [
                m
                for m in self.fake.messages[USER].values()
                if m.labels & {"DRAFT", "SENT"} and m.id not in self.personal
            ]
            for m in stored:
                message = parse(m.raw)
                if m.id in self.edited and message[KEY_HEADER] is None:
                    message[KEY_HEADER] = self.edited[m.id]
                out.append(message)
        return out
