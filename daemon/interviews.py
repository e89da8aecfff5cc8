"""Recognise interviews in calendar events: candidates, panel, agenda, language (pure).

Anyone can put an event into a recruiter's calendar by sending an invitation, so calendar text
is untrusted. This module decides who can make recruitmail write (``recognise``) and owns the one
cleaning of calendar text that reaches a mail (``safe_text``, ``without_links``, ``usable_name``,
``meeting_link``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

from recruitmail.contracts import limits
from recruitmail.contracts.models import Attendee, Event, Response
from recruitmail.daemon.settings import Mailbox, Settings

MAX_SECTION_CHARS = 4000

_HEADING = re.compile(r"^\s*(?:#+\s*)?\**([A-Za-zÅÄÖåäö]{3,20})\**\s*(?::\**\s*(.*))?$")
REASON_BAD_TIMES = "it ends before it starts"
REASON_NO_CANDIDATE = "it looks like an interview but has no candidate among the attendees"
REASON_PRIVATE = "private event"
REASON_NOT_MATCHED = "not an interview (subject and categories do not match)"
REASON_EXCLUDED = "not an interview (the subject names an internal meeting, e.g. feedback)"
REASON_TOO_LONG = (
    f"it lasts longer than {int(limits.MAX_INTERVIEW_DURATION.total_seconds() // 3600)} hours: "
    "not an interview"
)
REASON_EXTERNAL_ORGANISER = "organised outside the company"
REASON_NOT_ACCEPTED = "organised outside the company and not accepted by the recruiter"
REASON_LINK_HOST = "meeting link left out: host not on the list"
REASON_LINK_SCHEME = "meeting link left out: not an https link"
REASON_LINK_MALFORMED = "meeting link left out: not a single well-formed link"


def reason_too_many_candidates(limit: int) -> str:
    """The rejection of an event with more external attendees than an interview has."""
    return f"more than {limit} external attendees: not an interview"


_HONORIFICS = {"dr", "mr", "mrs", "ms", "miss", "prof", "herr", "fru", "fröken", "sir"}
_LANGUAGE_LINE = re.compile(r"^\s*(?:language|språk)\s*:\s*(sv|en)\b", re.IGNORECASE | re.MULTILINE)

# Anything a mail client may turn into a link: a scheme URL, "www.…", or host/path.
_LINKISH = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]*):(?P<rest>//[^\s<>\"']*|[^\s<>\"']+)"
    r"|\bwww\.[^\s<>\"']+"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}/[^\s<>\"']*",
    re.IGNORECASE,
)
# Only these schemes make links; "kl. 14:00" or "Rum:3" are plain text.
_LINK_SCHEMES = frozenset(
    {"http", "https", "ftp", "file", "javascript", "data", "mailto", "tel", "sms", "vbscript"}
)
_ADDRESSISH = re.compile(r"@|://|\bwww\.|\b[\w-]+\.[a-z]{2,}\b", re.IGNORECASE)
_DANGLING = " \t,;:–—-|/"
# Printable Latin text (with åäö, é, ü…) and line breaks: nothing in it needs removing.
_PLAIN = re.compile(r"[\n\x20-\x7e\u00a1-\u00ac\u00ae-\u024f\u2010-\u2027\u2030-\u205e]*")
# Direction marks, embeddings, overrides and isolates become a space (they separate what they
# reorder); other invisible format characters (zero-width, soft hyphen, tags) are removed.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


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


def safe_text(raw: str, *, multiline: bool = False) -> str:
    """Calendar text fit to reach a mail: NFC, without control, format (bidi overrides,
    isolates, zero-width, tag characters) or separator characters. Line breaks survive only
    with ``multiline``; other whitespace runs become one space.

    The one place this cleaning happens: ``compose`` passes every string of a mail's context
    through it.
    """
    text = unicodedata.normalize("NFC", raw or "")
    if _PLAIN.fullmatch(text):  # the common case: nothing to remove, only spaces to tidy
        if not multiline:
            return " ".join(text.split())
        return "\n".join(" ".join(line.split()) for line in text.split("\n")).strip("\n")
    out = []
    for ch in text:
        if ch == "\n" or ch in "\u2028\u2029":
            out.append("\n" if multiline else " ")
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Zs") or ch in _BIDI_CONTROLS:
            out.append(" ")
        elif category not in ("Cf", "Cs", "Co", "Cn"):
            out.append(ch)
    cleaned = "".join(out)
    if not multiline:
        return " ".join(cleaned.split())
    lines = [" ".join(line.split()) for line in cleaned.split("\n")]
    return "\n".join(lines).strip("\n")


def without_links(text: str) -> str:
    """``text`` with every URL-looking part left out, so neither part of a mail shows a link
    that calendar text chose (a text part's URL becomes clickable in most clients)."""

    def drop(match: re.Match[str]) -> str:
        scheme = match.group("scheme")
        if scheme is not None and not (
            scheme.lower() in _LINK_SCHEMES or match.group("rest").startswith("//")
        ):
            return match.group(0)
        return ""

    lines = []
    for line in text.split("\n"):
        kept = _LINKISH.sub(drop, line)
        if kept != line:
            kept = " ".join(kept.split()).strip(_DANGLING)
        lines.append(kept)
    return "\n".join(lines).strip("\n")


def usable_name(raw: str) -> str:
    """A display name fit to show, or "" when it is (or names) an address or a link: a calendar
    name like "ceo@company.se" or "Anna (anna@evil.example)" must not speak for anyone."""
    name = safe_text(raw)[: limits.MAX_NAME_CHARS]
    if not name or _ADDRESSISH.search(name):
        return ""
    return name[:120]


def clean_name(raw: str) -> str:
    """A display name fit to show: NFC, no control or bidi-override characters, bounded length."""
    return safe_text(raw)[:120]


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    return any(host == entry or host.endswith("." + entry) for entry in allowed)


def meeting_link(url: str, settings: Settings) -> tuple[str, str]:
    """``(link, "")`` when ``url`` is an https link to a known meeting host or the company's own
    domains (the parsed host itself or a proper subdomain), else ``("", reason)``."""
    url = safe_text(url)
    if not url:
        return "", ""
    if " " in url:  # two links glued together, or a bidi trick turned into a space
        return "", REASON_LINK_MALFORMED
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return "", REASON_LINK_HOST
    if parts.scheme.lower() != "https":
        return "", REASON_LINK_SCHEME
    if not host or parts.username is not None or port not in (None, 443):
        return "", REASON_LINK_HOST
    allowed = tuple(settings.links.meeting_hosts) + tuple(settings.company.domains)
    if not host.isascii() or not _host_allowed(host.lower(), allowed):
        return "", REASON_LINK_HOST
    return url, ""


def links_in(text: str) -> list[str]:
    """The scheme URLs in ``text`` (e.g. a Teams link pasted into the location)."""
    return [m.group(0).rstrip(".,;:)") for m in re.finditer(r"https?://[^\s<>\"']+", text)]


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
    """The interviews ``event`` holds for ``box``'s recruiter, or why it holds none.

    Only an event that the recruiter or a colleague organised (or that has no organiser at all,
    as in many plain ICS feeds), or that the recruiter accepted, can make recruitmail write
    (``detection.external_organisers``).
    """
    if event.cancelled:
        return Rejection(event.event_id, "cancelled")
    if event.private:
        return Rejection(event.event_id, REASON_PRIVATE)
    # Compare instants, not wall-clock readings (same-zone aware datetimes compare as wall time).
    start, end = event.start.astimezone(UTC), event.end.astimezone(UTC)
    if end <= start:
        return Rejection(event.event_id, REASON_BAD_TIMES)
    if event.all_day:
        return Rejection(event.event_id, "all-day event")
    if end - start > limits.MAX_INTERVIEW_DURATION:
        return Rejection(event.event_id, REASON_TOO_LONG)
    if not _matches_rules(event, settings):
        return Rejection(event.event_id, REASON_NOT_MATCHED)
    if _excluded(event, settings):
        return Rejection(event.event_id, REASON_EXCLUDED)
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
    organiser = _organiser(event, people)
    internal_organiser = (
        organiser is None or organiser == recruiter or _is_internal(organiser, domains)
    )
    if not internal_organiser:
        policy = settings.detection.external_organisers
        if policy == "never":
            return Rejection(event.event_id, REASON_EXTERNAL_ORGANISER)
        if policy == "accepted" and (me is None or me.response != Response.ACCEPTED):
            return Rejection(event.event_id, REASON_NOT_ACCEPTED)
    external = [
        address
        for address, person in people.items()
        if not person.is_resource and address != recruiter and not _is_internal(address, domains)
    ]
    limit = settings.detection.max_candidates
    if len(external) > limit:
        return Rejection(event.event_id, reason_too_many_candidates(limit))
    candidates: list[Candidate] = []
    panel: list[PanelMember] = []
    for address, person in people.items():
        if person.is_resource or address == recruiter:
            continue
        if _is_internal(address, domains):
            directory = settings.person(address)
            # A colleague's name comes from the directory; the calendar's display name only when
            # a colleague wrote the invitation (an outsider could call anyone anything).
            name = usable_name(person.name) if internal_organiser else ""
            panel.append(PanelMember(address, directory.name if directory else name))
            continue
        if person.response == Response.DECLINED:
            continue
        name = usable_name(person.name)
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


def _organiser(event: Event, people: dict[str, Attendee]) -> str | None:
    """The organiser's address, or ``None`` when the calendar names none."""
    if event.organizer is not None and event.organizer.address:
        return event.organizer.address
    for address, person in people.items():
        if person.is_organizer:
            return address
    return None


@functools.lru_cache(maxsize=32)
def whole_words(pattern: str) -> re.Pattern[str]:
    """``pattern`` (alternatives) matched as whole words, case-insensitively, Unicode-aware:
    "samtal" finds "Samtal med Anna" but not "Kundsamtal"."""
    return re.compile(rf"(?<!\w)(?:{pattern})(?!\w)", re.IGNORECASE)


def _matches_rules(event: Event, settings: Settings) -> bool:
    wanted = {c.casefold() for c in settings.detection.categories}
    if any(c.casefold() in wanted for c in event.categories):
        return True
    subject = safe_text(event.subject)
    return whole_words(settings.detection.subject_pattern).search(subject) is not None


def _excluded(event: Event, settings: Settings) -> bool:
    pattern = settings.detection.exclude_pattern
    return bool(pattern) and whole_words(pattern).search(safe_text(event.subject)) is not None


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
            item = safe_text(item)
            items.append(item if len(item) <= 120 else item[:117] + "…")
    return items[:12]
