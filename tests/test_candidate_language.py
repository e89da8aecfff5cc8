"""Each candidate's mails in their own language, decided per candidate, through the real CLI.

A recruiter whose default is Swedish books interviews with candidates from six countries. Every
welcome must be in the candidate's language (decided from the configuration, ``recruitmail
language``, the interview's category, or the event's own text, in that order), must not mix two
languages (checked with the same detector), and must keep its language for later mails.
``recruitmail status`` says which language and why.
"""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import pytest

from recruitmail.contracts.connector import KEY_HEADER
from recruitmail.daemon.cli import main as run_main
from recruitmail.daemon.demo import config_text
from recruitmail.daemon.language import detect_language, foreign_sentences
from recruitmail.daemon.settings import LANGUAGES
from tests.fakes.google import GoogleFake
from tests.fakes.graph import FakeGraph
from tests.scenario import two_weeks
from tests.scenario.google_backend import GoogleBackend
from tests.scenario.graph_backend import GraphBackend
from tests.scenario.runner import write_config
from tests.scenario.spec import EventSpec, Who
from tests.servers import DovecotServer, dovecot_fixture  # noqa: F401
from tests.test_imap import DovecotMailbox

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NOW = "2026-12-07T09:00:00+01:00"  # Monday; the interviews are later this week
LATER = "2026-12-08T09:00:00+01:00"


SWEDISH_AGENDA = (
    "Agenda:\n- Vi berättar om teamet och rollen\n- Du berättar om dina erfarenheter\n"
    "- Dina frågor till oss"
)


@dataclass(frozen=True)
class Candidate:
    slug: str
    address: str
    name: str
    subject: str
    description: str
    expected: str
    why: str  # a word of the status line's reason
    categories: str = ""
    sent: str = ""  # the recruiter's last mail to the candidate, in Sent


