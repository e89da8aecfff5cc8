"""Recognise interviews in calendar events: candidates, panel, agenda, language (pure).

Calendar text is untrusted: names are cleaned here before anything else sees them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC

from daemon.models import Attendee, Event, Response
from daemon.settings import Mailbox, Settings

MAX_SECTION_CHARS = 4000

_BIDI_AND_CONTROL = re.compile(
    r"[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)
_HEADING = re.compile(r"^\s*(?:#+\s*)?\**([A-Za-zÅÄÖåäö]{3,20})\**\s*(?::\**\s*(.*))?$")
REASON_BAD_TIMES = "it ends before it starts"
REASON_NO_CANDIDATE = "it looks like an interview but has no candidate among the attendees"

_HONORIFICS = {"dr", "mr", "mrs", "ms", "miss", "prof", "herr", "fru", "fröken", "sir"}
_LANGUAGE_LINE = re.compile(r"^\s*(?:language|språk)\s*:\s*(sv|en)\b", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Candidate:
    address: str
    name: str
    first_name: str


@dataclass(frozen=True)
class PanelMember:
    address: str
    name: str


@dataclass(frozen=True)
class Interview:
    """An event recognised as an interview with one candidate (an event with two candidates
    yields two interviews)."""

    event: Event
    candidate: Candidate
    panel: tuple[PanelMember, ...]
    agenda: tuple[str, ...]
    summary: str
    language: str | None  # None: use the mailbox default


@dataclass(frozen=True)
class Rejection:
    """Why an event is not (or no longer) an interview; logged at DEBUG, shown by ``status``."""

    event_id: str
    reason: str


def clean_name(raw: str) -> str:
    """A display name fit to show: NFC, no control or bidi-override characters, bounded length."""
    text = unicodedata.normalize("NFC", raw or "")
    text = _BIDI_AND_CONTROL.sub(" ", text)
    text = " ".join(text.split())
    return text[:120]


def first_name(display_name: str, address: str = "") -> str:
    """The first name to greet with, or "" when none can be derived with confidence.

    "Svensson, Anna" → "Anna"; "anna.svensson@…" alone gives "" (guessing from addresses
    produces "Hej Info!"-style mistakes).
    """
    name = clean_name(display_name)
    if not name or "@" in name:
        return ""
    if "," in name:
        family, _, given = name.partition(",")
        name = given.strip() or family.strip()
    # Drop bracketed additions: "Anna Svensson (Extern)", "Anna [Konsult]".
    name = re.sub(r"[\(\[\{<].*?[\)\]\}>]", "", name).strip()
    tokens = [t.strip("\"'`.,:;-_") for t in name.split(" ")]
    tokens = [t for t in tokens if t and t.casefold() not in _HONORIFICS]
    token = tokens[0] if tokens else ""
    if not token or not any(ch.isalpha() for ch in token) or len(token) > 40:
        return ""
    if any(ch.isdigit() for ch in token) or "{" in token or "<" in token:
        return ""
    if token.isupper() or token.islower():
        token = token[:1].upper() + token[1:].lower()
    return token


def _is_internal(address: str, domains: tuple[str, ...]) -> bool:
    domain = address.rpartition("@")[2]
    return any(domain == d or domain.endswith("." + d) for d in domains)


def recognise(event: Event, box: Mailbox, settings: Settings) -> list[Interview] | Rejection:
    """The interviews ``event`` holds for ``box``'s recruiter, or why it holds none."""
    if event.cancelled:
        return Rejection(event.event_id, "cancelled")
    # Compare instants, not wall-clock readings (same-zone aware datetimes compare as wall time).
    if event.end.astimezone(UTC) <= event.start.astimezone(UTC):
        return Rejection(event.event_id, REASON_BAD_TIMES)
    if event.all_day:
        return Rejection(event.event_id, "all-day event")
    if not _matches_rules(event, settings):
        return Rejection(event.event_id, "not an interview (subject and categories do not match)")
    recruiter = box.address
    people: dict[str, Attendee] = {}
    for person in (*event.attendees, *((event.organizer,) if event.organizer else ())):
        if (
            person.address
            and person.address not in people
            or person.address in people
            and person.is_organizer
        ):
            people[person.address] = person
    me = people.get(recruiter)
    if me is not None and me.response == Response.DECLINED and not me.is_organizer:
        return Rejection(event.event_id, "the recruiter declined")
    domains = tuple(settings.company.domains)
    candidates: list[Candidate] = []
    panel: list[PanelMember] = []
    for address, person in people.items():
        if person.is_resource or address == recruiter:
            continue
        if _is_internal(address, domains):
            name = clean_name(person.name)
            directory = settings.person(address)
            panel.append(PanelMember(address, directory.name if directory else name))
            continue
        if person.response == Response.DECLINED:
            continue
        name = clean_name(person.name)
        candidates.append(Candidate(address, name, first_name(name, address)))
    if not candidates:
        return Rejection(event.event_id, REASON_NO_CANDIDATE)
    body = event.body[:200_000]
    agenda = _section(body, ("agenda", "dagordning"))
    summary = _section(body, ("sammanfattning", "summary"))
    language = _language(event, settings)
    interviews = [
        Interview(
            event=event,
            candidate=c,
            panel=tuple(sorted(panel, key=lambda p: (p.name.lower(), p.address))),
            agenda=tuple(_agenda_items(agenda)),
            summary=summary,
            language=language,
        )
        for c in sorted(candidates, key=lambda c: c.address)
    ]
    return interviews


def _matches_rules(event: Event, settings: Settings) -> bool:
    wanted = {c.casefold() for c in settings.detection.categories}
    if any(c.casefold() in wanted for c in event.categories):
        return True
    return re.search(settings.detection.subject_pattern, event.subject, re.IGNORECASE) is not None


def _language(event: Event, settings: Settings) -> str | None:
    english = {c.casefold() for c in settings.detection.english_categories}
    swedish = {c.casefold() for c in settings.detection.swedish_categories}
    for category in event.categories:
        if category.casefold() in english:
            return "en"
        if category.casefold() in swedish:
            return "sv"
    match = _LANGUAGE_LINE.search(event.body[:20_000])
    return match.group(1).lower() if match else None


_KNOWN_HEADINGS = ("agenda", "dagordning", "sammanfattning", "summary", "notes", "anteckningar")


def _section(body: str, titles: tuple[str, ...]) -> str:
    """The text under a heading such as "Agenda:" (or "Agenda: item" inline), up to a blank line
    after some content or the next known heading."""
    out: list[str] = []
    inside = False
    for line in body.replace("\r\n", "\n").split("\n"):
        heading = _HEADING.match(line)
        title = heading.group(1).casefold() if heading else ""
        if heading and title in titles and not inside:
            inside = True
            if (heading.group(2) or "").strip():
                out.append(heading.group(2))
            continue
        if not inside:
            continue
        if heading and title in _KNOWN_HEADINGS:
            break
        if not line.strip():
            if out:
                break
            continue
        out.append(line)
    return "\n".join(out).strip()[:MAX_SECTION_CHARS]


def _agenda_items(section: str) -> list[str]:
    items = []
    for line in section.split("\n"):
        item = line.strip().lstrip("-*•0123456789.) ").strip()
        if item:
            items.append(clean_name(item) if len(item) <= 120 else clean_name(item[:117]) + "…")
    return items[:12]
