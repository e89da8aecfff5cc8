"""Public holidays and eves for each supported country (``company.country``): which days are off,
what the holiday is called in the country's language, and the runs a holiday greeting is for;
days off kept on disk are the days the holidays package gives."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from recruitmail.daemon.workdays import DaysOffTables, Holiday, WorkCalendar, tables_kept_in

ZONES = {
    "SE": "Europe/Stockholm",
    "NO": "Europe/Oslo",
    "DK": "Europe/Copenhagen",
    "FI": "Europe/Helsinki",
    "DE": "Europe/Berlin",
}
LOCAL_LANGUAGE = {"SE": "sv", "NO": "nb", "DK": "da", "FI": "fi", "DE": "de"}


def calendar(country: str, subdivision: str | None = None) -> WorkCalendar:
    return WorkCalendar(country, ZoneInfo(ZONES[country]), subdivision=subdivision)


# (country, day, is it a day off, greeting key or None, the name in the country's language or None)
DAYS = [
    # Norway: 17 May is the national day; skjærtorsdag is off; julaften and nyttårsaften are not
    # in the package but offices close.
    ("NO", date(2026, 5, 17), True, "national_day", "Grunnlovsdag"),
    ("NO", date(2026, 4, 2), True, "easter", "Skjærtorsdag"),
    ("NO", date(2026, 12, 24), True, "christmas", "Julaften"),
    ("NO", date(2026, 12, 31), True, "new_year", "Nyttårsaften"),
    ("NO", date(2026, 12, 23), False, None, None),
    ("NO", date(2026, 6, 19), False, None, None),  # no midsummer eve off in Norway
    # Denmark: Grundlovsdag and 1 May are half days (working days here); the eves are off;
    # Store Bededag (the fourth Friday after Easter, 1 May 2026) was abolished from 2024.
    ("DK", date(2026, 6, 5), False, None, None),
    ("DK", date(2026, 5, 1), False, None, None),
    ("DK", date(2027, 4, 23), False, None, None),  # would have been Store Bededag
    ("DK", date(2026, 12, 24), True, "christmas", "Juleaftensdag"),
    ("DK", date(2026, 12, 31), True, "new_year", "Nytårsaften"),
    ("DK", date(2026, 4, 2), True, "easter", "Skærtorsdag"),
    # Finland: juhannusaatto and jouluaatto are off; flag days such as Runeberg's are not.
    ("FI", date(2026, 6, 19), True, "midsummer", "Juhannusaatto"),
    ("FI", date(2026, 12, 24), True, "christmas", "Jouluaatto"),
    ("FI", date(2027, 12, 6), True, "national_day", "Itsenäisyyspäivä"),
    ("FI", date(2026, 5, 1), True, "may_day", "Vappu"),
    ("FI", date(2026, 2, 5), False, None, None),  # Runebergin päivä
    ("FI", date(2026, 12, 31), False, None, None),  # uudenvuodenaatto is a working day
    # Germany, nationwide: 3 October; Heiligabend and Silvester are off; Fronleichnam is not.
    ("DE", date(2026, 10, 3), True, "national_day", "Tag der Deutschen Einheit"),
    ("DE", date(2026, 12, 24), True, "christmas", "Heiligabend"),
    ("DE", date(2026, 12, 31), True, "new_year", "Silvester"),
    ("DE", date(2026, 5, 25), True, "pentecost", "Pfingstmontag"),
    ("DE", date(2026, 6, 4), False, None, None),  # Fronleichnam: only in some states
    ("DE", date(2026, 4, 2), False, None, None),  # Gründonnerstag is a working day
    # Sweden stays as it was.
    ("SE", date(2026, 6, 19), True, "midsummer", "Midsommarafton"),
    ("SE", date(2026, 6, 6), True, "national_day", "Nationaldagen"),
]


@pytest.mark.parametrize(("country", "day", "off", "key", "name"), DAYS)
def test_days_off_per_country(
    country: str, day: date, off: bool, key: str | None, name: str | None
) -> None:
    work = calendar(country)
    assert work.is_working_day(day) is not off or day.weekday() >= 5
    holiday = work.holiday(day)
    if key is None:
        assert holiday is None
    else:
        assert holiday is not None
        assert holiday.key == key
        assert holiday.names[LOCAL_LANGUAGE[country]] == name
        assert holiday.names["en"]  # every holiday has an English name too


# (country, last working day, (first day off, last day off, greeting key))
RUNS = [
    ("NO", date(2026, 12, 23), (date(2026, 12, 24), date(2026, 12, 27), "christmas")),
    ("NO", date(2026, 4, 1), (date(2026, 4, 2), date(2026, 4, 6), "easter")),
    ("NO", date(2026, 5, 13), None),  # Kristi himmelfartsdag alone
    ("DK", date(2026, 12, 23), (date(2026, 12, 24), date(2026, 12, 27), "christmas")),
    ("DK", date(2026, 6, 4), None),  # Grundlovsdag is a half day, then a plain weekend
    ("FI", date(2026, 6, 18), (date(2026, 6, 19), date(2026, 6, 21), "midsummer")),
    ("FI", date(2026, 12, 30), None),  # uudenvuodenaatto is a working day
    ("DE", date(2026, 12, 23), (date(2026, 12, 24), date(2026, 12, 27), "christmas")),
    ("DE", date(2026, 4, 2), (date(2026, 4, 3), date(2026, 4, 6), "easter")),
]


@pytest.mark.parametrize(("country", "day", "expected"), RUNS)
def test_holiday_runs_per_country(
    country: str, day: date, expected: tuple[date, date, str] | None
) -> None:
    run_ = calendar(country).holiday_run_after(day, 3)
    got = None if run_ is None else (run_.first_day, run_.last_day, run_.holiday.key)
    assert got == expected


def test_a_german_state_adds_its_own_holidays() -> None:
    bavaria = calendar("DE", "BY")
    assert not bavaria.is_working_day(date(2026, 6, 4))  # Fronleichnam
    assert bavaria.holiday(date(2026, 6, 4)).names["de"] == "Fronleichnam"  # type: ignore[union-attr]
    assert not bavaria.is_working_day(date(2027, 11, 1))  # Allerheiligen, a Monday
    assert calendar("DE").is_working_day(date(2027, 11, 1))


def test_an_unknown_subdivision_is_named_not_ignored() -> None:
    with pytest.raises(ValueError, match="no subdivision 'XX'.*BY"):
        calendar("DE", "XX").holiday(date(2026, 1, 1))


def test_finnish_holidays_have_swedish_names_too() -> None:
    # Finland's Swedish-speaking candidates get "Midsommarafton", not the Finnish name.
    eve = calendar("FI").holiday(date(2026, 6, 19))
    assert eve is not None and eve.names["sv"] == "Midsommarafton"


def test_a_holiday_is_never_named_in_a_language_the_country_does_not_offer() -> None:
    unity = calendar("DE").holiday(date(2026, 10, 3))
    assert unity is not None and set(unity.names) == {"en", "de"}


# --- days off kept on disk between processes ----------------------------------------------------

KEPT = [("SE", None), ("NO", None), ("DK", None), ("FI", None), ("DE", None), ("DE", "BY")]


def days_off(work: WorkCalendar, year: int) -> dict[date, Holiday]:
    """Every day off of ``year`` that is a holiday, as the calendar sees it."""
    found = {}
    day = date(year, 1, 1)
    while day.year == year:
        holiday = work.holiday(day)
        if holiday is not None:
            found[day] = holiday
        day += timedelta(days=1)
    return found


@pytest.mark.parametrize(("country", "subdivision"), KEPT)
def test_kept_days_off_are_the_days_worked_out(
    tmp_path: Path, country: str, subdivision: str | None
) -> None:
    tables = DaysOffTables(tmp_path)
    worked_out = WorkCalendar(country, ZoneInfo(ZONES[country]), subdivision=subdivision)
    first = WorkCalendar(country, ZoneInfo(ZONES[country]), subdivision=subdivision, tables=tables)
    # The first calendar works each year out and keeps it; the next one reads it back.
    for year in (2026, 2027):
        assert days_off(first, year) == days_off(worked_out, year)
    assert len(list(tmp_path.glob(f"days-off-{country}-*.json"))) == 2
    again = WorkCalendar(country, ZoneInfo(ZONES[country]), subdivision=subdivision, tables=tables)
    for year in (2026, 2027):
        assert days_off(again, year) == days_off(worked_out, year)


def test_a_kept_table_is_what_the_next_calendar_uses(tmp_path: Path) -> None:
    tables = DaysOffTables(tmp_path)
    assert calendar_with(tables).holiday(date(2026, 6, 19)) is not None  # midsommarafton
    (entry,) = tmp_path.glob("days-off-SE-*-2026-*.json")
    kept = json.loads(entry.read_text(encoding="utf-8"))
    kept["days"] = [day for day in kept["days"] if day[0] != "2026-06-19"]
    entry.write_text(json.dumps(kept), encoding="utf-8")

    # Read back, not worked out again: the day taken out of the entry is a working day now.
    assert calendar_with(tables).is_working_day(date(2026, 6, 19))
    assert calendar_with(None).holiday(date(2026, 6, 19)) is not None


@pytest.mark.parametrize(
    "damage",
    [b"", b"{not json", b'{"days": 3}', b'{"days": [["2026-13-45", "x", {}]]}',
     b'{"days": [["2027-01-01", "new_year", {"en": "New Year"}]]}',
     b'{"days": [["2026-01-01", "new_year", {"en": 1}]]}'],
)  # fmt: skip
def test_a_damaged_entry_is_worked_out_again_and_replaced(tmp_path: Path, damage: bytes) -> None:
    tables = DaysOffTables(tmp_path)
    expected = days_off(calendar_with(tables), 2026)
    (entry,) = tmp_path.glob("days-off-SE-*-2026-*.json")
    entry.write_bytes(damage)
    assert days_off(calendar_with(tables), 2026) == expected
    assert json.loads(entry.read_bytes())["year"] == 2026


def test_a_place_that_cannot_keep_tables_costs_nothing(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    work = calendar_with(DaysOffTables(not_a_directory))
    assert work.holiday(date(2026, 12, 24)) is not None
    assert not list(tmp_path.glob("**/*.tmp"))


def test_each_subdivision_has_its_own_entry_and_a_wrong_one_is_still_refused(
    tmp_path: Path,
) -> None:
    tables = DaysOffTables(tmp_path)
    bavaria = WorkCalendar("DE", ZoneInfo(ZONES["DE"]), subdivision="BY", tables=tables)
    nationwide = WorkCalendar("DE", ZoneInfo(ZONES["DE"]), tables=tables)
    assert not bavaria.is_working_day(date(2026, 6, 4))  # Fronleichnam
    assert nationwide.is_working_day(date(2026, 6, 4))
    assert len(list(tmp_path.glob("days-off-DE-*.json"))) == 2
    with pytest.raises(ValueError, match="no subdivision 'XX'"):
        WorkCalendar("DE", ZoneInfo(ZONES["DE"]), subdivision="XX", tables=tables).holiday(
            date(2026, 1, 1)
        )


def test_calendars_use_the_tables_of_the_block_they_are_made_in(tmp_path: Path) -> None:
    with tables_kept_in(tmp_path):
        inside = calendar("SE")
    outside = calendar("SE")
    assert inside.holiday(date(2026, 12, 24)) is not None
    assert outside.holiday(date(2026, 12, 24)) is not None
    assert len(list(tmp_path.glob("days-off-SE-*.json"))) == 1  # only the calendar inside


def calendar_with(tables: DaysOffTables | None) -> WorkCalendar:
    return WorkCalendar("SE", ZoneInfo(ZONES["SE"]), tables=tables)