CANDIDATES = [
    Candidate(
        "sv",
        "anna@example.se",
        "Anna Svensson",
        "Intervju: Anna Svensson",
        "Agenda:\n- Vi berättar om teamet och rollen\n- Du berättar om dina erfarenheter\n"
        "- Dina frågor till oss",
        "sv",
        "title and description",
    ),
    Candidate(
        "en",
        "liam@example.ie",
        "Liam Murphy",
        "Interview: Liam Murphy (Product Designer)",
        "Agenda:\n- We introduce the team and the role\n- You tell us about your experience\n"
        "- Your questions for us",
        "en",
        "title and description",
    ),
    Candidate(
        "nb",
        "ola@example.no",
        "Ola Nordmann",
        "Jobbintervju med Ola Nordmann",
        "Agenda:\n- Vi forteller om teamet og stillingen\n- Du forteller om erfaringen din\n"
        "- Spørsmålene dine til oss",
        "nb",
        "title and description",
    ),
    Candidate(
        "da",
        "mette@example.dk",
        "Mette Hansen",
        "Jobsamtale med Mette Hansen",
        "Dagsorden:\n- Vi fortæller om teamet og stillingen\n- Du fortæller om dine erfaringer\n"
        "- Dine spørgsmål til os",
        "da",
        "title and description",
    ),
    Candidate(
        "fi",
        "aino@example.fi",
        "Aino Virtanen",
        "Työhaastattelu: Aino Virtanen",
        "Ohjelma:\n- Kerromme tiimistä ja tehtävästä\n- Kerrot kokemuksestasi\n"
        "- Sinun kysymyksesi meille",
        "fi",
        "title and description",
    ),
    Candidate(
        "de",
        "jonas@example.de",
        "Jonas Müller",
        "Vorstellungsgespräch mit Jonas Müller",
        "Ablauf:\n- Wir stellen das Team und die Stelle vor\n- Du erzählst von deiner Erfahrung\n"
        "- Deine Fragen an uns",
        "de",
        "title and description",
    ),
    Candidate(
        "category-en",
        "sven@example.se",
        "Sven Berg",
        "Intervju: Sven Berg",
        "Agenda:\n- Vi berättar om teamet\n- Dina frågor",
        "en",
        "category",
        categories="EN",
    ),
    Candidate(
        "category-de",
        "lena@example.at",
        "Lena Huber",
        "Interview: Lena Huber",
        "",
        "de",
        "category",
        categories="Deutsch",
    ),
    Candidate(
        "configured",
        "pekka@example.com",
        "Pekka Korhonen",
        "Interview: Pekka Korhonen",
        "Agenda:\n- We introduce the team\n- Your questions",
        "fi",
        "configuration",
    ),
    Candidate(
        "stored",
        "karen@example.com",
        "Karen Berg",
        "Intervju: Karen Berg",
        "Agenda:\n- Vi berättar om teamet\n- Dina frågor",
        "da",
        "recruitmail language",
    ),
    Candidate(
        "mixed",
        "maja@example.com",
        "Maja Lund",
        "Interview: Maja Lund",
        "Vi ses på kontoret på Storgatan. Ta gärna med dig frågor om hur vi arbetar i teamet "
        "och hur en vanlig vecka ser ut hos oss.",
        "sv",
        "title and description",
    ),
    Candidate(
        "nothing-to-go-on",
        "kim@example.com",
        "Kim Ek",
        "Intervju",
        "",
        "sv",
        "default",
    ),
    # The recruiter's own last mail to the candidate (in Sent) beats the event's Swedish text.
    Candidate(
        "sent-nb",
        "ingrid@example.com",
        "Ingrid Dahl",
        "Intervju: Ingrid Dahl",
        SWEDISH_AGENDA,
        "nb",
        "your last mail",
        sent="Hei Ingrid!\n\nTusen takk for søknaden din. Vi vil gjerne invitere deg til et "
        "intervju neste uke, og jeg sender deg en invitasjon i kalenderen.\n\nVennlig hilsen\nLisa",
    ),
    Candidate(
        "sent-de",
        "tobias@example.com",
        "Tobias Weber",
        "Intervju: Tobias Weber",
        SWEDISH_AGENDA,
        "de",
        "your last mail",
        sent="Hallo Tobias,\n\nvielen Dank für deine Bewerbung! Wir würden dich gerne zu einem "
        "Gespräch einladen. Die Einladung kommt gleich per Kalender.\n\nViele Grüße\nLisa",
    ),
    Candidate(
        "sent-en",
        "emma@example.com",
        "Emma Clarke",
        "Intervju: Emma Clarke",
        SWEDISH_AGENDA,
        "en",
        "your last mail",
        # A short English reply above the candidate's Swedish mail, quoted: the reply counts.
        sent="Hi Emma,\n\nThanks a lot for getting back to me so quickly. I have booked the "
        "interview for this week and will send you the details.\n\nBest,\nLisa\n\n"
        "On Fri, 4 Dec 2026 at 10:12, Emma Clarke <emma@example.com> wrote:\n"
        "> Hej Lisa! Tack för att du hörde av dig, jag kan gärna ses nästa vecka.\n"
        "> Jag har tid på torsdag eftermiddag och fredag förmiddag.\n",
    ),
    Candidate(
        "sent-but-category",
        "noah@example.com",
        "Noah Becker",
        "Intervju: Noah Becker",
        SWEDISH_AGENDA,
        "en",
        "category",
        categories="EN",
        sent="Hallo Noah,\n\nvielen Dank für deine Bewerbung! Wir würden dich gerne zu einem "
        "Gespräch einladen.\n\nViele Grüße\nLisa",
    ),
    Candidate(
        "sent-but-stored",
        "sofie@example.com",
        "Sofie Lange",
        "Intervju: Sofie Lange",
        SWEDISH_AGENDA,
        "fi",
        "recruitmail language",
        sent="Hei Sofie!\n\nTusen takk for søknaden din. Vi vil gjerne invitere deg til et "
        "intervju neste uke.\n\nVennlig hilsen\nLisa",
    ),
]


