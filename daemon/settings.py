"""Configuration: one TOML file, environment overrides, secrets from files or systemd credentials.

Every key carries its help text here (``description=``); ``config/recruitmail.example.toml``
shows them all with examples. Loading raises ``ConfigError`` naming the file, the key and the fix.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from recruitmail.contracts.connector import DirectoryMember
from recruitmail.contracts.errors import ConfigError
from recruitmail.contracts.models import normalise_address

log = logging.getLogger("recruitmail")

DEFAULT_CONFIG_PATH = Path("/etc/recruitmail/recruitmail.toml")
ENV_PREFIX = "RECRUITMAIL_"
"""Environment variables ``RECRUITMAIL_<SECTION>__<KEY>`` override the file."""
LANGUAGES = ("sv", "en", "nb", "da", "fi", "de")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

Localised = dict[str, str]
"""A text per language code, e.g. ``{sv = "…", en = "…"}``."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Default factories are plain functions, not the builtins `list` and `dict`: pydantic reads each
# factory's signature, and a builtin's is parsed from its text with the tokenizer, whose
# regular expressions are compiled on first use (~3 ms of every command's start-up).
def _empty_list() -> list[Any]:
    return []


def _empty_dict() -> dict[Any, Any]:
    return {}


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name such as Europe/Stockholm"
        ) from exc
    return value


class CompanyTexts(Section):
    """Employer-branding texts, one or two lines each, in one language."""

    history: str = Field("", description="History and vision of the company.")
    values: str = Field("", description="The company's values.")
    culture: str = Field("", description="Culture and working environment.")
    social: str = Field(
        "", description="Social life and community: after-work, conferences, events."
    )
    development: str = Field("", description="Development and career: training, mentoring, moves.")


