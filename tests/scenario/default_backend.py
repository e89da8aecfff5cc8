"""The embedded default as a scenario backend: an ICS file for the calendar, a Maildir++ tree
for the mailbox. Used by the end-to-end and hostile-input tests."""

from __future__ import annotations

import email
import email.policy
import email.utils
from datetime import datetime
from email.message import Message
from pathlib import Path

from tests.scenario.spec import EventSpec, to_ics


class IcsMaildirBackend:
    """The scenario's calendar as an ICS file, its mailbox as a Maildir++ tree."""

    def __init__(self, root: Path) -> None:
        self.ics = root / "calendar.ics"
        self.maildir = root / "Maildir"
        self.events: dict[str, EventSpec] = {}
        self.write()

    def write(self) -> None:
        self.ics.write_bytes(to_ics(list(self.events.values())))

    def put(self, spec: EventSpec) -> None:
        self.events[spec.uid] = spec
        self.write()

    def delete(self, uid: str) -> None:
        self.events.pop(uid)
        self.write()

    def files(self, folder: str) -> list[Path]:
        return sorted(
            p
            for sub in ("cur", "new")
            for p in (self.maildir / folder / sub).glob("*")
            if p.is_file()
        )

    def send_to(self, candidate: str, when: datetime) -> None:
        """What a mail client does on Send: the draft leaves Drafts, a dated copy lands in Sent."""
        mine = [p for p in self.files(".Drafts") if candidate in str(parse(p.read_bytes())["To"])]
        newest = max(mine, key=lambda p: p.stat().st_mtime_ns)
        message = parse(newest.read_bytes())
        del message["Date"]
        message["Date"] = email.utils.format_datetime(when)
        (self.maildir / ".Sent" / "cur").mkdir(parents=True, exist_ok=True)
        (self.maildir / ".Sent" / "cur" / (newest.name.split(":")[0] + ":2,S")).write_bytes(
            message.as_bytes()
        )
        newest.unlink()

    def config(self) -> str:
        return (
            f'\n[mailboxes.source]\ntype = "ics"\npath = "{self.ics}"\n'
            f'\n[mailboxes.sink]\ntype = "maildir"\npath = "{self.maildir}"\n'
        )

    def messages(self) -> list[Message]:
        return [
            parse(p.read_bytes()) for folder in (".Drafts", ".Sent") for p in self.files(folder)
        ]


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)