def vevent(number: int, who: Candidate, start: str, end: str, uid: str) -> str:
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20261201T000000Z",
        f"DTSTART;TZID=Europe/Stockholm:{start}",
        f"DTEND;TZID=Europe/Stockholm:{end}",
        f"SUMMARY:{who.subject}",
        "ORGANIZER;CN=Lisa Ek:mailto:lisa.ek@nordljus.se",
        "ATTENDEE;CN=Lisa Ek;PARTSTAT=ACCEPTED:mailto:lisa.ek@nordljus.se",
        f"ATTENDEE;CN={who.name};PARTSTAT=ACCEPTED:mailto:{who.address}",
    ]
    if who.description:
        lines.append("DESCRIPTION:" + who.description.replace("\n", "\\n").replace(",", "\\,"))
    if who.categories:
        lines.append(f"CATEGORIES:{who.categories}")
    lines.append("END:VEVENT")
    return "\r\n".join(lines)


def calendar(events: list[str]) -> str:
    return "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//recruitmail tests//EN",
            *events,
            "END:VCALENDAR",
            "",
        ]
    )


def first_round() -> list[str]:
    return [
        vevent(
            n,
            who,
            f"202612{9 + n % 3:02d}T{9 + n // 3:02d}0000",
            f"202612{9 + n % 3:02d}T{9 + n // 3:02d}4500",
            f"{who.slug}-1@test",
        )
        for n, who in enumerate(CANDIDATES)
    ]


def cli(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "recruitmail", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def sent_mail(root: Path, who: Candidate, number: int) -> None:
    """The recruiter's earlier mail to ``who``, as a mail client leaves it in the Maildir's Sent."""
    message = email.message.EmailMessage()
    message["From"] = "Lisa Ek <lisa.ek@nordljus.se>"
    message["To"] = f"{who.name} <{who.address}>"
    message["Subject"] = "Din ansökan"
    message["Date"] = f"Fri, 04 Dec 2026 1{number % 10}:00:00 +0100"
    message["Message-ID"] = f"<sent-{who.slug}@nordljus.se>"
    message.set_content(who.sent)
    folder = root / "Maildir" / ".Sent" / "cur"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"17651000{number:02d}.M1P1.test:2,S").write_bytes(bytes(message))


def drafts_to(root: Path) -> dict[str, list[email.message.EmailMessage]]:
    found: dict[str, list[email.message.EmailMessage]] = {}
    for file in sorted((root / "Maildir" / ".Drafts").rglob("*")):
        if not file.is_file() or file.parent.name not in ("cur", "new"):
            continue
        message = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
        to = message["To"].addresses[0].addr_spec
        found.setdefault(to, []).append(message)  # type: ignore[arg-type]
    return found


