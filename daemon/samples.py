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
SAMPLE_LANGUAGES = ("sv", "en", "nb", "da", "fi", "de")
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
        "when": "{day} kl. {time}",
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
        "when": "{day} at {time}",
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
    "nb": {
        "recruiter_title": "Rekrutterer",
        "zone": "svensk tid",
        "when": "{day} kl. {time}",
        "stages": ("første intervju", "andre intervju"),
        "location": "Storgatan 12, Umeå – spør etter meg i resepsjonen",
        "careers_url": "https://nordvik.example/karriere",
        "panel": [
            (
                "Erik Johansson",
                "Utviklingssjef",
                "Har bygget opp plattformteamet vårt siden 2015 og prater gjerne arkitektur.",
            ),
            (
                "Sara Ahmed",
                "Seniorutvikler",
                "Jobber med betalingstjenesten vår og er mentor for nye kolleger.",
            ),
            ("Maria Lind", "Rekrutterer", ""),
        ],
        "agenda": [
            "Vi presenterer oss og forteller om teamet",
            "Du forteller om deg selv og hva du ser etter",
            "Noen spørsmål ut fra erfaringen din",
            "Dine spørsmål til oss",
        ],
        "summary": (
            "Vi snakket om årene dine i Sundsvall Energi, hvordan du bygde om faktureringsløpet "
            "deres, og at du vil jobbe tettere på brukerne fremover."
        ),
        "next_steps": (
            "Vi tar en prat i teamet, og går vi videre, inviterer jeg deg til et andre intervju "
            "med to av dine kommende kolleger."
        ),
        "company": {
            "history": (
                "Nordvik startet i Umeå i 1998 og lager i dag energitjenester for hele Norden. "
                "Visjonen vår er en hverdag der energien strekker til for alle."
            ),
            "values": "Åpenhet, omtanke og mot til å tenke nytt.",
            "culture": "Frihet under ansvar, korte beslutningsveier og ledere som er der når det trengs.",
            "social": "Afterwork annenhver fredag, en felles samling hver høst og innebandy på onsdager.",
            "development": "Eget opplæringsbudsjett, mentorprogram og gode muligheter til å bytte team internt.",
        },
        "holidays": {"christmas": "Første juledag", "midsummer": "Sankthansaften"},
        "stand_in_role": "Rekrutterer",
    },
    "da": {
        "recruiter_title": "Rekrutteringskonsulent",
        "zone": "svensk tid",
        "when": "{day} kl. {time}",
        "stages": ("første samtale", "anden samtale"),
        "location": "Storgatan 12, Umeå – spørg efter mig i receptionen",
        "careers_url": "https://nordvik.example/karriere",
        "panel": [
            (
                "Erik Johansson",
                "Udviklingschef",
                "Har bygget vores platformsteam op siden 2015 og taler gerne arkitektur.",
            ),
            (
                "Sara Ahmed",
                "Seniorudvikler",
                "Arbejder med vores betalingsløsning og er mentor for nye kolleger.",
            ),
            ("Maria Lind", "Rekrutteringskonsulent", ""),
        ],
        "agenda": [
            "Vi præsenterer os selv og fortæller om teamet",
            "Du fortæller om dig selv, og hvad du leder efter",
            "Et par spørgsmål ud fra din erfaring",
            "Dine spørgsmål til os",
        ],
        "summary": (
            "Vi talte om dine år hos Sundsvall Energi, hvordan du byggede deres faktureringsflow "
            "om, og at du gerne vil arbejde tættere på brugerne fremover."
        ),
        "next_steps": (
            "Vi vender det i teamet, og går vi videre, inviterer jeg dig til en anden samtale "
            "med to af dine kommende kolleger."
        ),
        "company": {
            "history": (
                "Nordvik startede i Umeå i 1998 og udvikler i dag energiløsninger til hele Norden. "
                "Vores vision er en hverdag, hvor energien rækker til alle."
            ),
            "values": "Åbenhed, omsorg og modet til at tænke nyt.",
            "culture": "Frihed under ansvar, korte beslutningsveje og ledere, der er der, når det gælder.",
            "social": "Fredagsbar hver anden fredag, en fælles konference hvert efterår og floorball om onsdagen.",
            "development": "Eget uddannelsesbudget, mentorprogram og gode muligheder for at skifte team internt.",
        },
        "holidays": {"christmas": "Juledag", "midsummer": "Sankthansaften"},
        "stand_in_role": "Rekrutteringskonsulent",
    },
    "fi": {
        "recruiter_title": "Rekrytoija",
        "zone": "Ruotsin aikaa",
        "when": "{day} klo {time}",
        "stages": ("ensimmäinen haastattelu", "toinen haastattelu"),
        "location": "Storgatan 12, Umeå – kysy minua vastaanotosta",
        "careers_url": "https://nordvik.example/ura",
        "panel": [
            (
                "Erik Johansson",
                "Kehitysjohtaja",
                "On rakentanut alustatiimiämme vuodesta 2015 ja puhuu mielellään arkkitehtuurista.",
            ),
            (
                "Sara Ahmed",
                "Senior-kehittäjä",
                "Työskentelee maksupalvelumme parissa ja toimii mentorina uusille kollegoille.",
            ),
            ("Maria Lind", "Rekrytoija", ""),
        ],
        "agenda": [
            "Esittäydymme ja kerromme tiimistä",
            "Kerrot itsestäsi ja siitä, mitä etsit",
            "Muutama kysymys kokemuksestasi",
            "Sinun kysymyksesi meille",
        ],
        "summary": (
            "Puhuimme vuosistasi Sundsvall Energillä, siitä miten uudistit heidän "
            "laskutusprosessinsa, ja siitä että haluat jatkossa työskennellä lähempänä käyttäjiä."
        ),
        "next_steps": (
            "Käymme tapaamisen läpi tiimin kanssa, ja jos jatkamme eteenpäin, kutsun sinut "
            "toiseen haastatteluun kahden tulevan kollegasi kanssa."
        ),
        "company": {
            "history": (
                "Nordvik perustettiin Uumajassa vuonna 1998, ja nykyään rakennamme energiapalveluja "
                "koko Pohjolaan. Visiomme on arki, jossa energiaa riittää kaikille."
            ),
            "values": "Avoimuus, välittäminen ja rohkeus ajatella uudella tavalla.",
            "culture": "Vapautta ja vastuuta, lyhyet päätöksentekoketjut ja esihenkilöt, jotka ovat tukena silloin kun sitä tarvitaan.",
            "social": "Afterworkit joka toinen perjantai, yhteinen konferenssi joka syksy ja salibandya keskiviikkoisin.",
            "development": "Oma koulutusbudjetti, mentorointiohjelma ja aidot mahdollisuudet vaihtaa tiimiä talon sisällä.",
        },
        "holidays": {"christmas": "Joulupäivä", "midsummer": "Juhannusaatto"},
        "stand_in_role": "Rekrytoija",
    },
    "de": {
        "recruiter_title": "Recruiterin",
        "zone": "schwedische Zeit",
        "when": "{day}, {time} Uhr",
        "stages": ("Erstes Kennenlernen", "Zweites Gespräch"),
        "location": "Storgatan 12, Umeå – frag am Empfang einfach nach mir",
        "careers_url": "https://nordvik.example/karriere",
        "panel": [
            (
                "Erik Johansson",
                "Leiter Entwicklung",
                "Baut seit 2015 unser Plattformteam auf und spricht gern über Architektur.",
            ),
            (
                "Sara Ahmed",
                "Senior-Entwicklerin",
                "Arbeitet an unserem Bezahldienst und ist Mentorin für neue Kolleginnen und Kollegen.",
            ),
            ("Maria Lind", "Recruiterin", ""),
        ],
        "agenda": [
            "Wir stellen uns und das Team vor",
            "Du erzählst von dir und davon, was du suchst",
            "Ein paar Fragen zu deiner Erfahrung",
            "Deine Fragen an uns",
        ],
        "summary": (
            "Wir haben über deine Jahre bei Sundsvall Energi gesprochen, darüber, wie du dort "
            "den Abrechnungsprozess neu aufgebaut hast, und dass du künftig näher an den "
            "Nutzerinnen und Nutzern arbeiten möchtest."
        ),
        "next_steps": (
            "Wir besprechen uns im Team, und wenn es weitergeht, lade ich dich zu einem zweiten "
            "Gespräch mit zwei deiner künftigen Kolleginnen und Kollegen ein."
        ),
        "company": {
            "history": (
                "Nordvik wurde 1998 in Umeå gegründet und entwickelt heute Energiedienste für ganz "
                "Skandinavien. Unsere Vision ist ein Alltag, in dem die Energie für alle reicht."
            ),
            "values": "Offenheit, Fürsorge und der Mut, neu zu denken.",
            "culture": "Freiheit mit Verantwortung, kurze Entscheidungswege und Führungskräfte, die da sind, wenn es darauf ankommt.",
            "social": "Afterwork jeden zweiten Freitag, eine gemeinsame Konferenz im Herbst und mittwochs Floorball.",
            "development": "Ein eigenes Weiterbildungsbudget, ein Mentoring-Programm und echte Chancen, intern das Team zu wechseln.",
        },
        "holidays": {"christmas": "Erster Weihnachtstag", "midsummer": "Mittsommer"},
        "stand_in_role": "Recruiter",
    },
}


