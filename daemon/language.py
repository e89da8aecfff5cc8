"""The language a candidate's mails are written in, decided per candidate (pure: no clock, no I/O).

``choose_language`` weighs the signals strongest first and says which one decided:

1. an explicit override: the ``[languages]`` map of the configuration, then one stored with
   ``recruitmail language ADDR xx``;
2. the interview's categories (``EN``, ``Norsk``, ``Deutsch`` …);
3. the language the recruiter last wrote to the candidate in (a sample of that mail's text);
4. the event's own text (subject and description);
5. the recruiter's default language.

A signal naming a language that has no templates is passed over, never half-used. Text is
detected with lingua limited to the configured languages, in its low-accuracy (trigram) mode: the
high-accuracy models cost about 190 MB and 6 s to load for six languages, the trigram ones about
17 MB and 0.3 s, and they agree on the texts these signals carry (see tests/test_language.py).
lingua is imported only when a text is actually detected.

``foreign_sentences`` uses the same detector on a rendered mail: it names every sentence written
in another language than the mail's, so a mail never pastes, say, a Swedish agenda line into a
Norwegian mail.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, TypeVar

from recruitmail.contracts.connector import own_words
from recruitmail.contracts.models import normalise_address

if TYPE_CHECKING:
    from lingua import LanguageDetector

T = TypeVar("T")

# lingua's names for our language codes (Norwegian bokmål is its own language there).
_LINGUA_NAMES = {
    "sv": "SWEDISH",
    "en": "ENGLISH",
    "nb": "BOKMAL",
    "da": "DANISH",
    "fi": "FINNISH",
    "de": "GERMAN",
}

DEFAULT_CATEGORY_NAMES: dict[str, tuple[str, ...]] = {
    "sv": ("SV", "Svenska", "Swedish"),
    "en": ("EN", "English", "Engelska"),
    "nb": ("NB", "NO", "Norsk", "Bokmål", "Norwegian"),
    "da": ("DA", "DK", "Dansk", "Danish"),
    "fi": ("FI", "Suomi", "Finnish"),
    "de": ("DE", "Deutsch", "German"),
}
"""Calendar categories that name a language, per language code (matched case-insensitively)."""


class Reason(StrEnum):
    """Which signal decided a candidate's language."""

    CONFIGURED = "configured"
    STORED = "stored"
    CATEGORY = "category"
    CORRESPONDENCE = "correspondence"
    EVENT_TEXT = "event text"
    DEFAULT = "default"

    @property
    def explanation(self) -> str:
        """A short phrase for ``recruitmail status``: "language: nb (…)"."""
        return _EXPLANATIONS[self]


_EXPLANATIONS = {
    Reason.CONFIGURED: "set for this address in [languages] of the configuration",
    Reason.STORED: "set with recruitmail language",
    Reason.CATEGORY: "from the interview's category",
    Reason.CORRESPONDENCE: "the language of your last mail to the candidate",
    Reason.EVENT_TEXT: "the language of the interview's title and description",
    Reason.DEFAULT: "your default language",
}


@dataclass(frozen=True)
class LanguageSignals:
    """What is known about one candidate that may tell their language.

    ``category`` is the language code the interview's categories name (see
    ``category_language``); ``last_written`` a sample of the recruiter's last mail to the candidate
    (quoted replies are dropped here); ``event_text`` the event's subject and description.
    """

    address: str = ""
    stored: str | None = None
    category: str | None = None
    last_written: str = ""
    event_text: str = ""


@dataclass(frozen=True)
class LanguagePolicy:
    """The configuration's part: the languages with templates, the recruiter's default, and the
    ``[languages]`` map (address → code)."""

    languages: tuple[str, ...]
    default: str
    overrides: Mapping[str, str] = field(default_factory=dict)


def choose_language(signals: LanguageSignals, configured: LanguagePolicy) -> tuple[str, Reason]:
    """The language for this candidate's mails and the signal that decided it."""
    usable = set(configured.languages)
    overrides = {normalise_address(a): code for a, code in configured.overrides.items()}
    address = normalise_address(signals.address) if signals.address else ""
    if address and overrides.get(address) in usable:
        return overrides[address], Reason.CONFIGURED
    if signals.stored in usable:
        return signals.stored, Reason.STORED
    if signals.category in usable:
        return signals.category, Reason.CATEGORY
    written = _text_language(without_quoted_reply(signals.last_written), configured)
    if written is not None:
        return written, Reason.CORRESPONDENCE
    described = _text_language(signals.event_text, configured)
    if described is not None:
        return described, Reason.EVENT_TEXT
    return configured.default, Reason.DEFAULT


def clearly_other_language(text: str, language: str, languages: Iterable[str]) -> str | None:
    """The language ``text`` is clearly written in, when that is not ``language`` (else None):
    calendar text in another language stays out of a mail; names and noise stay in."""
    shares = language_shares(text, languages)
    if not shares:
        return None
    best = max(shares, key=lambda code: shares[code])
    return best if best != language and shares[best] >= SWITCH_CONFIDENCE else None


def _text_language(text: str, configured: LanguagePolicy) -> str | None:
    """The language of a text, when it says so clearly enough to leave the recruiter's default:
    a candidate must never get another language from noise (a title with a template-like string
    reads as Norwegian at 0.63; real sentences read at 0.99 or more)."""
    shares = language_shares(text, configured.languages)
    if not shares:
        return None
    best = max(shares, key=lambda code: shares[code])
    needed = MIN_CONFIDENCE if best == configured.default else SWITCH_CONFIDENCE
    return best if shares[best] >= needed else None


