"""Build the template variables for a planned mail (docs/TEMPLATES.md) and the draft around it.

Pure: every fact arrives as an argument. Dates and times are formatted for the mail's language
with Babel. Calendar text reaches templates only as data (the templates escape HTML), and only
after ``safe_context``: no control or bidi characters anywhere, no links in locations, agendas
and summaries, and a meeting link only for a known meeting host (``[links] meeting_hosts``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, get_timezone_name
from babel.units import format_unit

from recruitmail.contracts.models import DraftMessage, MailKind, Period, PersonInfo, Recipient
from recruitmail.daemon.interviews import (
    Interview,
    links_in,
    meeting_link,
    safe_text,
    usable_name,
    without_links,
)
from recruitmail.daemon.language import (
    LanguagePolicy,
    LanguageSignals,
    Reason,
    category_language,
    choose_language,
    clearly_other_language,
)
from recruitmail.daemon.planner import (
    PROMISE,
    PROMISE_LATE,
    PROMISE_MOVED_FROM,
    PROMISE_REPEAT,
    PlannedMail,
    back_day,
)
from recruitmail.daemon.samples import DAY_PATTERNS, TIME_PATTERNS
from recruitmail.daemon.settings import LANGUAGES, Mailbox, Settings, Stage
from recruitmail.daemon.workdays import Holiday, WorkCalendar

_LOCALES = {
    "sv": "sv_SE",
    "en": "en_GB",
    "nb": "nb_NO",
    "da": "da_DK",
    "fi": "fi_FI",
    "de": "de_DE",
}
_WHEN = {
    "sv": "EEEE d MMMM 'kl.' HH:mm",
    "en": "EEEE d MMMM 'at' HH:mm",
    "nb": "EEEE d. MMMM 'kl.' HH.mm",
    "da": "EEEE 'den' d. MMMM 'kl.' HH.mm",
    "fi": "EEEE d. MMMM 'klo' HH.mm",
    "de": "EEEE, d. MMMM, HH:mm 'Uhr'",
}
_STAGE_FALLBACK = {
    "sv": ["första intervjun", "andra intervjun", "tredje intervjun", "slutintervjun"],
    "en": ["first interview", "second interview", "third interview", "final interview"],
    "nb": ["første intervju", "andre intervju", "tredje intervju", "siste intervju"],
    "da": ["første samtale", "anden samtale", "tredje samtale", "sidste samtale"],
    "fi": [
        "ensimmäinen haastattelu",
        "toinen haastattelu",
        "kolmas haastattelu",
        "viimeinen haastattelu",
    ],
    "de": ["Erstes Kennenlernen", "Zweites Gespräch", "Drittes Gespräch", "Abschlussgespräch"],
}


@dataclass(frozen=True)
class Facts:
    """What the executor knows beyond the plan: interview order, absences, directory answers."""

    interview_number: int = 1
    absences: tuple[Period, ...] = ()
    directory: dict[str, PersonInfo] | None = None
    in_reply_to: str = ""
    language: str = ""  # the candidate's, as decided by ``decide_language``


def language_of(mail: PlannedMail, box: Mailbox, facts: Facts | None = None) -> str:
    """The language this mail is written in: the candidate's when decided, else the interview's
    category, else the recruiter's default."""
    if facts is not None and facts.language:
        return facts.language
    if mail.interview is not None and mail.interview.language:
        return mail.interview.language
    return box.language


_KEPT = {Reason.CATEGORY.value, Reason.CORRESPONDENCE.value, Reason.EVENT_TEXT.value}