# How each language writes a day and a clock time: "torsdag 3. desember", "torsdag den 3. december",
# "torstaina 3. joulukuuta" (Finnish dates stand where "on Thursday" would), "Donnerstag,
# 3. Dezember"; Norwegian, Danish and Finnish write 14.00, German 14:00 (Uhr comes from the template).
DAY_PATTERNS = {
    "sv": "EEEE d MMMM",
    "en": "EEEE d MMMM",
    "nb": "EEEE d. MMMM",
    "da": "EEEE 'den' d. MMMM",
    "fi": "EEEE d. MMMM",
    "de": "EEEE, d. MMMM",
}
TIME_PATTERNS = {
    "sv": "HH:mm",
    "en": "HH:mm",
    "nb": "HH.mm",
    "da": "HH.mm",
    "fi": "HH.mm",
    "de": "HH:mm",
}


def format_day(moment: datetime, language: str) -> str:
    """A day as the mails say it: ``torsdag 3 december`` / ``Thursday 3 December``."""
    return format_date(moment, DAY_PATTERNS.get(language, "EEEE d MMMM"), locale=language)


def _clock(moment: datetime, language: str) -> str:
    return format_time(moment, TIME_PATTERNS.get(language, "HH:mm"), locale=language)


_IRISH_TIME = {
    "sv": "irländsk tid",
    "en": "Irish time",
    "nb": "irsk tid",
    "da": "irsk tid",
    "fi": "Irlannin aikaa",
    "de": "irische Zeit",
}


def _irish_time(start: datetime, end: datetime, language: str) -> str:
    there = timedelta(hours=-1)  # Dublin is an hour behind Stockholm all year
    times = f"{_clock(start + there, language)}–{_clock(end + there, language)}"
    return f"{times}{' Uhr' if language == 'de' else ''} {_IRISH_TIME[language]}"


def _interview(
    language: str, start: datetime, minutes: int, number: int, *, sparse: bool, place: str
) -> dict[str, Any]:
    texts = _TEXTS[language]
    end = start + timedelta(minutes=minutes)
    day = format_day(start, language)
    time = _clock(start, language)
    panel = [{"name": n, "role": r, "bio": b} for n, r, b in texts["panel"]]
    return {
        "when": texts["when"].format(day=day, time=time),
        "date": day,
        "time": time,
        "end_time": _clock(end, language),
        "zone": f"{texts['zone']} ({start.tzname()})",
        # The online interview's candidate reads from Ireland: their own time beside ours.
        "candidate_time": "" if sparse or place != "online" else _irish_time(start, end, language),
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
    """A complete, realistic context for ``kind`` in ``language`` (one of ``SAMPLE_LANGUAGES``).

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
