"""Public holidays and eves for each supported country (``company.country``): which days are off,
what the holiday is called in the country's language, and the runs a holiday greeting is for."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from recruitmail.daemon.workdays import WorkCalendar

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
