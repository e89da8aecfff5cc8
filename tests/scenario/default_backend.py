"""The embedded default as a scenario backend: an ICS file for the calendar, a Maildir++ tree
for the mailbox. Used by the end-to-end and hostile-input tests."""

from __future__ import annotations

import email
import email.policy
import email.utils
from datetime import datetime
from email.message import EmailMessage, Message
from pathlib import Path

from recruitmail.contracts.connector import KEY_HEADER
from tests.scenario.spec import EventSpec, to_ics

WEB_EDIT_SIGNATURE = "Hälsningar, Lisa"
"""The line the recruiter adds when she edits a draft before sending it."""


class IcsMaildirBackend:
    """The scenario's calendar as an ICS file, its mailbox as a Maildir++ tree."""

    def __init__(self, root: Path) -> None:
        self.ics = root / "calendar.ics"
        self.maildir = root / "Maildir"
        self.events: dict[str, EventSpec] = {}
        # What the recruiter wrote herself (file names in Sent), and the keys of the drafts her
        # client sent without our header (file name in Sent → key).
        self.personal: set[str] = set()
        self.edited: dict[str, str] = {}
        self.counter = 0
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

    def send_to(self, candidate: str, when: datetime, web_edit: bool = False) -> None:
        """What a mail client does on Send: the draft leaves Drafts, a dated copy lands in Sent.

        ``web_edit``: the recruiter edited the draft in a client that rebuilds the message before
        sending: our key header is gone, the text has her extra line and the copy in Sent has a
        file name of its own. The Message-ID is kept: a Maildir holds no other trace of the
        draft (losing that too is the Microsoft 365 and Google fakes' worst case)."""
        mine = [p for p in self.files(".Drafts") if candidate in str(parse(p.read_bytes())["To"])]
        assert mine, f"no draft to {candidate} to send at {when}"
        newest = max(mine, key=lambda p: p.stat().st_mtime_ns)
        message = parse(newest.read_bytes())
        key = str(message[KEY_HEADER] or "")
        del message["Date"]
        message["Date"] = email.utils.format_datetime(when)
        name = newest.name.split(":")[0]
        if web_edit:
            message = edited(message)
            self.counter += 1
            name = f"{int(when.timestamp())}.W{self.counter}.webmail"
            self.edited[name] = key
        self._to_sent(name, message.as_bytes())
        newest.unlink()

    def write_personal_mail(self, to: tuple[str, ...], cc: tuple[str, ...], when: datetime) -> None:
        """A mail the recruiter wrote herself, as her client files it in Sent."""
        self.counter += 1
        name = f"{int(when.timestamp())}.P{self.counter}.mutt"
        self._to_sent(name, personal_mail(to, cc, when).as_bytes())
        self.personal.add(name)

    def _to_sent(self, name: str, data: bytes) -> None:
        (self.maildir / ".Sent" / "cur").mkdir(parents=True, exist_ok=True)
        (self.maildir / ".Sent" / "cur" / (name + ":2,S")).write_bytes(data)

    def config(self) -> str:
        return (
            f'\n[mailboxes.source]\ntype = "ics"\npath = "{self.ics}"\n'
            f'\n[mailboxes.sink]\ntype = "maildir"\npath = "{self.maildir}"\n'
        )

    def messages(self) -> list[Message]:
        out = []
        for folder in (".Drafts", ".Sent"):
            for path in self.files(folder):
                name = path.name.split(":")[0]
                if name in self.personal:
                    continue
                message = parse(path.read_bytes())
                if name in self.edited and message[KEY_HEADER] is None:
                    message[KEY_HEADER] = self.edited[name]
                out.append(message)
        return out


def edited(message: Message) -> EmailMessage:
    """``message`` as a client that rebuilds it on Send leaves it: every header but our own
    ``X-Recruitmail-*`` ones, and the text with the recruiter's extra line."""
    out = EmailMessage()
    for name, value in message.items():
        if name.lower().startswith("x-recruitmail") or name.lower() in (
            "content-type",
            "content-transfer-encoding",
            "mime-version",
        ):
            continue
        out[name] = str(value)
    assert isinstance(message, EmailMessage)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    out.set_content((text.get_content() if text else "") + f"\n{WEB_EDIT_SIGNATURE}\n")
    if html is not None:
        out.add_alternative(html.get_content(), subtype="html")
    return out


def personal_mail(to: tuple[str, ...], cc: tuple[str, ...], when: datetime) -> EmailMessage:
    """The recruiter's own mail: no key, her own words."""
    mail = EmailMessage()
    mail["From"] = "Lisa Ek <lisa.ek@nordljus.se>"
    mail["To"] = ", ".join(to)
    if cc:
        mail["Cc"] = ", ".join(cc)
    mail["Subject"] = "Kort avstämning"
    mail["Date"] = email.utils.format_datetime(when)
    mail["Message-ID"] = email.utils.make_msgid(domain="nordljus.se")
    mail.set_content("Hej!\n\nTack för i veckan, jag hör av mig snart.\n\nLisa\n")
    return mail


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)
