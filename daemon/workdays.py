"""Working days, days off and holiday runs in the recruiter's time zone (pure: no clock, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    import holidays as holidays_lib

# Which of the holidays package's categories count as days off, per country (``public`` elsewhere).
# An extra category may be narrowed to the days that are whole days off, by their English name:
# Denmark's "optional" category also holds 1 May and Grundlovsdag, which most offices only close
# in the afternoon (a half day is a working day here: the morning's mail still goes out).
# Finland's "workday" and "unofficial" categories are flag days people work on, so they stay out.
_DAYS_OFF: dict[str, tuple[tuple[str, frozenset[str] | None], ...]] = {
    "SE": (("public", None), ("de_facto", None)),  # midsommarafton, julafton, nyårsafton
    "DK": (("public", None), ("optional", frozenset({"christmas eve", "new year's eve"}))),
}

# Eves on which workplaces close that the package carries in no category for the country:
# julaften/nyttårsaften in Norway, Heiligabend/Silvester in Germany (TVöD § 6 (3) frees both days;
# most offices close). Finland's juhannusaatto and jouluaatto are in its "public" category.
_EVES: dict[str, tuple[tuple[int, int, dict[str, str]], ...]] = {
    "NO": (
        (12, 24, {"en": "Christmas Eve", "nb": "Julaften"}),
        (12, 31, {"en": "New Year's Eve", "nb": "Nyttårsaften"}),
    ),
    "DE": (
        (12, 24, {"en": "Christmas Eve", "de": "Heiligabend"}),
        (12, 31, {"en": "New Year's Eve", "de": "Silvester"}),
    ),
}

# Our language codes and the holidays package's names for them (Norwegian bokmål is "no").
_PACKAGE_LANGUAGES = {"en": "en_US", "sv": "sv", "nb": "no", "da": "da", "fi": "fi", "de": "de"}

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
    ("constitution day", "national_day"),  # Norway's 17 May, Denmark's Grundlovsdag
    ("independence day", "national_day"),  # Finland's 6 December
    ("german unity day", "national_day"),
    ("maundy thursday", "easter"),
    ("may day", "may_day"),
    ("labor day", "may_day"),
    ("workers' day", "may_day"),
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

    def __init__(
        self,
        country: str,
        zone: ZoneInfo,
        closure_days: Iterable[date] = (),
        subdivision: str | None = None,
    ) -> None:
        self.country = country.upper()
        # A state or region whose own holidays count too (Germany's Länder: "BY" adds
        # Fronleichnam and Allerheiligen); None keeps the nationwide holidays only.
        self.subdivision = subdivision or None
        self.zone = zone
        self.closure_days = frozenset(closure_days)
        self._years: set[int] = set()
        self._days_off: dict[date, Holiday] = {}

    def _load(self, year: int) -> None:
        if year in self._years:
            return
        self._years.add(year)
        import holidays as holidays_lib  # here: ~0.2 s that only commands which plan need

        names: dict[str, dict[date, str]] = {}
        for language, package_language in self._languages:
            table: dict[date, str] = {}
            for category, only in self._categories:
                found = holidays_lib.country_holidays(
                    self.country,
                    subdiv=self.subdivision,
                    years=year,
                    language=package_language,
                    categories=(category,),
                )
                for day, name in found.items():
                    if only is None or day in self._english_days(year, category, only):
                        table.setdefault(day, name)
            names[language] = table
        for month, day_of_month, eve_names in _EVES.get(self.country, ()):
            day = date(year, month, day_of_month)
            for language, table in names.items():
                if day not in table and language in eve_names:
                    table[day] = eve_names[language]
        for day, english in names.get("en", {}).items():
            key = next((k for needle, k in _HOLIDAY_KEYS if needle in english.lower()), "other")
            per_language = {lang: table[day] for lang, table in names.items() if day in table}
            self._days_off[day] = Holiday(day=day, key=key, names=per_language)

    def _english_days(self, year: int, category: str, wanted: frozenset[str]) -> set[date]:
        import holidays as holidays_lib  # see _load

        found = holidays_lib.country_holidays(
            self.country,
            subdiv=self.subdivision,
            years=year,
            language="en_US",
            categories=(category,),
        )
        return {day for day, name in found.items() if name.lower() in wanted}

    @cached_property
    def _supported(self) -> holidays_lib.HolidayBase | None:
        import holidays as holidays_lib  # see _load

        try:
            found = holidays_lib.country_holidays(self.country)
        except NotImplementedError:
            return None  # a country the package does not know: weekends and closures only
        if self.subdivision is not None and self.subdivision not in found.subdivisions:
            raise ValueError(
                f"{self.country} has no subdivision {self.subdivision!r}: "
                f"use one of {', '.join(found.subdivisions) or 'none'}"
            )
        return found

    @cached_property
    def _languages(self) -> tuple[tuple[str, str], ...]:
        """(our code, the package's code) for each language the package names this country's
        holidays in, English first; Finland's Swedish names are the package's ``sv_FI``."""
        if self._supported is None:
            return ()
        offered = set(self._supported.supported_languages)
        pairs = []
        for code, name in _PACKAGE_LANGUAGES.items():
            regional = f"{code}_{self.country}"
            if name in offered or regional in offered:
                pairs.append((code, name if name in offered else regional))
        return tuple(pairs)

    @cached_property
    def _categories(self) -> tuple[tuple[str, frozenset[str] | None], ...]:
        if self._supported is None:
            return ()
        offered = set(self._supported.supported_categories)
        wanted = _DAYS_OFF.get(self.country, (("public", None),))
        return tuple((category, only) for category, only in wanted if category in offered)

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
