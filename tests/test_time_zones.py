"""The company's calendar as candidates see it: its own name for its time zone, the candidate's
own time when they are abroad, and its region's public holidays.

The same interviews are booked through an ICS file and through the fake Microsoft 365 tenant
(whose mailbox keeps a Windows zone name that maps to another country's city) and drafted by the
real ``recruitmail once``: every mail names the zone the same way, "svensk tid" / "Swedish
time", and a candidate at an Irish address meeting online also reads the time in Ireland.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from email.message import Message
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from recruitmail import connectors
from recruitmail.daemon.cli import main
from recruitmail.daemon.compose import candidate_zone, zone_name
from recruitmail.daemon.runtime import open_runner, validate
from recruitmail.daemon.settings import load_settings
from recruitmail.daemon.state import State
from recruitmail.daemon.workdays import WorkCalendar
from tests.fakes.graph import FakeGraph
from tests.scenario.default_backend import IcsMaildirBackend
from tests.scenario.graph_backend import USER, GraphBackend
from tests.scenario.runner import write_config
from tests.scenario.spec import EventSpec, Who

STOCKHOLM = ZoneInfo("Europe/Stockholm")
RECRUITER = Who(USER, "Lisa Ek")
MONDAY = datetime(2026, 12, 7, 9, 0, tzinfo=STOCKHOLM)
THURSDAY = datetime(2026, 12, 10, 14, 0, tzinfo=STOCKHOLM)

ANNA = Who("anna.berg@example.se", "Anna Berg")  # in Sweden
LIAM = Who("liam.murphy@example.ie", "Liam Murphy")  # in Ireland, meets online
AOIFE = Who("aoife.byrne@example.ie", "Aoife Byrne")  # in Ireland, comes to the office

INTERVIEWS = (
    EventSpec(
        "tz-anna@test",
        "Intervju: Anna Berg",
        THURSDAY,
        THURSDAY + timedelta(hours=1),
        RECRUITER,
        (RECRUITER, ANNA),
        body="Agenda:\n- Vi berättar om teamet och rollen\n- Dina frågor till oss",
        location="Storgatan 12, Umeå",
    ),
    EventSpec(
        "tz-liam@test",
        "Interview: Liam Murphy (Product Designer)",
        THURSDAY + timedelta(hours=2),
        THURSDAY + timedelta(hours=3),
        RECRUITER,
        (RECRUITER, LIAM),
        body="Agenda:\n- We introduce the team and the role\n- Your questions for us",
    ),
    EventSpec(
        "tz-aoife@test",
        "Interview: Aoife Byrne (Product Designer)",
        THURSDAY - timedelta(hours=4),
        THURSDAY - timedelta(hours=3),
        RECRUITER,
        (RECRUITER, AOIFE),
        body="Agenda:\n- We introduce the team and the role\n- Your questions for us",
        location="Storgatan 12, Umeå",
    ),
)
TIME_LINE = re.compile(r"\d\d[:.]\d\d–\d\d[:.]\d\d[^\n]*")


def text_of(message: Message) -> str:
    part = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    assert part is not None
    return str(part.get_content())


def zone_lines(backend: IcsMaildirBackend | GraphBackend, root: Path) -> dict[str, list[str]]:
    """Book the interviews, run one pass on Monday, and read each candidate's time line."""
    for spec in INTERVIEWS:
        backend.put(spec)
    config = write_config(backend, root)
    assert main(["--config", str(config), "once", "--now", MONDAY.isoformat()]) == 0
    lines: dict[str, list[str]] = {}
    for message in backend.messages():
        to = message["To"].addresses[0].addr_spec
        lines[to] = TIME_LINE.findall(text_of(message))
    return lines