class Company(Section):
    name: str = Field(description="The company name, shown in every mail.")
    domains: list[str] = Field(
        description="Mail domains of the company: attendees outside them are candidates."
    )
    country: str = Field(
        "SE", description="ISO country code for public holidays (holidays package)."
    )
    subdivision: str | None = Field(
        None,
        description="Region for regional public holidays, as the holidays package names it "
        '(e.g. "BY" for Bavaria when country = "DE"); leave out for national holidays only.',
    )
    time_zone: str = Field("Europe/Stockholm", description="Default time zone of recruiters.")
    closure_days: list[date] = Field(
        default_factory=_empty_list, description="Extra company closure days."
    )
    careers_url: str = Field("", description="Link to the careers site.")
    texts: dict[str, CompanyTexts] = Field(
        default_factory=_empty_dict, description="Branding texts per language."
    )

    _zone = field_validator("time_zone")(_check_zone)

    @field_validator("domains")
    @classmethod
    def _lower_domains(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('name at least one company mail domain, e.g. domains = ["example.se"]')
        return [d.strip().lower().lstrip("@") for d in value]


class Person(Section):
    """A colleague who may sit on an interview panel or stand in for a recruiter."""

    name: str = Field(description="Full name.")
    role: Localised | str = Field("", description="Role or job title (text, or one per language).")
    bio: Localised | str = Field(
        "", description="One-line introduction (text, or one per language)."
    )
    phone: str = Field("", description="Phone number, shown when this person stands in.")

    def role_in(self, language: str) -> str:
        return _pick(self.role, language)

    def bio_in(self, language: str) -> str:
        return _pick(self.bio, language)


def _pick(value: Localised | str, language: str) -> str:
    """A text in ``language``; a plain text is the same in every language.

    A text configured only in other languages gives "": one mail never mixes two languages, so
    the templates phrase around a missing title or role instead.
    """
    if isinstance(value, str):
        return value
    return value.get(language, "")


class Stage(Section):
    """One interview stage: the nth interview with a candidate uses the nth stage (the last repeats)."""

    name: Localised = Field(description="What the stage is called, per language.")
    agenda: dict[str, list[str]] = Field(
        default_factory=_empty_dict, description="Agenda items per language."
    )
    next_steps: Localised = Field(
        default_factory=_empty_dict, description="What happens after this stage."
    )
    decision_working_days: int = Field(
        5, ge=0, le=60, description="Working days until the candidate hears back."
    )


DEFAULT_SUBJECT_PATTERN = (
    # Swedish joins words: the compounds that are still candidate interviews are listed out
    # (slutintervju, telefonintervju), so that kundintervju or referensintervju stay out.
    r"(?:anställnings|rekryterings|jobb|slut|telefon|video|första|andra|tredje|sista|case)?"
    r"intervju(?:n|er|erna)?"
    r"|(?:anställnings|rekryterings)?samtal(?:et)?"
    r"|(?:job\s+)?interviews?"
    # Norwegian and Danish share "intervju"/"interview" above; their words for a job interview:
    r"|jobinterview|(?:jobb?|ansettelses|ansættelses)samtale(?:n)?"
    r"|(?:työ)?haastattelu(?:un|ssa|n)?"  # Finnish
    r"|(?:vorstellungs|bewerbungs)gespräch(?:e|s)?"  # German
)
DEFAULT_EXCLUDE_PATTERN = (
    r"feedback|debrief(?:ing)?|process(?:en|er)?|audit|revision(?:en)?|utbildning(?:en)?"
    r"|training|calibration|kalibrering(?:en)?|planering(?:en)?|planning"
)
DEFAULT_MEETING_HOSTS = (
    "teams.microsoft.com",
    "teams.live.com",
    "meet.google.com",
    "zoom.us",
    "webex.com",
)


def _whole_word_pattern(value: str) -> str:
    try:
        compiled = re.compile(rf"(?<!\w)(?:{value})(?!\w)", re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    if value and compiled.search(" ") is not None:
        raise ValueError("the pattern matches an empty subject; name at least one word")
    return value


class Detection(Section):
    """Which calendar events are interviews, and who can make recruitmail write.

    Patterns are regular expressions whose alternatives are matched as whole words,
    case-insensitively: recruitmail wraps them as ``(?<!\\w)(?:PATTERN)(?!\\w)``, so
    "samtal" finds "Samtal med Anna" but not "Kundsamtal" or "Telefonsamtal".
    """

    subject_pattern: str = Field(
        DEFAULT_SUBJECT_PATTERN,
        description=(
            "Regular expression a subject must match to be an interview; its alternatives are "
            "matched as whole words, case-insensitively (write intervju\\w* to allow endings)."
        ),
    )
    exclude_pattern: str = Field(
        DEFAULT_EXCLUDE_PATTERN,
        description=(
            "Regular expression (whole words, case-insensitive): a subject matching it is never "
            'an interview, e.g. "Interview feedback". Empty: exclude nothing.'
        ),
    )
    categories: list[str] = Field(
        default_factory=lambda: ["Rekrytering", "Recruitment"],
        description="Events carrying any of these categories are interviews whatever the subject.",
    )
    english_categories: list[str] = Field(
        default_factory=lambda: ["EN", "English"],
        description="Categories that switch the candidate's mails to English.",
    )
    swedish_categories: list[str] = Field(
        default_factory=lambda: ["SV", "Svenska"],
        description="Categories that switch the candidate's mails to Swedish.",
    )
    external_organisers: Literal["accepted", "never", "always"] = Field(
        "accepted",
        description=(
            "Events organised outside the company (anyone can send an invitation): "
            '"accepted" = only once the recruiter accepted it, "never", or "always". Events the '
            "recruiter or a colleague organised, and events without any organiser (plain ICS "
            "feeds), always count."
        ),
    )
    max_candidates: int = Field(
        3,
        ge=1,
        le=50,
        description="An event with more external attendees than this is not an interview.",
    )

    @field_validator("subject_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        if not value:
            raise ValueError("name at least one word, e.g. intervju|interview")
        return _whole_word_pattern(value)

    @field_validator("exclude_pattern")
    @classmethod
    def _exclude_compiles(cls, value: str) -> str:
        return _whole_word_pattern(value)


class Links(Section):
    """Which meeting links may reach a candidate as links."""

    meeting_hosts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MEETING_HOSTS),
        description=(
            "Hosts whose https links are shown (the host itself or a proper subdomain: zoom.us "
            "covers eu01web.zoom.us). The company's own domains always count. Any other link is "
            "left out of the mail, and status says so."
        ),
    )

    @field_validator("meeting_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        hosts = []
        for host in value:
            cleaned = host.strip().lower().rstrip(".")
            if not cleaned or "/" in cleaned or ":" in cleaned or "@" in cleaned:
                raise ValueError(f"{host!r}: name a host only, e.g. teams.microsoft.com")
            hosts.append(cleaned.removeprefix("*."))
        return hosts


class Touchpoint(Section):
    enabled: bool = Field(True, description="Draft this kind of mail at all.")


class ThankYou(Touchpoint):
    delay_minutes: int = Field(
        15, ge=0, le=24 * 60, description="Minutes after the interview ends."
    )
    valid_working_days: int = Field(
        2, ge=1, le=20, description="Working days after the end it stays worth sending."
    )


class StatusUpdate(Touchpoint):
    after_working_days: int = Field(
        5, ge=1, le=60, description="Working days of silence before an update."
    )
    max_repeats: int = Field(
        2, ge=1, le=10, description="At most this many updates after one interview."
    )
    at: time = Field(time(9, 0), description="Local time of day the update becomes due.")


class WeekendGreeting(Touchpoint):
    weekday: str = Field("friday", description="Day of the week the greeting is due.")
    at: time = Field(time(9, 0), description="Local time it becomes due.")

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value: str) -> str:
        if value.lower() not in WEEKDAYS:
            raise ValueError(f"use one of {', '.join(WEEKDAYS)}")
        return value.lower()


class HolidayGreeting(Touchpoint):
    min_days_off: int = Field(3, ge=2, le=30, description="A run of at least this many days off.")
    at: time = Field(time(9, 0), description="Local time it becomes due.")
    after_contact_days: int = Field(
        3,
        ge=0,
        le=30,
        description=(
            "Not drafted when the recruiter wrote to the candidate within this many days before "
            "the greeting's day, or on that day (0: only that day counts)."
        ),
    )


class VacationNotice(Touchpoint):
    min_working_days: int = Field(
        3, ge=1, le=60, description="Absences of at least this many working days."
    )
    at: time = Field(time(9, 0), description="Local time it becomes due.")


class Touchpoints(Section):
    welcome: Touchpoint = Touchpoint()
    interview_details: Touchpoint = Touchpoint()
    thank_you: ThankYou = ThankYou()
    status_update: StatusUpdate = StatusUpdate()
    weekend_greeting: WeekendGreeting = WeekendGreeting()
    holiday_greeting: HolidayGreeting = HolidayGreeting()
    vacation_notice: VacationNotice = VacationNotice()
    reschedule_notice: Touchpoint = Touchpoint()
    active_days: int = Field(
        30,
        ge=1,
        le=365,
        description="A candidate counts as in process this many days after their last interview.",
    )


class Vacation(Section):
    start: date = Field(description="First day away.")
    end: date = Field(description="Last day away (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> Vacation:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class ProviderOptions(BaseModel):
    """A connector's options: ``type`` names the provider; the provider's own model checks the rest."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str = Field(description="Provider name: ics, maildir, microsoft, google, caldav, imap.")

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _mail_address(value: str) -> str:
    if "@" not in value:
        raise ValueError(f"{value!r} is not a mail address")
    return normalise_address(value)


class Mailbox(Section):
    address: str = Field(description="The recruiter's mail address.")
    name: str = Field(description="The recruiter's name, as candidates see it.")
    title: Localised | str = Field(
        "", description="The recruiter's role (text, or one per language)."
    )
    phone: str = Field("", description="Phone number in the signature.")
    signature: str = Field("", description="Extra signature lines (plain text).")
    language: str = Field("sv", description="Default language of this recruiter's mails.")
    time_zone: str | None = Field(
        None, description="Overrides the mailbox's own and the company's zone."
    )
    stand_in: str = Field(
        "", description="Address (in [people]) of who stands in during vacations."
    )
    vacations: list[Vacation] = Field(default_factory=_empty_list, description="Planned vacations.")
    source: ProviderOptions = Field(description="Where the calendar is read from.")
    sink: ProviderOptions = Field(description="Where drafts are written.")

    _zone = field_validator("time_zone")(lambda cls, v: v if v is None else _check_zone(v))

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _mail_address(value)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return _check_language(value)

    def title_in(self, language: str) -> str:
        return _pick(self.title, language)


class MemberDefaults(Section):
    """What every member of a directory group gets where the directory and the file say nothing."""

    title: Localised | str = Field(
        "", description="Role when the directory has no job title (text, or one per language)."
    )
    phone: str = Field("", description="Phone number in the signature.")
    signature: str = Field("", description="Extra signature lines (plain text).")
    language: str = Field(
        "sv",
        description="Language of the mails when the directory has no preferred language we "
        "write (sv, en, nb, da, fi, de).",
    )
    time_zone: str | None = Field(
        None,
        description="Time zone of every member; leave out to use each mailbox's own (read from "
        "the mailbox), else the company's.",
    )
    stand_in: str = Field(
        "", description="Address (in [people]) of who stands in during vacations."
    )

    _zone = field_validator("time_zone")(lambda cls, v: v if v is None else _check_zone(v))
    _language = field_validator("language")(lambda cls, v: _check_language(v))


class MailboxOverride(Section):
    """A ``[[mailboxes]]`` entry without ``source`` or ``sink``: it changes the directory member
    with its address, field by field (source and sink options key by key)."""

    address: str
    name: str | None = None
    title: Localised | str | None = None
    phone: str | None = None
    signature: str | None = None
    language: str | None = None
    time_zone: str | None = None
    stand_in: str | None = None
    vacations: list[Vacation] | None = None
    source: dict[str, Any] | None = None
    sink: dict[str, Any] | None = None

    _address = field_validator("address")(lambda cls, v: _mail_address(v))
    _zone = field_validator("time_zone")(lambda cls, v: v if v is None else _check_zone(v))
    _language = field_validator("language")(lambda cls, v: v if v is None else _check_language(v))


class MailboxesFrom(Section):
    """A group in the organisation directory whose members are recruiters' mailboxes."""

    type: Literal["microsoft", "google"] = Field(
        description="The directory: microsoft (Entra ID) or google (Workspace)."
    )
    group: str = Field(
        description="The group: its object id (Entra ID), its id or its mail address."
    )
    source: ProviderOptions = Field(
        description="Where each member's calendar is read from (the member's address fills in "
        "the user or subject)."
    )
    sink: ProviderOptions = Field(description="Where each member's drafts are written.")
    directory: dict[str, Any] | None = Field(
        None,
        description="How the directory is read (the provider's sign-in options); default: the "
        "sign-in of source (or sink) when it is the same provider.",
    )
    defaults: MemberDefaults = Field(
        default_factory=MemberDefaults, description="What every member gets by default."
    )

    @field_validator("group")
    @classmethod
    def _group(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name the group: its id or its mail address")
        return value.strip()

    def directory_options(self) -> tuple[str, dict[str, Any]] | None:
        """The directory's raw options and where they come from (``None``: nowhere)."""
        if self.directory is not None:
            return "directory", dict(self.directory)
        for role, options in (("source", self.source), ("sink", self.sink)):
            if options.type == self.type:
                return role, options.options()
        return None


def _check_language(value: str) -> str:
    if value not in LANGUAGES:
        raise ValueError(f"use one of {', '.join(LANGUAGES)}")
    return value


def directory_language(value: str) -> str | None:
    """A directory's preferred language ("sv-SE", "en_GB", "no") as the language we write, if any."""
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    primary = {"no": "nb", "nn": "nb"}.get(primary, primary)
    return primary if primary in LANGUAGES else None


def _split_entries(entries: list[Any]) -> tuple[list[int], dict[int, Any]]:
    """Positions of the full ``[[mailboxes]]`` entries, and the overrides (no source, no sink)
    by their position in the file."""
    full: list[int] = []
    partial: dict[int, Any] = {}
    for position, entry in enumerate(entries):
        if isinstance(entry, dict) and ("source" not in entry or "sink" not in entry):
            partial[position] = entry
        else:
            full.append(position)
    return full, partial


_MEMBER_FIELDS = ("name", "title", "phone", "signature", "language", "time_zone", "stand_in")


def _member_mailbox(
    group: MailboxesFrom,
    member: DirectoryMember,
    entry: Mailbox | None,
    override: MailboxOverride | None,
) -> Mailbox:
    """The mailbox of one directory member (see ``Settings.with_members``)."""
    defaults = group.defaults
    if entry is None and override is None and not member.time_zone:
        # Valid by construction (a directory hands addresses normalised, the language is one
        # we write, the rest comes from validated defaults and templates): every command loads
        # the members last read, and a fleet of thousands must not slow them down.
        return Mailbox.model_construct(
            address=member.address,
            name=member.name or member.address.partition("@")[0],
            title=member.title or defaults.title,
            phone=defaults.phone,
            signature=defaults.signature,
            language=directory_language(member.language) or defaults.language,
            time_zone=defaults.time_zone,
            stand_in=defaults.stand_in,
            vacations=[],
            source=group.source,
            sink=group.sink,
        )
    values: dict[str, Any] = {
        "address": member.address,
        "name": member.name or member.address.partition("@")[0],
        "title": member.title or defaults.title,
        "phone": defaults.phone,
        "signature": defaults.signature,
        "language": directory_language(member.language) or defaults.language,
        "time_zone": member.time_zone or defaults.time_zone,
        "stand_in": defaults.stand_in,
        "source": group.source.model_dump(),
        "sink": group.sink.model_dump(),
    }
    if entry is not None:
        values.update({name: getattr(entry, name) for name in entry.model_fields_set})
    if override is not None:
        for name in override.model_fields_set - {"address"}:
            value = getattr(override, name)
            if name in ("source", "sink") and value is not None:
                template = values[name]
                same = value.get("type", template.get("type")) == template.get("type")
                values[name] = {**template, **value} if same else dict(value)
            elif value is not None:
                values[name] = value
    return Mailbox.model_validate(values)


class Service(Section):
    state_dir: Path = Field(
        Path("/var/lib/recruitmail"), description="Where the SQLite state lives."
    )
    state: str | None = Field(
        None,
        description="A PostgreSQL database for the state instead of SQLite in state_dir, e.g. "
        '"postgresql://recruitmail@db.example.internal/recruitmail?password=credential:pg" '
        "(libpq URL; its password only as a secret reference; copy an existing state over with "
        "`recruitmail state migrate --to URL`).",
    )

    @field_validator("state")
    @classmethod
    def _state_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from urllib.parse import parse_qsl, urlsplit

        value = value.strip()
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("use a postgresql:// URL (leave it out for SQLite in state_dir)")
        parts = urlsplit(value)
        if parts.password is not None:
            raise ValueError(
                "the URL holds a password; give a reference instead: "
                "?password=credential:NAME, file:/path or env:NAME"
            )
        for key, reference in parse_qsl(parts.query, keep_blank_values=True):
            kind, _, name = reference.partition(":")
            if key == "password" and (kind not in ("credential", "file", "env") or not name):
                raise ValueError(
                    "password= must be a secret reference: credential:NAME, file:/path or env:NAME"
                )
        return value

    interval_seconds: int = Field(
        60,
        ge=10,
        le=86400,
        description="Seconds between reconcile passes. An idle pass costs one small request per "
        "mailbox (a delta or sync token), far inside every provider's limits, and a booking is "
        "welcomed within about one interval: sooner than any scheduling tool's own mail.",
    )
    templates_dir: Path | None = Field(
        None, description="Templates that override the defaults, file by file."
    )
    window_past_days: int = Field(
        30, ge=1, le=365, description="Calendar days synced into the past."
    )
    window_future_days: int = Field(
        90, ge=1, le=730, description="Calendar days synced into the future."
    )
    lookback_days: int = Field(
        14,
        ge=1,
        le=90,
        description="How far back missed touchpoints are looked for (and skipped as stale).",
    )
    workers: int = Field(
        32,
        ge=1,
        le=64,
        description="Mailboxes reconciled at the same time. A pass mostly waits for the "
        "provider, so threads overlap that waiting; fewer mailboxes use fewer threads.",
    )
    batch_requests: bool = Field(
        True,
        description="Microsoft 365: ask the calendars of mailboxes whose passes are waiting "
        "ahead, 20 to a JSON batch, instead of one request each.",
    )
    fresh_start_mb: int = Field(
        64,
        ge=0,
        le=1_000_000,
        description="recruitmail run: when the first round (every mailbox's first pass since the "
        "start) grew the daemon by more than this many MB, it starts itself afresh once, in the "
        "same process: the first round reads every calendar whole, and what that leaves behind "
        "is spread too thinly for Python's allocator to give back (docs/OPERATIONS.md, "
        '"Memory"). 0 switches it off.',
    )
    pass_timeout_seconds: int = Field(
        600,
        ge=5,
        le=86400,
        description="A pass running longer than this is hung: the watchdog stops and systemd restarts the service.",
    )
    lookup_grace_seconds: int = Field(
        120,
        ge=0,
        le=3600,
        description="Wait after an unclear create before looking the draft up again.",
    )
    directory_refresh_minutes: int = Field(
        15,
        ge=1,
        le=1440,
        description="Minutes between two readings of the [[mailboxes_from]] groups by the "
        "service (and on SIGHUP): members added or removed are picked up without a restart.",
    )
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    metrics_address: str = Field("127.0.0.1", description="Address of the Prometheus endpoint.")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the Prometheus endpoint (0 = off)."
    )


class Settings(BaseModel):
    """The whole configuration. Environment variables ``RECRUITMAIL_<SECTION>__<KEY>`` override the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    company: Company
    people: dict[str, Person] = Field(
        default_factory=_empty_dict, description="Colleagues by mail address."
    )
    stages: list[Stage] = Field(
        default_factory=_empty_list, description="Interview stages, in order."
    )
    detection: Detection = Detection()
    links: Links = Links()
    touchpoints: Touchpoints = Touchpoints()
    service: Service = Service()
    mailboxes: list[Mailbox] = Field(
        default_factory=_empty_list,
        description="The recruiters whose calendars are watched. An entry with the address of a "
        "directory member changes that member field by field; one without source and sink "
        "does only that.",
    )
    mailboxes_from: list[MailboxesFrom] = Field(
        default_factory=_empty_list,
        description="Directory groups whose members are mailboxes too (see docs/OPERATIONS.md, "
        '"Fleets from the directory").',
    )
    mailbox_overrides: dict[int, MailboxOverride] = Field(
        default_factory=_empty_dict,
        description="Filled from the [[mailboxes]] entries without source and sink, by their "
        "position in the file: write those as [[mailboxes]].",
    )
    languages: dict[str, str] = Field(
        default_factory=_empty_dict,
        description=(
            'The language of one candidate\'s mails, by address: "anna@example.ie" = "en". '
            "Wins over categories, correspondence and the event's text."
        ),
    )

    @field_validator("people")
    @classmethod
    def _people_keys(cls, value: dict[str, Person]) -> dict[str, Person]:
        return {normalise_address(k): v for k, v in value.items()}

    @field_validator("languages")
    @classmethod
    def _language_overrides(cls, value: dict[str, str]) -> dict[str, str]:
        for address, code in value.items():
            if "@" not in address:
                raise ValueError(f"{address!r} is not a mail address")
            if code not in LANGUAGES:
                raise ValueError(f"{address}: use one of {', '.join(LANGUAGES)}, not {code!r}")
        return {normalise_address(a): code for a, code in value.items()}

    _explicit: tuple[Mailbox, ...] | None = PrivateAttr(None)
    _members: dict[int, tuple[DirectoryMember, ...]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_overrides(cls, data: Any) -> Any:
        """``[[mailboxes]]`` entries without source and sink are overrides of directory members."""
        if not isinstance(data, dict) or not data.get("mailboxes_from"):
            return data
        entries = data.get("mailboxes")
        if not isinstance(entries, list):
            return data
        full, partial = _split_entries(entries)
        if partial:
            data = {
                **data,
                "mailboxes": [entries[i] for i in full],
                "mailbox_overrides": {**data.get("mailbox_overrides", {}), **partial},
            }
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        seen: set[str] = set()
        for box in self.mailboxes:
            if box.address in seen:
                raise ValueError(f"mailbox {box.address} is listed twice")
            seen.add(box.address)
            if box.stand_in and normalise_address(box.stand_in) not in self.people:
                raise ValueError(
                    f"mailbox {box.address}: stand_in {box.stand_in!r} is not in [people]; add it there"
                )
        stand_ins: list[tuple[str, str | None]] = [
            (f"mailboxes_from[{i}].defaults", g.defaults.stand_in)
            for i, g in enumerate(self.mailboxes_from)
        ]
        stand_ins += [(f"mailboxes[{i}]", o.stand_in) for i, o in self.mailbox_overrides.items()]
        for where, stand_in in stand_ins:
            if stand_in and normalise_address(stand_in) not in self.people:
                raise ValueError(f"{where}: stand_in {stand_in!r} is not in [people]; add it there")
        for index, group in enumerate(self.mailboxes_from):
            if group.directory_options() is None:
                raise ValueError(
                    f"mailboxes_from[{index}]: neither source nor sink is a {group.type} "
                    "provider: give the directory's sign-in in mailboxes_from.directory"
                )
        if not self.mailboxes and not self.mailboxes_from:
            raise ValueError("configure at least one [[mailboxes]] or [[mailboxes_from]] entry")
        return self

    # -- fleets from the directory ---------------------------------------------------------

    def explicit_mailboxes(self) -> tuple[Mailbox, ...]:
        """The ``[[mailboxes]]`` of the file, before any directory member was added."""
        return self._explicit if self._explicit is not None else tuple(self.mailboxes)

    def members(self, group: int) -> tuple[DirectoryMember, ...]:
        """The members of ``mailboxes_from[group]`` this configuration was expanded with."""
        return self._members.get(group, ())

    def group_of(self, address: str) -> int | None:
        """Which ``mailboxes_from`` group made mailbox ``address`` (``None``: the file alone)."""
        wanted = normalise_address(address)
        for index in sorted(self._members):
            if any(m.address == wanted for m in self._members[index]):
                return index
        return None

    def with_members(self, found: Mapping[int, Sequence[DirectoryMember]]) -> Settings:
        """This configuration with the members of each group (by its index) as mailboxes.

        A member gets its name, title and language (and a time zone, where the directory has
        one) from the directory, the rest from the group's ``defaults`` and its source and
        sink from the group's templates. A ``[[mailboxes]]`` entry with the member's address
        wins for every field it sets: a full entry keeps its place in the list and takes from
        the directory only what it leaves out; an entry without source and sink changes only
        the fields it names (source and sink options key by key). A member of two groups is
        made by the first. A member whose entry does not validate is left out, with a warning.
        """
        explicit = self.explicit_mailboxes()
        by_address = {box.address: position for position, box in enumerate(explicit)}
        overrides = {o.address: o for o in self.mailbox_overrides.values()}
        boxes: list[Mailbox] = list(explicit)
        kept: dict[int, tuple[DirectoryMember, ...]] = {}
        taken: set[str] = set()
        for index, group in enumerate(self.mailboxes_from):
            members = sorted(found.get(index, ()), key=lambda m: m.address)
            kept[index] = tuple(members)
            for member in members:
                if member.address in taken:
                    continue
                taken.add(member.address)
                position = by_address.get(member.address)
                try:
                    box = _member_mailbox(
                        group,
                        member,
                        explicit[position] if position is not None else None,
                        overrides.get(member.address),
                    )
                except ValidationError as exc:
                    log.warning(
                        "directory group %s: member %s left out: %s",
                        group.group,
                        member.address,
                        "; ".join(e["msg"] for e in exc.errors()),
                    )
                    continue
                if position is not None:
                    boxes[position] = box
                else:
                    boxes.append(box)
        expanded = self.model_copy(update={"mailboxes": boxes})
        expanded._explicit = explicit
        expanded._members = kept
        return expanded

    def person(self, address: str) -> Person | None:
        return self.people.get(normalise_address(address))

    def mailbox(self, address: str) -> Mailbox:
        wanted = normalise_address(address)
        for box in self.mailboxes:
            if box.address == wanted:
                return box
        raise ConfigError(f"no mailbox {address!r} in the configuration")

    def zone_for(self, box: Mailbox) -> ZoneInfo:
        return ZoneInfo(box.time_zone or self.company.time_zone)


def config_path(explicit: str | Path | None = None) -> Path:
    """The configuration file: ``--config``, else ``$RECRUITMAIL_CONFIG``, else the system default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("RECRUITMAIL_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_settings(path: str | Path | None = None) -> Settings:
    """Read, validate and return the configuration, or raise ``ConfigError`` saying what to fix."""
    file = config_path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: no such configuration file; copy config/recruitmail.example.toml there "
            "or name another with --config / RECRUITMAIL_CONFIG"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read it ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: TOML syntax error: {exc}") from None
    _resolve_relative_paths(data, file.parent)
    model = _with_environment() if _overridden_by_environment() else Settings
    try:
        settings = model(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(file, exc, data)) from None
    if settings.mailboxes_from:
        # Every command sees the members the service last read; the service and `once` ask
        # the directory again (recruitmail.daemon.runtime.refresh_fleet).
        settings = settings.with_members(
            {i: known.members for i, known in last_known_members(settings).items()}
        )
    return settings


def _overridden_by_environment() -> bool:
    """Whether a ``RECRUITMAIL_<SECTION>…`` variable names a part of the configuration."""
    sections = tuple(f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields)
    return any(variable.upper().startswith(sections) for variable in os.environ)


@functools.cache
def _with_environment() -> type[Settings]:
    """``Settings`` with the environment over the file (pydantic-settings reads the variables)."""
    # Imported here: pydantic-settings costs every command a quarter of a second of start-up,
    # and only a configuration that the environment overrides needs it.
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

    class EnvironmentSettings(Settings, BaseSettings):
        model_config = SettingsConfigDict(
            env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
        )

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # The environment wins over the file, which arrives as init arguments.
            return (env_settings, init_settings)

    return EnvironmentSettings


def _describe(file: Path, exc: ValidationError, data: dict[str, Any] | None = None) -> str:
    lines = [f"{file}: {exc.error_count()} problem(s) in the configuration:"]
    entries = (data or {}).get("mailboxes")
    full: list[int] = []
    if (data or {}).get("mailboxes_from") and isinstance(entries, list):
        full = _split_entries(entries)[0]
    for err in exc.errors():
        loc = tuple(err["loc"])
        # Overrides are [[mailboxes]] entries: name them by their place in the file.
        if loc[:1] == ("mailbox_overrides",) and len(loc) > 1:
            loc = ("mailboxes", int(loc[1]), *loc[2:])
        elif full and loc[:1] == ("mailboxes",) and len(loc) > 1 and isinstance(loc[1], int):
            loc = ("mailboxes", full[loc[1]], *loc[2:])
        where = _key_path(loc)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (misspelt? see config/recruitmail.example.toml)"
        elif err["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


_PATH_KEYS = {"path", "state_dir", "templates_dir", "maildir", "ca_file", "token_cache", "key_file"}


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> None:
    """Relative paths in the file are relative to the file, not to the working directory."""

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in _PATH_KEYS and isinstance(v, str) and v and not _is_absolute(v):
                    node[k] = str((base / v).resolve())
                else:
                    visit(v)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(data)


def _is_absolute(value: str) -> bool:
    return value.startswith(("/", "~")) or "://" in value


# -- the members last read from the directory ------------------------------------------------


@dataclass(frozen=True)
class KnownMembers:
    """What the directory last said about one ``mailboxes_from`` group, kept between processes."""

    members: tuple[DirectoryMember, ...] = ()
    read_at: datetime | None = None  # when the directory last answered with these members
    problem: str = ""  # why the last reading was not taken ("" when it was)
    problem_since: datetime | None = None


def members_file(state_dir: Path, group: MailboxesFrom) -> Path:
    """Where the last known members of ``group`` are kept (mode 0600, in the state directory)."""
    digest = hashlib.sha256(f"{group.type}|{group.group}".encode()).hexdigest()[:16]
    return state_dir / "directory" / f"{group.type}-{digest}.json"


def read_known_members(state_dir: Path, group: MailboxesFrom) -> KnownMembers:
    """The last known members of ``group`` (none when never read or unreadable)."""
    path = members_file(state_dir, group)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        members = tuple(
            DirectoryMember(**{k: str(v) for k, v in m.items() if k in _MEMBER_KEYS})
            for m in data.get("members", [])
        )
        return KnownMembers(
            members,
            _instant(data.get("read_at")),
            str(data.get("problem") or ""),
            _instant(data.get("problem_since")),
        )
    except FileNotFoundError:
        return KnownMembers()
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        log.warning("ignoring the unreadable member list %s (%s)", path, exc)
        return KnownMembers()


def write_known_members(state_dir: Path, group: MailboxesFrom, known: KnownMembers) -> None:
    """Keep what the directory said about ``group`` for the next reading and the next process."""
    path = members_file(state_dir, group)
    data = {
        "type": group.type,
        "group": group.group,
        "read_at": known.read_at.isoformat() if known.read_at else None,
        "problem": known.problem,
        "problem_since": known.problem_since.isoformat() if known.problem_since else None,
        "members": [
            {k: getattr(m, k) for k in _MEMBER_KEYS if getattr(m, k)} for m in known.members
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def last_known_members(settings: Settings) -> dict[int, KnownMembers]:
    """What the directory last said about each ``mailboxes_from`` group, by the group's index."""
    state_dir = settings.service.state_dir
    return {i: read_known_members(state_dir, g) for i, g in enumerate(settings.mailboxes_from)}


_MEMBER_KEYS = ("address", "name", "title", "language", "time_zone", "id")


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