def body(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


@pytest.fixture(scope="module")
def booked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("languages")
    text = config_text(root, date(2027, 3, 1))
    text += '\n[languages]\n"pekka@example.com" = "fi"\n'
    config = root / "recruitmail.toml"
    config.write_text(text, encoding="utf-8")
    (root / "Maildir").mkdir()
    (root / "calendar.ics").write_text(calendar(first_round()), encoding="utf-8")
    cli(config, "language", "karen@example.com", "da")
    cli(config, "language", "sofie@example.com", "fi")
    for number, who in enumerate(CANDIDATES):
        if who.sent:
            sent_mail(root, who, number)
    cli(config, "once", "--now", NOW)
    return root


@pytest.mark.parametrize("who", CANDIDATES, ids=[c.slug for c in CANDIDATES])
def test_each_candidate_gets_their_own_language(booked: Path, who: Candidate) -> None:
    (welcome,) = drafts_to(booked)[who.address]
    text = body(welcome)
    assert detect_language(text, LANGUAGES) == who.expected, text
    names = (who.name, *who.name.split(), "Lisa Ek", "Nordljus AB", "Nordljus")
    mixed = foreign_sentences(text, who.expected, LANGUAGES, ignore=names)
    assert not mixed, f"sentences in another language: {mixed}"
    assert welcome["Content-Language"] in (None, who.expected)


def test_status_says_which_language_and_why(booked: Path) -> None:
    shown = cli(booked / "recruitmail.toml", "status", "--offline")
    for who in CANDIDATES:
        block = shown.split(f"{who.address}  (recruiter", 1)[1].split("\n\n", 1)[0]
        line = re.search(r"language: (\w+) \((.*)\)", block)
        assert line, block
        assert line.group(1) == who.expected
        assert who.why in line.group(2), line.group(2)


def test_a_candidate_keeps_their_language_when_a_later_event_says_otherwise(
    booked: Path,
) -> None:
    liam = CANDIDATES[1]
    swedish = Candidate(
        liam.slug,
        liam.address,
        liam.name,
        "Intervju 2: Liam Murphy",
        "Agenda:\n- Vi går igenom ditt case\n- Du träffar teamet\n- Dina frågor",
        "en",
        "title and description",
    )
    events = first_round() + [
        vevent(99, swedish, "20261211T140000", "20261211T150000", "en-2@test")
    ]
    (booked / "calendar.ics").write_text(calendar(events), encoding="utf-8")
    cli(booked / "recruitmail.toml", "once", "--now", LATER)
    later = drafts_to(booked)[liam.address]
    assert len(later) >= 2, "a mail about the second interview"
    for message in later:
        assert detect_language(body(message), LANGUAGES) == "en", message["Subject"]


def test_the_language_command_shows_sets_and_clears(booked: Path) -> None:
    config = booked / "recruitmail.toml"
    shown = cli(config, "language", "karen@example.com")
    assert "karen@example.com: da (set with recruitmail language)" in shown
    cleared = cli(config, "language", "karen@example.com", "--clear")
    assert "no language set with recruitmail language any more" in cleared
    assert "karen@example.com: da" not in cli(config, "language", "karen@example.com")
    # The next mail is decided again from her own signals: her interview is written in Swedish.
    cli(config, "once", "--now", "2026-12-09T18:00:00+01:00")
    shown = cli(config, "status", "--offline", "--candidate", "karen@example.com")
    assert re.search(r"language: sv \(the language of the interview's title", shown), shown
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "recruitmail",
            "--config",
            str(config),
            "language",
            "karen@example.com",
            "xx",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "xx" in refused.stderr


# -- Sent mail in Microsoft 365 and Gmail ----------------------------------------------------------

MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=STOCKHOLM)
THURSDAY = datetime(2026, 12, 10, 14, 0, tzinfo=STOCKHOLM)
INGRID = CANDIDATES[12]
INTERVIEW = EventSpec(
    "sent-nb@test",
    INGRID.subject,
    THURSDAY,
    THURSDAY + timedelta(hours=1),
    two_weeks.RECRUITER,
    (two_weeks.RECRUITER, Who(INGRID.address, INGRID.name)),
    body=INGRID.description,
)


class ProviderBackend(Protocol):
    def put(self, spec: EventSpec) -> None: ...
    def config(self) -> str: ...
    def messages(self) -> list[email.message.Message]: ...


def ours_to(backend: ProviderBackend, address: str) -> list[str]:
    """The text of every mail recruitmail drafted to ``address``."""
    found = []
    for message in backend.messages():
        if message[KEY_HEADER] and address in str(message["To"]):
            found.append(body(message))  # type: ignore[arg-type]
    return found