@pytest.fixture(scope="module")
def from_ics(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    root = tmp_path_factory.mktemp("zones-ics")
    return zone_lines(IcsMaildirBackend(root), root)


@pytest.fixture(scope="module")
def from_graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    if "microsoft" not in connectors.PROVIDERS:
        pytest.skip('the provider registry has no "microsoft" line')
    root = tmp_path_factory.mktemp("zones-graph")
    with FakeGraph(root) as fake:
        backend = GraphBackend(fake)
        # Outlook's name for Stockholm's clock when the mailbox was set up from Paris or
        # Copenhagen: it maps to Europe/Paris, whose city name the mails used to carry.
        fake.add_mailbox(USER, RECRUITER.name, time_zone="Romance Standard Time")
        return zone_lines(backend, root)


def test_the_candidate_sees_the_company_s_name_for_its_zone(from_ics: dict[str, list[str]]) -> None:
    assert from_ics[ANNA.address] == ["14:00–15:00, svensk tid (CET)"]
    assert from_ics[AOIFE.address] == ["10:00–11:00 Swedish time (CET)"]


def test_a_candidate_abroad_meeting_online_sees_both_times(
    from_ics: dict[str, list[str]],
) -> None:
    assert from_ics[LIAM.address] == ["16:00–17:00 Swedish time (15:00–16:00 Irish time)"]


def test_the_same_interview_from_ics_and_from_microsoft_365_reads_the_same(
    from_ics: dict[str, list[str]], from_graph: dict[str, list[str]]
) -> None:
    assert from_graph == from_ics


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("liam@example.ie", "IE"),
        ("sam@example.co.uk", "GB"),
        ("aino@example.fi", "FI"),
        ("jonas@example.de", None),  # the same clock as Stockholm's: nothing to add
        ("anna@example.se", None),  # at home
        ("kim@example.com", None),  # a domain that tells no country
        ("tom@example.io", None),  # a country domain used worldwide
        ("eva@example.nu", None),
        ("ana@example.es", None),  # Spain's domain also serves the Canaries, an hour apart
        ("rui@example.pt", None),  # Portugal's also serves the Azores
    ],
)
def test_the_candidate_s_zone_only_when_their_address_tells_it_reliably(
    address: str, expected: str | None
) -> None:
    calendar = WorkCalendar("SE", STOCKHOLM)
    found = candidate_zone(address, calendar, THURSDAY, "en")
    assert (found[1] if found else None) == expected


def test_a_late_interview_names_the_candidate_s_day_when_it_is_another_day_there() -> None:
    calendar = WorkCalendar("SE", STOCKHOLM)
    late = datetime(2026, 12, 10, 21, 0, tzinfo=STOCKHOLM)
    zone, country = candidate_zone("priya@example.in", calendar, late, "en") or (None, "")
    assert country == "IN" and zone is not None
    from recruitmail.daemon.compose import _Formatter

    shown = _Formatter("en", calendar).candidate_time(
        late, late + timedelta(hours=1), zone, country
    )
    assert shown == "Friday 11 December 01:30–02:30 Indian time"


@pytest.mark.parametrize(
    ("language", "summer", "winter"),
    [
        ("sv", "svensk tid", "svensk tid"),
        ("de", "schwedische Zeit", "schwedische Zeit"),
        ("fi", "Ruotsin aikaa", "Ruotsin aikaa"),
    ],
)
def test_every_provider_s_name_for_stockholm_s_clock_reads_as_the_company_s(
    language: str, summer: str, winter: str
) -> None:
    for zone in ("Europe/Stockholm", "Europe/Berlin", "Europe/Paris", "Europe/Copenhagen"):
        for moment, expected in (
            (datetime(2026, 6, 4, 10, 0), summer),
            (datetime(2026, 12, 4, 10, 0), winter),
        ):
            local = moment.replace(tzinfo=ZoneInfo(zone))
            assert zone_name(ZoneInfo(zone), local, "SE", language) == expected
    helsinki = datetime(2026, 12, 4, 10, 0, tzinfo=ZoneInfo("Europe/Helsinki"))
    assert zone_name(ZoneInfo("Europe/Helsinki"), helsinki, "SE", "en") == "Finnish time"


# -- the company's region ----------------------------------------------------------------------


def config_in(tmp_path: Path, region: str | None) -> Path:
    backend = IcsMaildirBackend(tmp_path)
    path = write_config(backend, tmp_path)
    company = 'country = "DE"\ntime_zone = "Europe/Berlin"\n'
    if region is not None:
        company += f'subdivision = "{region}"\n'
    text = path.read_text(encoding="utf-8")
    text = text.replace('country = "SE"\ntime_zone = "Europe/Stockholm"\n', company)
    assert company in text
    path.write_text(text, encoding="utf-8")
    return path


def test_check_refuses_an_unknown_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_in(tmp_path, "Bayern")
    assert main(["--config", str(config), "check"]) != 0
    said = capsys.readouterr()
    assert "company.subdivision = 'Bayern' is not a region of DE: write \"BY\"" in said.err


def test_a_bavarian_company_has_fronleichnam_off(tmp_path: Path) -> None:
    corpus_christi = date(2026, 6, 4)
    days_off = {}
    for region in ("BY", None):
        where = tmp_path / (region or "national")
        where.mkdir()
        settings = load_settings(config_in(where, region))
        renderer = validate(settings)
        state = State(":memory:")
        try:
            with open_runner(settings, 0, state, renderer) as runner:
                calendar = runner.calendar()
                days_off[region] = calendar.holiday(corpus_christi)
                assert calendar.is_working_day(corpus_christi) is (region is None)
        finally:
            state.close()
    bavarian = days_off["BY"]
    assert bavarian is not None and bavarian.names["de"] == "Fronleichnam"
    assert days_off[None] is None
