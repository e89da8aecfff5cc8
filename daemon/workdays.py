"""Working days, days off and holiday runs in the recruiter's time zone (pure: no clock, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import holidays as holidays_lib

# Days that are not official public holidays but on which Swedish workplaces close.
_DE_FACTO_CATEGORY = "de_facto"

# Which holiday a run of days off is "about", by the English name the holidays package gives.
_HOLIDAY_KEYS = (
    ("christmas", "christmas"),
    ("midsummer", "midsummer"),
    ("new year", "new_year"),
    ("easter", "easter"),
    ("good friday", "easter"),
    ("ascension", "ascension"),
    ("whit", "pentecost"),
    ("pentecost", "pentecost"),
    ("national day", "national_day"),
    ("may day", "may_day"),
    ("all saints", "all_saints"),
    ("epiphany", "epiphany"),
)


@dataclass(frozen=True)
class Holiday:
    """A named public holiday: ``key`` is language-neutral, ``names`` per language."""

    day: date
    key: str
    names: dict[str, str]


@dataclass(frozen=True)
class HolidayRun:
    """A run of consecutive days off containing at least one public holiday."""

    first_day: date
    last_day: date
    holiday: Holiday

    @property
    def length(self) -> int:
        return (self.last_day - self.first_day).days + 1


class WorkCalendar:
    """Which days are working days for a company: weekends, public holidays, eves, closures."""

    def __init__(self, country: str, zone: ZoneInfo, closure_days: Iterable[date] = ()) -> None:
        self.country = country.upper()
        self.zone = zone
        self.closure_days = frozenset(closure_days)
        self._years: set[int] = set()
        self._days_off: dict[date, Holiday] = {}

    def _load(self, year: int) -> None:
        if year in self._years:
            return
        self._years.add(year)
        names: dict[str, dict[date, str]] = {}
        for language in ("en_US", "sv"):
            try:
                table = holidays_lib.country_holidays(
                    self.country, years=year, language=language, categories=self._categories
                )
            except NotImplementedError:
                continue
            names[language[:2]] = dict(table.items())
        for day, english in names.get("en", {}).items():
            key = next((k for needle, k in _HOLIDAY_KEYS if needle in english.lower()), "other")
            per_language = {lang: table[day] for lang, table in names.items() if day in table}
            self._days_off[day] = Holiday(day=day, key=key, names=per_language)

    @cached_property
    def _categories(self) -> tuple[str, ...]:
        try:
            supported = holidays_lib.country_holidays(self.country).supported_categories
        except NotImplementedError:
            return ("public",)
        return tuple(c for c in ("public", _DE_FACTO_CATEGORY) if c in supported)

    def holiday(self, day: date) -> Holiday | None:
        """The public holiday (or de-facto day off such as Midsommarafton) on ``day``, if any."""
        self._load(day.year)
        return self._days_off.get(day)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.closure_days and self.holiday(day) is None

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        day += timedelta(days=1)
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def add_working_days(self, day: date, count: int) -> date:
        """The working day ``count`` working days after ``day`` (``day`` itself need not be one)."""
        for _ in range(count):
            day = self.next_working_day(day)
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in [start, end)."""
        count = 0
        day = start
        while day < end:
            count += self.is_working_day(day)
            day += timedelta(days=1)
        return count

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def at(self, day: date, clock: time) -> datetime:
        """``clock`` on ``day`` in this calendar's zone (a time in a DST gap moves forward)."""
        naive = datetime.combine(day, clock)
        aware = naive.replace(tzinfo=self.zone)
        # Round-trip through UTC normalises a non-existent wall time (the spring-forward gap).
        return aware.astimezone(ZoneInfo("UTC")).astimezone(self.zone)

    def end_of_day(self, day: date) -> datetime:
        return self.at(day + timedelta(days=1), time(0, 0))

    def holiday_run_after(self, day: date, min_days_off: int) -> HolidayRun | None:
        """The run of days off that starts right after working day ``day``, if it is long enough
        and contains a public holiday."""
        if not self.is_working_day(day):
            return None
        first = day + timedelta(days=1)
        last = first
        named: Holiday | None = None
        while not self.is_working_day(last):
            found = self.holiday(last)
            if found is not None and (named is None or _more_telling(found, named)):
                named = found
            last += timedelta(days=1)
        last -= timedelta(days=1)
        if named is None or (last - first).days + 1 < min_days_off:
            return None
        return HolidayRun(first_day=first, last_day=last, holiday=named)


def _more_telling(candidate: Holiday, current: Holiday) -> bool:
    """Prefer the holiday people greet for: Christmas over Boxing Day, Midsummer over its eve."""
    return current.key == "other" and candidate.key != "other"