def category_language(
    categories: Iterable[str],
    languages: Iterable[str],
    names: Mapping[str, Iterable[str]] = DEFAULT_CATEGORY_NAMES,
) -> str | None:
    """The language code the first language-naming category stands for, if any."""
    usable = set(languages)
    by_name = {
        name.casefold(): code
        for code, spelled in names.items()
        if code in usable
        for name in spelled
    }
    for category in categories:
        code = by_name.get(category.strip().casefold())
        if code is not None:
            return code
    return None


# -- detection -------------------------------------------------------------------------------------

MIN_LETTERS = 12
"""Shorter texts (after links, addresses and numbers are taken out) tell nothing reliable."""
MIN_WORDS = 2
MIN_CONFIDENCE = 0.6
SWITCH_CONFIDENCE = 0.9
"""To write to a candidate in another language than the recruiter's default, the text must say so
this clearly."""
"""The detected language must hold at least this share of the confidence: "Jobsamtale med Mette
Hansen" splits evenly between Danish and Norwegian and decides nothing."""

_NOISE = re.compile(
    r"https?://\S+|www\.\S+|\S+@\S+|[\w.-]+\.(?:com|se|no|dk|fi|de|ie|org|net|example)\b\S*|\d+",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_]{2,}")


def without_quoted_reply(text: str, limit: int = 4_000) -> str:
    """The recruiter's own words in a mail (``own_words``, as every sink's ``last_sent_text``
    gives them): quoted lines and everything from a reply header or signature on are dropped,
    and at most ``limit`` characters are kept."""
    return own_words(text, limit)


def _cleaned(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    return " ".join(_NOISE.sub(" ", text).split())


def language_shares(text: str, languages: Iterable[str]) -> dict[str, float]:
    """Each usable language's share of the detector's confidence for ``text`` (empty when the
    text is too short to tell, or no language can be detected)."""
    codes = tuple(sorted(code for code in set(languages) if code in _LINGUA_NAMES))
    cleaned = _cleaned(text)
    words = _WORD.findall(cleaned)
    if len(codes) < 2 or len(words) < MIN_WORDS or sum(map(len, words)) < MIN_LETTERS:
        return {}
    detector = _detector(codes)
    by_name = {name: code for code, name in _LINGUA_NAMES.items()}
    return {
        by_name[value.language.name]: value.value
        for value in detector.compute_language_confidence_values(cleaned)
        if value.language.name in by_name
    }


def detect_language(text: str, languages: Iterable[str]) -> str | None:
    """The language ``text`` is written in, among ``languages``, or None when it does not say.

    With a single usable language there is nothing to decide and None is returned.
    """
    shares = language_shares(text, languages)
    if not shares:
        return None
    best = max(shares, key=lambda code: shares[code])
    return best if shares[best] >= MIN_CONFIDENCE else None


@cache
def _detector(codes: tuple[str, ...]) -> LanguageDetector:
    # Imported here: only a pass that has text to detect pays for lingua.
    from lingua import Language, LanguageDetectorBuilder

    wanted = [getattr(Language, _LINGUA_NAMES[code]) for code in codes]
    return LanguageDetectorBuilder.from_languages(*wanted).with_low_accuracy_mode().build()


# -- one language per mail -------------------------------------------------------------------------

MIN_SENTENCE_WORDS = 5
"""Shorter pieces ("du er ikke glemt!" is Danish and Norwegian alike, a signature line, a place)
are not judged."""
FOREIGN_SHARE = 0.9
EXPECTED_SHARE_AT_MOST = 0.05
"""A sentence is foreign when another language holds at least ``FOREIGN_SHARE`` of the confidence
and the mail's own language at most ``EXPECTED_SHARE_AT_MOST``: close languages (Norwegian and
Danish) share whole sentences, and those are not a mix."""
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n+|\s+[–—]\s+")


def sentences(text: str) -> list[str]:
    """The sentences (and list items, lines, dash-separated clauses) of a rendered text part."""
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece.strip()]


def foreign_sentences(
    text: str, language: str, languages: Iterable[str], *, ignore: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Each sentence of ``text`` written in another of ``languages`` than ``language``, with the
    language it is in.

    The strings in ``ignore`` (names of people, the company, places: they read as any language)
    are taken out of each sentence before it is judged; what is left must have at least
    ``MIN_SENTENCE_WORDS`` words.
    """
    usable = tuple(languages)
    names = sorted({name for name in ignore if name.strip()}, key=len, reverse=True)
    found: list[tuple[str, str]] = []
    for sentence in sentences(text):
        judged = sentence
        for name in names:
            judged = judged.replace(name, " ")
        if len(_WORD.findall(_cleaned(judged))) < MIN_SENTENCE_WORDS:
            continue
        shares = language_shares(judged, usable)
        if not shares:
            continue
        best = max(shares, key=lambda code: shares[code])
        if (
            best != language
            and shares[best] >= FOREIGN_SHARE
            and shares.get(language, 0.0) <= EXPECTED_SHARE_AT_MOST
        ):
            found.append((sentence, best))
    return found


def mixes_languages(
    text: str, language: str, languages: Iterable[str], *, ignore: Iterable[str] = ()
) -> bool:
    """Whether ``text`` (a mail written in ``language``) holds a sentence in another language."""
    return bool(foreign_sentences(text, language, languages, ignore=ignore))


def in_language(texts: Mapping[str, T] | T, language: str, empty: T) -> T:
    """A configured text (or list of agenda lines) for ``language``: the value itself when it is
    one for every language (a plain string), the entry for ``language`` when there is one, else
    ``empty`` — never another language's entry, so the template phrases around the gap instead
    of mixing two languages in one mail."""
    if not isinstance(texts, Mapping):
        return texts
    found = texts.get(language)
    return found if found else empty
