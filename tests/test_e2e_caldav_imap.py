"""End to end through the CLI on standards servers: the two-week scenario written into Radicale,
``recruitmail once --now …`` at every instant, the drafts read back from Dovecot independently."""

from __future__ import annotations

import email
import email.policy
import email.utils
from collections.abc import Iterator
from datetime import datetime
from email.message import Message
from pathlib import Path

import httpx
import pytest
from imapclient import IMAPClient

from tests.scenario import two_weeks
from tests.scenario.runner import (
    Outcome,
    assert_consistent,
    assert_drafted_exactly,
    replay,
    status_output,
)
from tests.scenario.spec import EventSpec, one_ics
from tests.servers import (  # noqa: F401
    LOOPBACK,
    DovecotServer,
    RadicaleServer,
    radicale_fixture,
    run_dovecot,
)

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


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

    def send_to(self, candidate: str, when: datetime) -> None:
        """What a mail client does on Send: a dated copy lands in Sent, the draft leaves Drafts."""
        with self.client() as client:
            client.select_folder("Drafts")
            uids = client.search(["TO", candidate, "NOT", "DELETED"])
            newest = max(uids)
            message = parse(bytes(client.fetch([newest], ["BODY.PEEK[]"])[newest][b"BODY[]"]))
            del message["Date"]
            message["Date"] = email.utils.format_datetime(when)
            client.append("Sent", message.as_bytes(), flags=(b"\\Seen",), msg_time=when)
            client.add_flags([newest], [b"\\Deleted"])
            client.expunge()

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
                    out.append(parse(bytes(item[b"BODY[]"])))
        return out


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    yield from run_dovecot(uidplus=True)


@pytest.fixture(scope="module")
def full_run(
    radicale: RadicaleServer, dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RadicaleDovecotBackend, Outcome, Path]:
    root = tmp_path_factory.mktemp("e2e-caldav-imap")
    backend = RadicaleDovecotBackend(radicale, dovecot, root)
    return backend, replay(backend, root), root


def test_the_scenario_drafts_exactly_the_expected_mails(
    full_run: tuple[RadicaleDovecotBackend, Outcome, Path],
) -> None:
    _, outcome, _ = full_run
    assert_drafted_exactly(outcome, two_weeks.EXPECTED)
    assert outcome.obsolete == set(two_weeks.EXPECTED_OBSOLETE)


def test_dovecot_holds_valid_two_part_mails_read_by_its_own_tool(
    full_run: tuple[RadicaleDovecotBackend, Outcome, Path],
) -> None:
    backend, outcome, _ = full_run
    listing = backend.dovecot.doveadm(
        "fetch", "-u", backend.imap_user, "hdr.message-id", "mailbox", "Drafts", "all"
    )
    drafted_ids = {f"<rm-{key_id}@nordljus.se>" for key_id in outcome.by_key}
    in_drafts = {line.split(":", 1)[1].strip() for line in listing.splitlines() if ":" in line}
    assert in_drafts and in_drafts <= drafted_ids
    for key_id, (message,) in outcome.by_key.items():
        assert message["Message-ID"] == f"<rm-{key_id}@nordljus.se>"
        assert message.get_content_type() == "multipart/alternative"
        assert not message.defects
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert text.strip() and "<html" in html.lower()
        assert message["From"].addresses[0].addr_spec == "lisa.ek@nordljus.se"


def test_status_reports_the_draft_the_client_sent(
    full_run: tuple[RadicaleDovecotBackend, Outcome, Path],
) -> None:
    _, _, root = full_run
    result = status_output(root)
    assert two_weeks.BO in result.stdout
    assert "sent" in result.stdout  # Bo's welcome left Drafts for Sent
    for line in result.stderr.splitlines():
        assert two_weeks.ANNA not in line


def test_replaying_every_instant_again_creates_nothing_new(
    full_run: tuple[RadicaleDovecotBackend, Outcome, Path],
) -> None:
    backend, before, root = full_run
    again = replay(backend, root, apply_changes=False)  # the calendar as the fortnight left it
    assert_consistent(again)
    assert {k: len(v) for k, v in again.by_key.items()} == {
        k: len(v) for k, v in before.by_key.items()
    }
    assert again.drafts == before.drafts