def run_twice(backend: ProviderBackend, root: Path) -> tuple[list[str], list[str]]:
    """A welcome on Monday, a thank-you on Thursday: the texts after each pass."""
    backend.put(INTERVIEW)
    config = write_config(backend, root)
    assert run_main(["--config", str(config), "once", "--now", MONDAY.isoformat()]) == 0
    first = ours_to(backend, INGRID.address)
    later = THURSDAY + timedelta(hours=2)
    assert run_main(["--config", str(config), "once", "--now", later.isoformat()]) == 0
    return first, ours_to(backend, INGRID.address)


def test_microsoft_365_sent_items_decide_the_language(tmp_path: Path) -> None:
    with FakeGraph(tmp_path) as fake:
        backend = GraphBackend(fake)
        fake.add_sent(
            two_weeks.RECRUITER.address,
            INGRID.address,
            MONDAY - timedelta(days=3),
            subject="Søknaden din",
            body=INGRID.sent + "\n\nOn Fri, 4 Dec 2026, Ingrid Dahl wrote:\n> Hej Lisa! Tack!",
        )
        first, both = run_twice(backend, tmp_path)
        reads = [
            r
            for r in fake.graph_requests()
            if "sentitems" in r.path and "bodyPreview" in r.query.get("$select", [""])[0]
        ]
    assert len(first) == 1 and len(both) == 2, "a welcome, then a thank-you"
    for text in both:
        assert detect_language(text, LANGUAGES) == "nb", text
    assert len(reads) == 1, "read once for the candidate, not once per pass"
    assert all(r.query["$search"] == [f'"recipients:{INGRID.address}"'] for r in reads)


def test_gmail_sent_mail_decides_the_language(tmp_path: Path) -> None:
    fake = GoogleFake().start()
    try:
        backend = GoogleBackend(fake, tmp_path)
        fake.add_sent(
            two_weeks.RECRUITER.address,
            INGRID.address,
            MONDAY - timedelta(days=3),
            subject="Søknaden din",
            body=INGRID.sent + "\n\nDen 4. des. 2026 skrev Ingrid Dahl:\n> Hej Lisa! Tack!\n",
        )
        first, both = run_twice(backend, tmp_path)
        searches = [
            r
            for r in fake.api_requests("gmail")
            if "in:sent" in r.query.get("q", [""])[0] and "to:" in r.query.get("q", [""])[0]
        ]
    finally:
        fake.stop()
    assert len(first) == 1 and len(both) == 2, "a welcome, then a thank-you"
    for text in both:
        assert detect_language(text, LANGUAGES) == "nb", text
    assert len(searches) == 1, "read once for the candidate, not once per pass"


def test_imap_sent_folder_gives_the_recruiter_s_own_words(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """A real IMAP server's Sent: an HTML-and-text reply above the candidate's quoted mail."""
    backend = DovecotMailbox(dovecot, tmp_path)
    try:
        mail = email.message.EmailMessage()
        mail["From"] = two_weeks.RECRUITER.address
        mail["To"] = f"{INGRID.name} <{INGRID.address}>"
        mail["Subject"] = "Re: Søknaden din"
        mail["Date"] = "Fri, 04 Dec 2026 10:00:00 +0100"
        quoted = (
            "\n\nDen 3. des. 2026 skrev Ingrid Dahl:\n> Hej Lisa! Tack för att du hörde av dig.\n"
        )
        mail.set_content(INGRID.sent + quoted)
        mail.add_alternative(
            f"<p>{INGRID.sent}</p><blockquote>Hej Lisa! Tack!</blockquote>", "html"
        )
        with backend.client() as client:
            client.append("Sent", bytes(mail), flags=(b"\\Seen",))
        sink = backend.sink()
        since = MONDAY - timedelta(days=30)
        text = sink.last_sent_text(INGRID.address, since)
        assert text is not None and text.startswith("Hei Ingrid!")
        assert "Tack" not in text and detect_language(text, LANGUAGES) == "nb"
        assert sink.last_sent_text("someone.else@example.com", since) is None
        assert sink.last_sent_text(INGRID.address, MONDAY) is None  # nothing since Monday
    finally:
        backend.close()