def decide_language(
    mail: PlannedMail,
    box: Mailbox,
    settings: Settings,
    *,
    stored: str | None = None,
    remembered: tuple[str, str] | None = None,
    last_written: Callable[[], str | None] | None = None,
) -> tuple[str, Reason]:
    """The candidate's language and the signal that decided it (docs/TEMPLATES.md, "Languages").

    An explicit choice (the configuration's ``[languages]``, ``recruitmail language``) or the
    interview's category decides at once. Otherwise a language decided earlier from the
    candidate's own signals stays, so that one candidate's mails never change language; only
    then is the recruiter's last mail to the candidate read (``last_written``, called only
    here: a look-up in Sent mail), and after it the event's own text.
    """
    interview = mail.interview
    category = None
    text = ""
    if interview is not None:
        category = category_language(interview.event.categories, LANGUAGES) or interview.language
        text = f"{interview.event.subject}\n{interview.event.body[:4000]}"
    policy = LanguagePolicy(languages=LANGUAGES, default=box.language, overrides=settings.languages)
    signals = LanguageSignals(address=mail.candidate, stored=stored, category=category)
    language, reason = choose_language(signals, policy)
    if reason is not Reason.DEFAULT:
        return language, reason
    # A language read from the candidate's own signals stays; an explicit choice since withdrawn
    # (configuration, recruitmail language --clear) or the default does not.
    if remembered is not None and remembered[0] in LANGUAGES and remembered[1] in _KEPT:
        return remembered[0], Reason(remembered[1])
    written = (last_written() if last_written is not None else None) or ""
    return choose_language(replace(signals, last_written=written, event_text=text), policy)


def build_context(
    mail: PlannedMail,
    box: Mailbox,
    settings: Settings,
    calendar: WorkCalendar,
    now: datetime,
    facts: Facts,
) -> dict[str, Any]:
    """The variables docs/TEMPLATES.md promises every template."""
    language = language_of(mail, box, facts)
    fmt = _Formatter(language, calendar)
    interview = mail.interview
    candidate = interview.candidate if interview else None
    stage = _stage(settings, facts.interview_number)
    texts = settings.company.texts.get(language)  # never another language's texts
    promise = _promise(mail, calendar.local(now).date(), fmt)
    folded = mail.folded_kinds
    holiday = mail.holiday.holiday if mail.holiday else None
    folded_holiday = (
        _folded_holiday(mail, calendar, settings) if MailKind.HOLIDAY_GREETING in folded else None
    )
    absence = mail.absence or (
        _folded_absence(mail, facts) if MailKind.VACATION_NOTICE in folded else None
    )
    vacation = (
        _vacation(absence, facts.absences, box, settings, calendar, fmt, language)
        if absence
        else None
    )
    left_out: list[str] = []
    context = {
        "kind": mail.kind.value,
        "language": language,
        "candidate": {
            "first_name": candidate.first_name if candidate else "",
            "full_name": candidate.name if candidate else "",
            "address": mail.candidate,
        },
        "recruiter": {
            "name": box.name,
            "title": box.title_in(language),
            "phone": box.phone,
            "address": box.address,
            "signature": box.signature,
        },
        "company": {
            "name": settings.company.name,
            "careers_url": settings.company.careers_url,
            "history": texts.history if texts else "",
            "values": texts.values if texts else "",
            "culture": texts.culture if texts else "",
            "social": texts.social if texts else "",
            "development": texts.development if texts else "",
        },
        "interview": _interview(
            interview, mail, box, settings, fmt, language, stage, facts, left_out
        )
        if interview and _speaks_of_interview(mail.kind)
        else None,
        "next_steps": (stage.next_steps.get(language, "") if stage else ""),
        "decision_date": promise["date"],
        "decision_late": promise["late"],
        "decision_repeat": promise["repeat"],
        "decision_moved_from": promise["moved_from"],
        "holiday": _holiday(holiday, language) if holiday else None,
        "vacation": vacation if mail.kind is MailKind.VACATION_NOTICE else None,
        "also": {
            "weekend": MailKind.WEEKEND_GREETING in folded,
            "thank_you": MailKind.THANK_YOU in folded,
            "holiday": _holiday(folded_holiday, language) if folded_holiday else None,
            "vacation": vacation if MailKind.VACATION_NOTICE in folded else None,
        },
        # Why calendar data was kept out of this mail (for logs and status, not for the mail).
        "left_out": sorted(set(left_out)),
        # What the recruiter may want to add before sending (never shown to the candidate).
        "hints": _hints(mail),
    }
    cleaned: dict[str, Any] = safe_context(context)
    return cleaned


