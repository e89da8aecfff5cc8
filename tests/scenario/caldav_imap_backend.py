"""Standards servers as a scenario backend: the calendar in Radicale (CalDAV), the mailbox in
Dovecot (IMAP)."""

from __future__ import annotations

import email.utils
from datetime import datetime
from email.message import Message
from pathlib import Path

import httpx
from imapclient import IMAPClient

from recruitmail.contracts.connector import KEY_HEADER
from tests.scenario.default_backend import edited, parse, personal_mail
from tests.scenario.spec import EventSpec, one_ics
from tests.servers import LOOPBACK, DovecotServer, RadicaleServer


class RadicaleDovecotBackend:
    """The scenario's calendar in Radicale (written over HTTP), its mailbox in Dovecot."""

    def __init__(self, radicale: RadicaleServer, dovecot: DovecotServer, root: Path) -> None:
        self.radicale, self.dovecot = radicale, dovecot
        self.cal_user, cal_password = radicale.add_user("lisa")
        self.imap_user, self.imap_password = dovecot.add_user()
        (root / "caldav-password").write_text(cal_password)
        (root / "imap-password").write_text(self.imap_password)
        self.root = root
        self.http = httpx.Client(auth=(self.cal_user, cal_password), trust_env=False, timeout=10)
        self.calendar = f"{radicale.url}{self.cal_user}/rekrytering/"
        created = self.http.request("MKCALENDAR", self.calendar)
        assert created.status_code == 201, created.text
        # Message-IDs of the recruiter's own mails, and the keys of the drafts her client sent
        # without our header (Message-ID → key).
        self.personal: set[str] = set()
        self.edited: dict[str, str] = {}

    def put(self, spec: EventSpec) -> None:
        response = self.http.put(
            f"{self.calendar}{spec.uid}.ics",
            content=one_ics(spec),
            headers={"Content-Type": "text/calendar; charset=utf-8"},
        )
        assert response.status_code in (201, 204), response.text

    def delete(self, uid: str) -> None:
        assert self.http.delete(f"{self.calendar}{uid}.ics").status_code in (200, 204)

    def client(self) -> IMAPClient:
        client = IMAPClient(LOOPBACK, self.dovecot.port, ssl=False, timeout=10)
        client.login(self.imap_user, self.imap_password)
        return client

    def send_to(self, candidate: str, when: datetime, web_edit: bool = False) -> None:
        """What a mail client does on Send: a dated copy lands in Sent, the draft leaves Drafts.
        ``web_edit``: as ``IcsMaildirBackend.send_to`` (our header gone, Message-ID kept)."""
        with self.client() as client:
            client.select_folder("Drafts")
            uids = client.search(["TO", candidate, "NOT", "DELETED"])
            assert uids, f"no draft to {candidate} to send at {when}"
            newest = max(uids)
            message = parse(bytes(client.fetch([newest], ["BODY.PEEK[]"])[newest][b"BODY[]"]))
            del message["Date"]
            message["Date"] = email.utils.format_datetime(when)
            if web_edit:
                self.edited[str(message["Message-ID"])] = str(message[KEY_HEADER] or "")
                message = edited(message)
            client.append("Sent", message.as_bytes(), flags=(b"\\Seen",), msg_time=when)
            client.add_flags([newest], [b"\\Deleted"])
            client.expunge()

    def write_personal_mail(self, to: tuple[str, ...], cc: tuple[str, ...], when: datetime) -> None:
        """A mail the recruiter wrote herself, as her client APPENDs it to Sent."""
        mail = personal_mail(to, cc, when)
        self.personal.add(str(mail["Message-ID"]))
        with self.client() as client:
            client.append("Sent", mail.as_bytes(), flags=(b"\\Seen",), msg_time=when)

    def config(self) -> str:
        return (
            f'\n[mailboxes.source]\ntype = "caldav"\nurl = "{self.radicale.url}"\n'
            f'username = "{self.cal_user}"\npassword = "file:{self.root / "caldav-password"}"\n'
            f'\n[mailboxes.sink]\ntype = "imap"\nhost = "{LOOPBACK}"\nport = {self.dovecot.port}\n'
            f'security = "plain"\nusername = "{self.imap_user}"\n'
            f'password = "file:{self.root / "imap-password"}"\n'
        )

    def messages(self) -> list[Message]:
        out = []
        with self.client() as client:
            for folder in ("Drafts", "Sent"):
                client.select_folder(folder, readonly=True)
                uids = client.search(["NOT", "DELETED"])
                for item in client.fetch(uids, ["BODY.PEEK[]"]).values():
                    message = parse(bytes(item[b"BODY[]"]))
                    message_id = str(message["Message-ID"])
                    if message_id in self.personal:
                        continue
                    if message_id in self.edited and message[KEY_HEADER] is None:
                        message[KEY_HEADER] = self.edited[message_id]
                    out.append(message)
        return out
