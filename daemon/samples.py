"""Realistic template contexts for every touchpoint, exactly as docs/TEMPLATES.md specifies them.

Used by ``Renderer.check()`` (start-up and ``recruitmail check``), by ``recruitmail preview`` and by
the tests. ``sparse=True`` builds the thinnest context a real interview can give: no first name, no
panel, no agenda, no place or link, no company texts, no stand-in. ``hostile_context`` builds the
worst a calendar can send, unfiltered, so that templates are proven against it: right-to-left
overrides, 4,000-character names, text that looks like Jinja or HTML, CR/LF, links on foreign
hosts, empty names.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time, format_timedelta

from recruitmail.contracts.models import MailKind

SAMPLE_ZONE = ZoneInfo("Europe/Stockholm")
SAMPLE_LANGUAGES = ("sv", "en")
SAMPLES = ("full", "sparse", "hostile")
"""The sample data sets ``recruitmail check`` renders every kind and language with."""

# Thursday 3 December 2026: the first interview; the second one a week later.
_FIRST = datetime(2026, 12, 3, 14, 0, tzinfo=SAMPLE_ZONE)
_SECOND = datetime(2026, 12, 10, 10, 0, tzinfo=SAMPLE_ZONE)
_DECISION = datetime(2026, 12, 11, 12, 0, tzinfo=SAMPLE_ZONE)
# The status update comes on the day the thank-you promised: it says so and gives a new day.
_RENEWED = datetime(2026, 12, 18, 12, 0, tzinfo=SAMPLE_ZONE)
_AWAY = datetime(2026, 12, 21, 8, 0, tzinfo=SAMPLE_ZONE)
_BACK = datetime(2027, 1, 7, 8, 0, tzinfo=SAMPLE_ZONE)

_TEXTS: dict[str, dict[str, Any]] = {
    "sv": {
        "recruiter_title": "Rekryterare",
        "zone": "svensk tid",
        "at": "kl.",
        "stages": ("första intervjun", "andra intervjun"),
        "location": "Storgatan 12, Umeå – fråga efter mig i receptionen",
        "careers_url": "https://nordvik.example/karriar",
        "panel": [
            (
                "Erik Johansson",
                "Utvecklingschef",
                "Har byggt upp vårt plattformsteam sedan 2015 och pratar gärna arkitektur.",
            ),
            (
                "Sara Ahmed",
                "Senior utvecklare",
                "Jobbar med vår betaltjänst och är mentor för nya kollegor.",
            ),
            ("Maria Lind", "Rekryterare", ""),
        ],
        "agenda": [
            "Vi presenterar oss och berättar om teamet",
            "Du berättar om dig själv och vad du letar efter",
            "Några frågor utifrån din erfarenhet",
            "Dina frågor till oss",
        ],
        "summary": (
            "Vi pratade om dina år på Sundsvall Energi, hur du byggde om deras faktureringsflöde "
            "och att du vill jobba närmare användarna framöver."
        ),
        "next_steps": (
            "Vi stämmer av i teamet, och går vi vidare bjuder jag in dig till en andra intervju "
            "med två av dina blivande kollegor."
        ),
        "company": {
            "history": (
                "Nordvik startade i Umeå 1998 och bygger i dag energitjänster för hela Norden. "
                "Vår vision är en vardag där energin räcker till alla."
            ),
            "values": "Öppenhet, omtanke och modet att tänka nytt.",
            "culture": "Frihet under ansvar, korta beslutsvägar och chefer som finns där när det behövs.",
            "social": "AW varannan fredag, en gemensam konferens varje höst och innebandy på onsdagar.",
            "development": "Egen utbildningsbudget, mentorprogram och goda chanser att byta team internt.",
        },
        "holidays": {"christmas": "jul", "midsummer": "midsommar"},
        "stand_in_role": "Rekryterare",
    },
    "en": {
        "recruiter_title": "Recruiter",
        "zone": "Swedish time",
        "at": "at",
        "stages": ("first interview", "second interview"),
        "location": "Storgatan 12, Umeå – ask for me at the reception",
        "careers_url": "https://nordvik.example/careers",
        "panel": [
            (
                "Erik Johansson",
                "Head of Engineering",
                "Has built our platform team since 2015 and loves talking architecture.",
            ),
            (
                "Sara Ahmed",
                "Senior Developer",
                "Works on our payments service and mentors new colleagues.",
            ),
            ("Maria Lind", "Recruiter", ""),
        ],
        "agenda": [
            "We introduce ourselves and the team",
            "You tell us about yourself and what you are looking for",
            "A few questions based on your experience",
            "Your questions for us",
        ],
        "summary": (
            "We talked about your years at Sundsvall Energi, how you rebuilt their billing flow "
            "and that you want to work closer to the users next."
        ),
        "next_steps": (
            "We will talk it over in the team, and if we move on I will invite you to a second "
            "interview with two of your future colleagues."
        ),
        "company": {
            "history": (
                "Nordvik started in Umeå in 1998 and today builds energy services for all of the "
                "Nordics. Our vision is everyday life with enough energy for everyone."
            ),
            "values": "Openness, care and the courage to think anew.",
            "culture": "Freedom with responsibility, short decision paths and managers who are there when it matters.",
            "social": "After-work every other Friday, a joint conference each autumn and floorball on Wednesdays.",
            "development": "Your own training budget, a mentoring programme and real chances to move between teams.",
        },
        "holidays": {"christmas": "Christmas", "midsummer": "Midsummer"},
        "stand_in_role": "Recruiter",
    },
}


def format_day(moment: datetime, language: str) -> str:
    """A day as the mails say it: ``torsdag 3 december`` / ``Thursday 3 December``."""
    return format_date(moment, "EEEE d MMMM", locale=language)


def _interview(
    language: str, start: datetime, minutes: int, number: int, *, sparse: bool, place: str
) -> dict[str, Any]:
    texts = _TEXTS[language]
    end = start + timedelta(minutes=minutes)
    day = format_day(start, language)
    time = format_time(start, "HH:mm", locale=language)
    panel = [{"name": n, "role": r, "bio": b} for n, r, b in texts["panel"]]
    return {
        "when": f"{day} {texts['at']} {time}",
        "date": day,
        "time": time,
        "end_time": format_time(end, "HH:mm", locale=language),
        "zone": f"{texts['zone']} ({start.tzname()})",
        "duration": format_timedelta(end - start, locale=language),
        "location": "" if sparse or place == "online" else texts["location"],
        "online_url": ""
        if sparse or place == "onsite"
        else "https://meet.nordvik.example/j/4812-2290",
        "panel": [] if sparse else panel,
        "agenda": [] if sparse else list(texts["agenda"]),
        "stage": texts["stages"][min(number, 2) - 1],
        "number": number,
        "summary": "",
        "previous_when": "",
    }


def _holiday(language: str, key: str) -> dict[str, str]:
    return {"key": key, "name": _TEXTS[language]["holidays"][key]}


def _vacation(language: str, *, sparse: bool) -> dict[str, Any]:
    stand_in = None
    if not sparse:
        stand_in = {
            "name": "Jonas Berg",
            "role": _TEXTS[language]["stand_in_role"],
            "address": "jonas.berg@nordvik.example",
            "phone": "070-987 65 43",
        }
    return {
        "first_day": format_day(_AWAY, language),
        "back_day": format_day(_BACK, language),
        "stand_in": stand_in,
    }


def sample_context(kind: str, language: str, *, sparse: bool = False) -> dict[str, Any]:
    """A complete, realistic context for ``kind`` in ``language`` (``sv`` or ``en``).

    Every name of docs/TEMPLATES.md is present; values that do not apply to the kind are ``None``
    or empty, as in production. Raises ``ValueError`` for an unknown kind or language.
    """
    mail_kind = MailKind(kind)
    if language not in _TEXTS:
        raise ValueError(f"no sample texts for language {language!r}")
    texts = _TEXTS[language]
    company_texts = {name: "" if sparse else text for name, text in texts["company"].items()}

    interview: dict[str, Any] | None = None
    holiday: dict[str, str] | None = None
    vacation: dict[str, Any] | None = None
    also: dict[str, Any] = {"weekend": False, "thank_you": False, "holiday": None, "vacation": None}
    next_steps = ""
    decision_date = ""
    decision_late = False
    decision_moved_from = ""

    if mail_kind is MailKind.WELCOME:
        interview = _interview(language, _FIRST, 60, 1, sparse=sparse, place="onsite")
    elif mail_kind is MailKind.INTERVIEW_DETAILS:
        interview = _interview(language, _SECOND, 45, 2, sparse=sparse, place="online")
        # Booked right after the first interview ended: the thank-you folds into this mail.
        also["thank_you"] = not sparse
    elif mail_kind is MailKind.RESCHEDULE_NOTICE:
        interview = _interview(language, _SECOND, 60, 1, sparse=sparse, place="both")
        interview["previous_when"] = _interview(
            language, _FIRST, 60, 1, sparse=sparse, place="both"
        )["when"]
    elif mail_kind is MailKind.THANK_YOU:
        interview = _interview(language, _FIRST, 60, 1, sparse=sparse, place="onsite")
        if not sparse:
            interview["summary"] = texts["summary"]
            next_steps = texts["next_steps"]
            decision_date = format_day(_DECISION, language)
            also["weekend"] = True
    elif mail_kind is MailKind.STATUS_UPDATE:
        if not sparse:
            interview = _interview(language, _FIRST, 60, 1, sparse=False, place="onsite")
            next_steps = texts["next_steps"]
            decision_date = format_day(_RENEWED, language)
            decision_late = True
    elif mail_kind is MailKind.HOLIDAY_GREETING:
        holiday = _holiday(language, "midsummer" if sparse else "christmas")
    elif mail_kind is MailKind.VACATION_NOTICE:
        vacation = _vacation(language, sparse=sparse)
        if not sparse:
            also["holiday"] = _holiday(language, "christmas")
            # The thank-you promised a day the vacation now eats: the notice moves it.
            decision_moved_from = format_day(_AWAY + timedelta(days=2), language)
            decision_date = format_day(_BACK + timedelta(days=5), language)

    return {
        "kind": mail_kind.value,
        "language": language,
        "candidate": {
            "first_name": "" if sparse else "Anna",
            "full_name": "" if sparse else "Anna Svensson",
        },
        "recruiter": {
            "name": "Maria Lind",
            "title": "" if sparse else texts["recruiter_title"],
            "phone": "" if sparse else "070-123 45 67",
            "address": "maria.lind@nordvik.example",
            "signature": "" if sparse else "Storgatan 12, 903 26 Umeå\nnordvik.example",
        },
        "company": {
            "name": "Nordvik Systems AB",
            "careers_url": "" if sparse else texts["careers_url"],
            **company_texts,
        },
        "interview": interview,
        "next_steps": next_steps,
        "decision_date": decision_date,
        "decision_late": decision_late,
        "decision_repeat": False,
        "decision_moved_from": decision_moved_from,
        "holiday": holiday,
        "vacation": vacation,
        "also": also,
        "left_out": [],
        "hints": [],
    }


RLO = "\u202e"
"""RIGHT-TO-LEFT OVERRIDE: makes "Room 1\u202etxt.exe" show as "Room 1exe.txt"."""
HOSTILE_TEXTS = (
    "{{ 7*7 }} {% for x in range(10**9) %}loop{% endfor %} {# #}",
    "<script>alert(1)</script><img src=x onerror=alert(1)> O'Brien & <Co>",
    "Anna\r\nBcc: everyone@evil.example =?UTF-8?Q?=0A?=",
    f"https://evil.example/{RLO}https://teams.microsoft.com",
    f"Room 1{RLO}txt.exe\u2066\u200b\u0000\u001b[31m",
    "",
)
LONG_NAME = "Anna-" + "Maria" * 799  # 4,000 characters
FOREIGN_LINK = "https://nordljus.se.login-verify.example/teams"


def hostile_context(kind: str, language: str) -> dict[str, Any]:
    """``sample_context`` with every calendar-derived value replaced by hostile text, unfiltered.

    Production cleans calendar text before templates see it (``daemon.compose``); this proves the
    templates themselves stay safe and render anyway: markup escaped in HTML, template syntax
    shown literally, nothing raising on empty or enormous values.
    """
    context = sample_context(kind, language)
    text = " | ".join(HOSTILE_TEXTS)
    context["candidate"] = {
        "first_name": f"{RLO}Anna{{{{ 7*7 }}}}",
        "full_name": LONG_NAME,
        "address": "anna@example.com",
    }
    interview = context["interview"]
    if interview is None and kind in ("status_update", "weekend_greeting"):
        interview = sample_context("thank_you", language)["interview"]
        context["interview"] = interview
    if interview is not None:
        interview["location"] = (
            f"{HOSTILE_TEXTS[4]} {HOSTILE_TEXTS[1]} Pay the fee at https://evil.example/pay"
        )
        interview["online_url"] = FOREIGN_LINK
        interview["panel"] = [
            {"name": "", "role": HOSTILE_TEXTS[1], "bio": ""},
            {"name": LONG_NAME, "role": "", "bio": text},
            {"name": "ceo@nordvik.example", "role": HOSTILE_TEXTS[2], "bio": HOSTILE_TEXTS[0]},
        ]
        interview["agenda"] = [t for t in HOSTILE_TEXTS if t] + ["x" * 4000]
        interview["summary"] = "\n".join(HOSTILE_TEXTS) + "\n" + "lorem ipsum " * 300
        interview["previous_when"] = interview["when"] if kind == "reschedule_notice" else ""
    if context["holiday"] is not None:
        context["holiday"] = {"key": "other", "name": HOSTILE_TEXTS[1]}
    if context["vacation"] is not None:
        context["vacation"]["stand_in"] = {"name": "", "role": "", "address": "", "phone": ""}
    context["next_steps"] = HOSTILE_TEXTS[0]
    return context