def safe_context(value: Any) -> Any:
    """``value`` with every string in it (however deeply nested) passed through ``safe_text``:
    whatever a template shows, no bidi override or control character reaches a mail."""
    if isinstance(value, str):
        return safe_text(value, multiline="\n" in value)
    if isinstance(value, dict):
        return {k: safe_context(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe_context(v) for v in value]
    return value


def build_message(
    mail: PlannedMail, box: Mailbox, subject: str, text: str, html: str, facts: Facts
) -> DraftMessage:
    name = usable_name(mail.interview.candidate.name) if mail.interview else ""
    return DraftMessage(
        key=mail.key,
        sender=Recipient(box.address, box.name),
        to=(Recipient(mail.candidate, name),),
        subject=subject,
        text=text,
        html=html,
        in_reply_to=facts.in_reply_to,
    )


SUMMARY_HINT = (
    'no summary of the conversation: a line starting with "Sammanfattning:" or "Summary:" '
    "in the interview's notes (the event's description) is quoted in the thank-you"
)


def _hints(mail: PlannedMail) -> list[str]:
    """Suggestions for the recruiter, kept out of the mail so that none can be sent by mistake."""
    hints = []
    if mail.kind is MailKind.THANK_YOU and mail.interview and not mail.interview.summary.strip():
        hints.append(SUMMARY_HINT)
    return hints


def _promise(mail: PlannedMail, today: date, fmt: _Formatter) -> dict[str, Any]:
    """What the mail says about the decision, from what the planner decided (``PROMISE``).

    Checked once more against the draft's own day: a day that is not ahead of it is never
    named (the mail then speaks without a date).
    """
    day = _day_after(mail.context.get(PROMISE), today)
    moved_from = _day_after(mail.context.get(PROMISE_MOVED_FROM), today)
    return {
        "date": fmt.day(day) if day else "",
        "late": bool(mail.context.get(PROMISE_LATE)),
        "repeat": bool(mail.context.get(PROMISE_REPEAT)) and day is not None,
        "moved_from": fmt.day(moved_from) if moved_from else "",
    }


def _day_after(value: Any, today: date) -> date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day if day > today else None


def _speaks_of_interview(kind: MailKind) -> bool:
    return kind in (
        MailKind.WELCOME,
        MailKind.INTERVIEW_DETAILS,
        MailKind.RESCHEDULE_NOTICE,
        MailKind.THANK_YOU,
        MailKind.STATUS_UPDATE,
        MailKind.WEEKEND_GREETING,
    )


class _Formatter:
    def __init__(self, language: str, calendar: WorkCalendar) -> None:
        self.language = language
        self.locale = _LOCALES.get(language, "en_GB")
        self.calendar = calendar

    def when(self, moment: datetime) -> str:
        return format_datetime(
            self.calendar.local(moment), _WHEN.get(self.language, _WHEN["en"]), locale=self.locale
        )

    def day(self, day: date) -> str:
        return format_date(day, DAY_PATTERNS.get(self.language, "EEEE d MMMM"), locale=self.locale)

    def time(self, moment: datetime) -> str:
        pattern = TIME_PATTERNS.get(self.language, "HH:mm")
        return format_datetime(self.calendar.local(moment), pattern, locale=self.locale)

    def zone(self, moment: datetime, *, short: bool = False) -> str:
        """The interview's zone as the company says it, in the mail's language: "svensk tid
        (CET)"; ``short`` leaves out the abbreviation (when a second zone follows)."""
        local = self.calendar.local(moment)
        name = zone_name(self.calendar.zone, local, self.calendar.country, self.language)
        return name if short else f"{name} ({_abbreviation(local, self.locale)})"

    def candidate_time(self, start: datetime, end: datetime, zone: ZoneInfo, country: str) -> str:
        """The interview's start and end in the candidate's zone, named: "13:00–14:00 irländsk
        tid" (with the day when it is another day there)."""
        there, until = start.astimezone(zone), end.astimezone(zone)
        pattern = TIME_PATTERNS.get(self.language, "HH:mm")
        times = (
            f"{format_datetime(there, pattern, locale=self.locale)}–"
            f"{format_datetime(until, pattern, locale=self.locale)}"
        )
        if self.language == "de":
            times += " Uhr"
        if there.date() != self.calendar.local(start).date():
            times = f"{self.day(there.date())} {times}"
        return f"{times} {_ZONE_NAMES[country][1][self.language]}"

    def duration(self, length: timedelta) -> str:
        return _duration(max(0, int(length.total_seconds() // 60)), self.locale)


@lru_cache(maxsize=512)
def _duration(minutes: int, locale: str) -> str:
    # A handful of lengths recur in every calendar; Babel's unit formatting is not cheap.
    hours, rest = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(format_unit(hours, "duration-hour", length="long", locale=locale))
    if rest or not hours:
        parts.append(format_unit(rest, "duration-minute", length="long", locale=locale))
    return " ".join(parts)


# -- time zones as people say them -----------------------------------------------------------------

# Country → its one time zone and how each mail language names it. Only countries with a single
# zone: a candidate's zone is guessed from their address's country domain, and a wrong second
# time is worse than none (Portugal's, Spain's and France's domains also serve islands in other
# zones).
_ZONE_NAMES: dict[str, tuple[str, dict[str, str]]] = {
    "SE": ("Europe/Stockholm", {"sv": "svensk tid", "en": "Swedish time", "nb": "svensk tid",
           "da": "svensk tid", "fi": "Ruotsin aikaa", "de": "schwedische Zeit"}),
    "NO": ("Europe/Oslo", {"sv": "norsk tid", "en": "Norwegian time", "nb": "norsk tid",
           "da": "norsk tid", "fi": "Norjan aikaa", "de": "norwegische Zeit"}),
    "DK": ("Europe/Copenhagen", {"sv": "dansk tid", "en": "Danish time", "nb": "dansk tid",
           "da": "dansk tid", "fi": "Tanskan aikaa", "de": "dänische Zeit"}),
    "FI": ("Europe/Helsinki", {"sv": "finsk tid", "en": "Finnish time", "nb": "finsk tid",
           "da": "finsk tid", "fi": "Suomen aikaa", "de": "finnische Zeit"}),
    "DE": ("Europe/Berlin", {"sv": "tysk tid", "en": "German time", "nb": "tysk tid",
           "da": "tysk tid", "fi": "Saksan aikaa", "de": "deutsche Zeit"}),
    "IS": ("Atlantic/Reykjavik", {"sv": "isländsk tid", "en": "Icelandic time",
           "nb": "islandsk tid", "da": "islandsk tid", "fi": "Islannin aikaa",
           "de": "isländische Zeit"}),
    "IE": ("Europe/Dublin", {"sv": "irländsk tid", "en": "Irish time", "nb": "irsk tid",
           "da": "irsk tid", "fi": "Irlannin aikaa", "de": "irische Zeit"}),
    "GB": ("Europe/London", {"sv": "brittisk tid", "en": "UK time", "nb": "britisk tid",
           "da": "britisk tid", "fi": "Britannian aikaa", "de": "britische Zeit"}),
    "EE": ("Europe/Tallinn", {"sv": "estnisk tid", "en": "Estonian time", "nb": "estisk tid",
           "da": "estisk tid", "fi": "Viron aikaa", "de": "estnische Zeit"}),
    "LV": ("Europe/Riga", {"sv": "lettisk tid", "en": "Latvian time", "nb": "latvisk tid",
           "da": "lettisk tid", "fi": "Latvian aikaa", "de": "lettische Zeit"}),
    "LT": ("Europe/Vilnius", {"sv": "litauisk tid", "en": "Lithuanian time",
           "nb": "litauisk tid", "da": "litauisk tid", "fi": "Liettuan aikaa",
           "de": "litauische Zeit"}),
    "PL": ("Europe/Warsaw", {"sv": "polsk tid", "en": "Polish time", "nb": "polsk tid",
           "da": "polsk tid", "fi": "Puolan aikaa", "de": "polnische Zeit"}),
    "NL": ("Europe/Amsterdam", {"sv": "nederländsk tid", "en": "Dutch time",
           "nb": "nederlandsk tid", "da": "hollandsk tid", "fi": "Alankomaiden aikaa",
           "de": "niederländische Zeit"}),
    "GR": ("Europe/Athens", {"sv": "grekisk tid", "en": "Greek time", "nb": "gresk tid",
           "da": "græsk tid", "fi": "Kreikan aikaa", "de": "griechische Zeit"}),
    "IN": ("Asia/Kolkata", {"sv": "indisk tid", "en": "Indian time", "nb": "indisk tid",
           "da": "indisk tid", "fi": "Intian aikaa", "de": "indische Zeit"}),
}  # fmt: skip
_COUNTRY_OF_DOMAIN = {code.lower(): code for code in _ZONE_NAMES} | {"uk": "GB"}


def _offset(zone: ZoneInfo | str, moment: datetime) -> timedelta | None:
    return moment.astimezone(ZoneInfo(str(zone))).utcoffset()


def zone_name(zone: ZoneInfo, local: datetime, country: str, language: str) -> str:
    """The company's own name for the interview's zone in ``language``: its country's ("svensk
    tid") whenever the zone keeps that country's time at that moment, whatever the provider
    called it (Microsoft 365's Windows names map to another country's city); else the name of
    the zone's own country, else CLDR's generic name ("Central European Time")."""
    home = _ZONE_NAMES.get(country.upper())
    if home is not None and _offset(home[0], local) == local.utcoffset():
        return home[1].get(language, home[1]["en"])
    key = str(zone)
    for _, (iana, names) in _ZONE_NAMES.items():
        if iana == key:
            return names.get(language, names["en"])
    name = get_timezone_name(local, width="long", locale=_LOCALES.get(language, "en_GB"))
    return str(name) or key


def _abbreviation(local: datetime, locale: str) -> str:
    """ "CET", "CEST" (German "MEZ", "MESZ"), else the offset from UTC ("UTC+5:30")."""
    for candidate in (get_timezone_name(local, width="short", locale=locale), local.tzname()):
        if candidate and re.fullmatch(r"[A-Z]{2,5}", str(candidate)):
            return str(candidate)
    offset = local.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
    return f"UTC{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")


def candidate_zone(
    address: str, calendar: WorkCalendar, start: datetime, language: str
) -> tuple[ZoneInfo, str] | None:
    """The candidate's own zone and country, when they are abroad and it is known well enough:
    their address's country domain (``.ie``, ``.fi``, ``.co.uk``) names a country with a single
    zone, another than the company's, whose clock differs from the interview's at its start."""
    domain = address.rpartition("@")[2].rstrip(".").lower()
    country = _COUNTRY_OF_DOMAIN.get(domain.rpartition(".")[2])
    if country is None or country == calendar.country.upper() or language not in _LOCALES:
        return None
    zone = ZoneInfo(_ZONE_NAMES[country][0])
    if _offset(zone, start) == _offset(calendar.zone, start):
        return None
    return zone, country


def _stage(settings: Settings, number: int) -> Stage | None:
    if not settings.stages:
        return None
    return settings.stages[min(number, len(settings.stages)) - 1]


def _interview(
    interview: Interview,
    mail: PlannedMail,
    box: Mailbox,
    settings: Settings,
    fmt: _Formatter,
    language: str,
    stage: Stage | None,
    facts: Facts,
    left_out: list[str],
) -> dict[str, Any]:
    event = interview.event
    panel = []
    seen = set()
    recruiter_attends = any(a.address == box.address for a in event.attendees) or (
        event.organizer is not None and event.organizer.address == box.address
    )
    if recruiter_attends:
        panel.append({"name": box.name, "role": box.title_in(language), "bio": ""})
        seen.add(box.address)
    for member in interview.panel:
        if member.address in seen:
            continue
        seen.add(member.address)
        configured = settings.person(member.address)
        found = (facts.directory or {}).get(member.address)
        # Never an address: a colleague without a known name is shown by role, or not at all.
        name = (
            (configured.name if configured else "")
            or usable_name(found.name if found else "")
            or usable_name(member.name)
        )
        role = (configured.role_in(language) if configured else "") or (
            usable_name(found.role) if found else ""
        )
        if not name and not role:
            left_out.append("a panel member without a known name or role left out")
            continue
        panel.append(
            {
                "name": name,
                "role": role,
                "bio": (configured.bio_in(language) if configured else "")
                or (without_links(safe_text(found.bio)) if found else ""),
            }
        )
    calendar_agenda = [item for item in (without_links(i) for i in interview.agenda) if item]
    if calendar_agenda and not _written_in(" ".join(calendar_agenda), language):
        # One mail, one language: the stage's agenda in the mail's language stands in.
        left_out.append("the calendar's agenda is in another language than the mail")
        calendar_agenda = []
    agenda = calendar_agenda or (list(stage.agenda.get(language, [])) if stage else [])
    summary = without_links(safe_text(interview.summary, multiline=True))
    if summary and not _written_in(summary, language):
        left_out.append("the summary in the notes is in another language than the mail")
        summary = ""
    location, online_url = _place(event.location, event.online_url, settings, left_out)
    abroad = candidate_zone(mail.candidate, fmt.calendar, event.start, language)
    # On site, the time where the interview is held is the one that counts.
    theirs = (
        fmt.candidate_time(event.start, event.end, *abroad)
        if abroad and (online_url or not location)
        else ""
    )
    number = facts.interview_number
    stage_name = (stage.name.get(language, "") if stage else "") or _STAGE_FALLBACK.get(
        language, _STAGE_FALLBACK["en"]
    )[min(number, 4) - 1]
    return {
        "when": fmt.when(event.start),
        "date": fmt.day(fmt.calendar.local(event.start).date()),
        "time": fmt.time(event.start),
        "end_time": fmt.time(event.end),
        "zone": fmt.zone(event.start, short=bool(theirs)),
        "candidate_time": theirs,
        "duration": fmt.duration(event.end - event.start),
        "location": location,
        "online_url": online_url,
        "panel": panel,
        "agenda": agenda,
        "stage": stage_name,
        "number": number,
        "summary": summary,
        "previous_when": fmt.when(mail.previous_start) if mail.previous_start else "",
    }


@lru_cache(maxsize=256)
def _written_in(text: str, language: str) -> bool:
    """Whether calendar text may stand in a mail in ``language``: it is, or it is too short or
    too mixed to tell (names, places, a few words)."""
    return clearly_other_language(text, language, LANGUAGES) is None


def _place(
    raw_location: str, raw_url: str, settings: Settings, left_out: list[str]
) -> tuple[str, str]:
    """The location as text without links, and the meeting link when its host is known.

    A known meeting link pasted into the location (Outlook does that) becomes the link when the
    event has none of its own.
    """
    location = safe_text(raw_location)
    url, reason = meeting_link(raw_url, settings) if len(raw_url) <= 2000 else ("", "")
    if reason:
        left_out.append(reason)
    if not url:
        for candidate in links_in(location):
            found, _ = meeting_link(candidate, settings)
            if found:
                url = found
                break
    text = without_links(location)
    if text != location and not url:
        left_out.append("a link in the location left out")
    return _bounded(text, 300), url


def _bounded(text: str, limit: int) -> str:
    """Calendar text cut to a sane length: a mail must stay readable whatever the event holds."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _holiday(holiday: Holiday, language: str) -> dict[str, str]:
    return {
        "key": holiday.key,
        "name": holiday.names.get(language, ""),  # never another language's name
    }


def _folded_holiday(
    mail: PlannedMail, calendar: WorkCalendar, settings: Settings
) -> Holiday | None:
    for key in mail.folded:
        if key.kind is MailKind.HOLIDAY_GREETING:
            first = date.fromisoformat(key.occasion.removeprefix("holiday:"))
            run = calendar.holiday_run_after(
                first - timedelta(days=1), settings.touchpoints.holiday_greeting.min_days_off
            )
            return run.holiday if run else None
    return None


def _folded_absence(mail: PlannedMail, facts: Facts) -> Period | None:
    for key in mail.folded:
        if key.kind is MailKind.VACATION_NOTICE:
            first = key.occasion.removeprefix("vacation:")
            for absence in facts.absences:
                if (
                    absence.start.date().isoformat() == first
                    or absence.start.isoformat()[:10] == first
                ):
                    return absence
    return None


def _vacation(
    absence: Period,
    absences: tuple[Period, ...],
    box: Mailbox,
    settings: Settings,
    calendar: WorkCalendar,
    fmt: _Formatter,
    language: str,
) -> dict[str, Any]:
    first = calendar.local(absence.start).date()
    back = back_day(calendar, (absence, *absences), absence)
    stand_in = settings.person(box.stand_in) if box.stand_in else None
    return {
        "first_day": fmt.day(first),
        "back_day": fmt.day(back),
        "stand_in": {
            "name": stand_in.name,
            "role": stand_in.role_in(language),
            "address": box.stand_in,
            "phone": stand_in.phone,
        }
        if stand_in
        else None,
    }
