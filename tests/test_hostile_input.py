"""Hostile and odd calendar data, through the whole pipeline (ICS file → CLI → Maildir drafts).

Each case: the service does not crash, and the event is either drafted correctly or skipped with
a logged reason; no header is ever injected.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from recruitmail.daemon.cli import main
from tests.scenario import two_weeks
from tests.scenario.default_backend import IcsMaildirBackend
from tests.scenario.runner import write_config
from tests.scenario.spec import STOCKHOLM, EventSpec, Moved, Who, at

RECRUITER = two_weeks.RECRUITER
NOW = at(date(2026, 12, 1), "09:00")  # a Tuesday
THURSDAY = date(2026, 12, 3)


def booking(candidate: Who, **extra: object) -> EventSpec:
    fields: dict[str, object] = {
        "uid": "hostile-1@nordljus.se",
        "subject": "Intervju",
        "start": at(THURSDAY, "14:00"),
        "end": at(THURSDAY, "15:00"),
        "organizer": RECRUITER,
        "attendees": (RECRUITER, two_weeks.PANEL, candidate),
    }
    fields.update(extra)
    return EventSpec(**fields)  # type: ignore[arg-type]


class Pass:
    """One `recruitmail once` over a calendar holding the given events."""

    def __init__(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        *specs: EventSpec,
        now: datetime = NOW,
    ) -> None:
        self.backend = IcsMaildirBackend(tmp_path)
        for spec in specs:
            self.backend.put(spec)
        config = write_config(self.backend, tmp_path)
        self.code = main(["--config", str(config), "once", "--now", now.isoformat()])
        captured = capsys.readouterr()
        self.out, self.log = captured.out, captured.err
        self.drafts: list[EmailMessage] = self.backend.messages()  # type: ignore[assignment]

    def only(self) -> EmailMessage:
        assert len(self.drafts) == 1, self.log
        return self.drafts[0]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def assert_no_injected_headers(message: EmailMessage) -> None:
    assert message["Bcc"] is None
    assert len(message.get_all("To") or []) == 1
    assert len(message["To"].addresses) == 1
    for name, value in message.items():
        assert "\n" not in str(value) and "\r" not in str(value), name


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: x@evil.example",
        "=?UTF-8?Q?=0A?=Bcc: x@evil.example",
        "Eve\nBcc: x@evil.example\n",
    ],
)
def test_header_tricks_in_a_name_never_become_headers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    result = Pass(tmp_path, capsys, booking(Who("eve@example.com", name)))
    assert result.code == 0
    assert_no_injected_headers(result.only())


def test_header_tricks_in_the_subject_never_become_headers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = booking(
        Who("eve@example.com", "Eve"),
        subject="Intervju\r\nBcc: x@evil.example =?UTF-8?Q?=0A?=Bcc: y@evil",
    )
    result = Pass(tmp_path, capsys, spec)
    assert_no_injected_headers(result.only())


def test_template_syntax_in_calendar_text_is_shown_literally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = booking(
        Who("jinja@example.com", "{{ 7*7 }} Smith"),
        body="Agenda:\n- {% for x in range(10**9) %}loop{% endfor %}\n- {{ config }}\n",
    )
    message = Pass(tmp_path, capsys, spec).only()
    text = text_of(message)
    assert "{% for x in range(10**9) %}" in text and "{{ config }}" in text
    assert "49" not in text


def test_markup_in_names_is_escaped_in_html_and_plain_in_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = booking(
        Who("obrien@example.com", "Seán O'Brien <script>alert(1)</script>"),
        body="Agenda:\n- Vi pratar om <b>O'Brien & Co</b>\n",
    )
    message = Pass(tmp_path, capsys, spec).only()
    html, text = html_of(message), text_of(message)
    assert "<script>" not in html and "&lt;b&gt;" in html
    assert "O'Brien & Co" in text and "<b>O'Brien & Co</b>" in text
    assert "Hej Seán" in text


def test_decomposed_and_composed_swedish_letters_are_one_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decomposed = unicodedata.normalize("NFD", "Åsa Öberg")
    message = Pass(tmp_path, capsys, booking(Who("asa@example.com", decomposed))).only()
    assert "Hej Åsa" in text_of(message)  # NFC in the mail
    assert unicodedata.normalize("NFD", "Åsa") not in text_of(message)


def test_right_to_left_override_is_stripped_from_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = Pass(
        tmp_path, capsys, booking(Who("rtl@example.com", "\u202eAnna\u202c Svensson"))
    ).only()
    assert "\u202e" not in text_of(message) and "\u202e" not in str(message["To"])
    assert "Hej Anna" in text_of(message)


def test_a_200_kb_description_is_drafted_with_bounded_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Just under the per-event budget (256 KiB); larger events are skipped by the source.
    body = "Agenda:\n- Presentation\n\n" + ("lorem ipsum " * 17_000)
    message = Pass(tmp_path, capsys, booking(Who("big@example.com", "Bo Big"), body=body)).only()
    assert len(message.as_bytes()) < 200_000


def test_an_event_without_attendees_is_skipped_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = booking(Who("x@example.com"), attendees=())
    result = Pass(tmp_path, capsys, spec)
    assert result.code == 0 and result.drafts == []
    assert "no candidate among the attendees" in result.log


def test_the_recruiter_listed_twice_is_one_recruiter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = booking(
        Who("twice@example.com", "Tove Twice"),
        attendees=(
            RECRUITER,
            Who(RECRUITER.address.upper(), "Lisa"),
            Who("twice@example.com", "Tove Twice"),
        ),
    )
    message = Pass(tmp_path, capsys, spec).only()
    assert message["To"].addresses[0].addr_spec == "twice@example.com"


def test_one_candidate_in_two_letter_cases_gets_one_welcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = booking(Who("Anna.Svensson@Example.COM", "Anna Svensson"))
    second = booking(
        Who("anna.svensson@example.com", "Anna Svensson"),
        uid="hostile-2@nordljus.se",
        start=at(date(2026, 12, 10), "10:00"),
        end=at(date(2026, 12, 10), "11:00"),
    )
    result = Pass(tmp_path, capsys, first, second)
    # One draft a day: the welcome now, the second interview's details the next day.
    assert len(result.drafts) == 1
    assert "Välkommen" in str(result.drafts[0]["Subject"])


def test_an_all_day_event_on_midsommarafton_is_not_an_interview(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    midsommarafton = date(2026, 6, 19)
    spec = booking(
        Who("m@example.com", "Mia"),
        all_day=True,
        start=at(midsommarafton, "00:00"),
        end=at(midsommarafton + timedelta(days=1), "00:00"),
    )
    result = Pass(tmp_path, capsys, spec, now=at(date(2026, 6, 17), "09:00"))
    assert result.code == 0 and result.drafts == []


@pytest.mark.parametrize(
    ("day", "clock"), [(date(2026, 3, 29), "02:30"), (date(2026, 10, 25), "02:30")]
)
def test_stockholm_times_in_the_dst_gap_and_overlap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], day: date, clock: str
) -> None:
    # Two hours by the wall clock: in the spring gap 02:30 does not exist and means 03:30 CEST.
    start = at(day, clock)
    spec = booking(Who("dst@example.com", "Dag Tid"), start=start, end=start + timedelta(hours=2))
    result = Pass(tmp_path, capsys, spec, now=at(day - timedelta(days=2), "09:00"))
    text = text_of(result.only())
    real_start = start.astimezone(UTC).astimezone(STOCKHOLM)
    assert f"{real_start:%H:%M}" in text
    assert ("CEST" in text) == (real_start.utcoffset() == timedelta(hours=2))


def test_a_series_with_a_moved_and_a_cancelled_occurrence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = at(THURSDAY, "14:00")
    spec = booking(
        Who("series@example.com", "Stina Serie"),
        rrule="FREQ=WEEKLY;COUNT=3",
        exdates=(first + timedelta(days=7),),
        moved=(
            Moved(
                first + timedelta(days=14),
                first + timedelta(days=15),
                first + timedelta(days=15, hours=1),
            ),
        ),
    )
    result = Pass(tmp_path, capsys, spec)
    assert result.code == 0
    assert "Välkommen" in str(result.only()["Subject"])
    assert "torsdag 3 december" in text_of(result.only())


def test_start_after_end_is_skipped_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = booking(
        Who("odd@example.com", "Odd"), start=at(THURSDAY, "15:00"), end=at(THURSDAY, "14:00")
    )
    result = Pass(tmp_path, capsys, spec)
    assert result.code == 0 and result.drafts == []
    assert "ends before it starts" in result.log or "skip" in result.log.lower()


def test_a_malformed_ics_file_fails_the_mailbox_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = IcsMaildirBackend(tmp_path)
    backend.ics.write_bytes(b"BEGIN:VCALENDAR\nTHIS IS NOT\x00 ICS\n")
    config = write_config(backend, tmp_path)
    code = main(["--config", str(config), "once", "--now", NOW.isoformat()])
    err = capsys.readouterr().err
    assert code == 1
    assert "lisa.ek@nordljus.se" in err and "Traceback" not in err


def test_no_candidate_name_or_address_in_logs_above_debug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = Pass(tmp_path, capsys, booking(Who("private.person@example.com", "Privat Person")))
    assert result.code == 0 and len(result.drafts) == 1
    assert "private.person" not in result.log and "Privat" not in result.log


def test_stale_zones_and_naive_now_are_handled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = Pass(
        tmp_path,
        capsys,
        booking(Who("z@example.com", "Zed")),
        now=datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM),
    )
    assert result.code == 0 and len(result.drafts) == 1


# --- a calendar anyone can write into ---------------------------------------------------------------

ATTACKER = Who("boss@evil.example", "Lisa Ek")
PHISHING = {
    "subject": "Intervju",
    "location": "Pay the 50 EUR booking fee at https://evil.example/pay",
    "online_url": "https://nordljus.se.login-verify.example/teams",
    "body": "Agenda:\n- Bring your BankID and personnummer\n",
}


def invitation(recruiter_answer: str) -> EventSpec:
    """An invitation from outside, with the recruiter's answer, a colleague under a made-up name
    and a candidate."""
    return booking(
        Who("anna@example.com", "Anna Svensson"),
        organizer=ATTACKER,
        attendees=(
            ATTACKER,
            Who(RECRUITER.address, RECRUITER.name, response=recruiter_answer),
            Who(two_weeks.PANEL.address, "Your new CEO"),
            Who("anna@example.com", "Anna Svensson", response="needs_action"),
        ),
        **PHISHING,
    )


def test_an_unanswered_invitation_from_outside_drafts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = Pass(tmp_path, capsys, invitation("needs_action"))
    assert result.code == 0
    assert result.drafts == []


def test_an_accepted_invitation_from_outside_drafts_without_its_links_and_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = Pass(tmp_path, capsys, invitation("accepted"))
    assert result.code == 0
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in result.drafts) == [
        "anna@example.com",
        "boss@evil.example",
    ]
    for message in result.drafts:
        for part in (text_of(message), html_of(message)):
            assert "evil.example/pay" not in part and "login-verify" not in part
            assert "Your new CEO" not in part
        assert "Erik Holm" in text_of(message)  # the directory's name for the colleague


@pytest.mark.parametrize(
    "subject",
    ["Kundsamtal Volvo", "Telefonsamtal med leverantör", "interview feedback process - audit"],
)
def test_meetings_that_merely_contain_the_word_draft_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], subject: str
) -> None:
    result = Pass(tmp_path, capsys, booking(Who("kund@volvo.example", "Kund"), subject=subject))
    assert result.code == 0 and result.drafts == []


def test_an_interview_with_fifty_outside_attendees_drafts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crowd = tuple(Who(f"guest{n}@example.com", f"Guest {n}") for n in range(50))
    result = Pass(tmp_path, capsys, booking(Who("x@example.com"), attendees=(RECRUITER, *crowd)))
    assert result.code == 0 and result.drafts == []


def test_right_to_left_overrides_never_reach_a_mail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rlo = "\u202e"
    spec = booking(
        Who("rtl@example.com", f"Anna {rlo}nossnevS"),
        location=f"Room 1{rlo}txt.exe",
        online_url=f"https://evil.example/{rlo}https://teams.microsoft.com",
        body=f"Agenda:\n- Intro {rlo}olleh\n",
    )
    message = Pass(tmp_path, capsys, spec).only()
    for part in (text_of(message), html_of(message), str(message["Subject"]), str(message["To"])):
        assert rlo not in part
    assert "Room 1 txt.exe" in text_of(message)
    assert "evil.example" not in text_of(message) and "evil.example" not in html_of(message)
