"""Working days, days off and holiday runs in the recruiter's time zone (no clock).

The days off of a year come from the holidays package, whose first use costs a process some
0.15 s (it imports every country's module). They are pure data, so a year once worked out can be
kept on disk (``DaysOffTables``, in the cache directory the command line chooses with
``tables_kept_in``) and read back in well under a millisecond; anything else is not I/O.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    import holidays as holidays_lib

log = logging.getLogger("recruitmail")

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


class DaysOffTables:
    """A year's days off per (country, subdivision), kept as small JSON files in ``directory``.

    An entry's name carries a digest of everything its content depends on: the holidays
    package's version, this module's code (the categories, eves and keys above) and the format,
    so an upgrade or an edit here is worked out afresh. Entries are written to a temporary file
    and renamed (two processes leave a whole one); one that cannot be read or is not what it
    should be is a miss, and one that cannot be written costs only the holidays package's time.
    The directory is the template cache's, which ``render.usable_cache_dir`` keeps private.
    """

    FORMAT = 1

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, country: str, subdivision: str | None, year: int) -> Path:
        key = f"{country}-{subdivision or ''}-{year}"
        digest = hashlib.sha256(f"{_code_fingerprint()}\0{key}".encode()).hexdigest()[:24]
        return self.directory / f"days-off-{key}-{digest}.json"

    def read(self, country: str, subdivision: str | None, year: int) -> dict[date, Holiday] | None:
        """The year's days off as kept, or None when there is no usable entry."""
        try:
            data = json.loads(self._path(country, subdivision, year).read_bytes())
            days: dict[date, Holiday] = {}
            for day, key, names in data["days"]:
                when = date.fromisoformat(day)
                if when.year != year or not isinstance(key, str) or not isinstance(names, dict):
                    return None
                if not all(isinstance(v, str) for v in names.values()):
                    return None
                days[when] = Holiday(day=when, key=key, names=dict(names))
            return days
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def write(
        self, country: str, subdivision: str | None, year: int, days: dict[date, Holiday]
    ) -> None:
        path = self._path(country, subdivision, year)
        body = json.dumps(
            {
                "format": self.FORMAT,
                "country": country,
                "subdivision": subdivision,
                "year": year,
                "days": [[d.isoformat(), h.key, h.names] for d, h in sorted(days.items())],
            },
            ensure_ascii=False,
        ).encode()
        try:
            handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(body)
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
            for earlier in self.directory.glob(f"days-off-{country}-{subdivision or ''}-{year}-*"):
                if earlier != path:
                    earlier.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("days off %s not kept: %s", path, exc)


@functools.cache
def _code_fingerprint() -> str:
    """The holidays package's version and this module's code, read without importing the package."""
    version = "unknown"
    spec = find_spec("holidays")
    if spec is not None and spec.origin is not None:
        with contextlib.suppress(OSError):
            text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
            found = re.search(r"__version__\s*=\s*[\"']([^\"']+)[\"']", text)
            version = found.group(1) if found else "unknown"
    own = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return f"{DaysOffTables.FORMAT}\0{version}\0{own}"


_kept_tables: DaysOffTables | None = None


@contextlib.contextmanager
def tables_kept_in(directory: Path | None) -> Iterator[None]:
    """Within this block, calendars keep worked-out days off in ``directory`` (None: nowhere).

    The command line opens it once it knows the cache directory, around the pass; a
    ``WorkCalendar`` given its own ``tables`` uses those instead.
    """
    global _kept_tables
    earlier, _kept_tables = _kept_tables, DaysOffTables(directory) if directory else None
    try:
        yield
    finally:
        _kept_tables = earlier


class WorkCalendar:
    """Which days are working days for a company: weekends, public holidays, eves, closures."""

    def __init__(
        self,
        country: str,
        zone: ZoneInfo,
        closure_days: Iterable[date] = (),
        subdivision: str | None = None,
        *,
        tables: DaysOffTables | None = None,
    ) -> None:
        self.country = country.upper()
        # A state or region whose own holidays count too (Germany's Länder: "BY" adds
        # Fronleichnam and Allerheiligen); None keeps the nationwide holidays only.
        self.subdivision = subdivision or None
        self.zone = zone
        self.closure_days = frozenset(closure_days)
        self.tables = tables if tables is not None else _kept_tables
        self._years: set[int] = set()
        self._days_off: dict[date, Holiday] = {}

    def _load(self, year: int) -> None:
        if year in self._years:
            return
        kept = self.tables.read(self.country, self.subdivision, year) if self.tables else None
        if kept is None:
            kept = self._work_out(year)
            if self.tables is not None:
                self.tables.write(self.country, self.subdivision, year, kept)
        self._days_off.update(kept)
        self._years.add(year)

    def _work_out(self, year: int) -> dict[date, Holiday]:
        """The year's days off from the holidays package (see ``_DAYS_OFF`` and ``_EVES``)."""
        import holidays as holidays_lib  # here: ~0.15 s that only commands which plan need

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
        days: dict[date, Holiday] = {}
        for day, english in names.get("en", {}).items():
            key = next((k for needle, k in _HOLIDAY_KEYS if needle in english.lower()), "other")
            per_language = {lang: table[day] for lang, table in names.items() if day in table}
            days[day] = Holiday(day=day, key=key, names=per_language)
        return days

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
