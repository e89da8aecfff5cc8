"""The candidate's language: which signal decides it, and that no mail mixes two languages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recruitmail.contracts.connector import SENT_EXCERPT_CHARS, own_words
from recruitmail.contracts.errors import ConfigError
from recruitmail.contracts.models import MailKind
from recruitmail.daemon.language import (
    LanguagePolicy,
    LanguageSignals,
    Reason,
    category_language,
    choose_language,
    detect_language,
    foreign_sentences,
    in_language,
    mixes_languages,
    without_quoted_reply,
)
from recruitmail.daemon.render import Renderer
from recruitmail.daemon.samples import SAMPLE_LANGUAGES, sample_context
from recruitmail.daemon.settings import LANGUAGES, load_settings
from tests.template_checks import visible_text

SWEDISH_RECRUITER = LanguagePolicy(languages=LANGUAGES, default="sv")

SWEDISH_EVENT = (
    "Intervju med Anna Svensson\n"
    "Vi går igenom din erfarenhet, berättar om teamet och svarar på dina frågor."
)
ENGLISH_EVENT = (
    "Interview: Aoife Murphy (Product Designer)\n"
    "Agenda: we introduce the team, you tell us about your work, then your questions."
)

# (who, signals, policy, expected language, expected reason)
CANDIDATES: list[tuple[str, LanguageSignals, LanguagePolicy, str, Reason]] = [
    (
        "a Swedish event for a Swedish recruiter",
        LanguageSignals("anna@example.se", event_text=SWEDISH_EVENT),
        SWEDISH_RECRUITER,
        "sv",
        Reason.EVENT_TEXT,
    ),
    (
        "an English title and agenda, a candidate at an .ie address (issue 14)",
        LanguageSignals("aoife@example.ie", event_text=ENGLISH_EVENT),
        SWEDISH_RECRUITER,
        "en",
        Reason.EVENT_TEXT,
    ),
    (
        "a Norwegian event",
        LanguageSignals(
            "ola@example.no",
            event_text="Intervju med Ola Nordmann\nVi går gjennom erfaringen din og forteller "
            "litt om hvordan vi jobber i teamet.",
        ),
        SWEDISH_RECRUITER,
        "nb",
        Reason.EVENT_TEXT,
    ),
    (
        "a Finnish event",
        LanguageSignals(
            "matti@example.fi",
            event_text="Haastattelu: Matti Virtanen\nKäymme läpi kokemuksesi ja kerromme tiimistä.",
        ),
        SWEDISH_RECRUITER,
        "fi",
        Reason.EVENT_TEXT,
    ),
    (
        "the recruiter last wrote in Danish, the event is Swedish",
        LanguageSignals(
            "mette@example.dk",
            last_written="Hej Mette, tak for snakken i går. Vi glæder os til at se dig igen i "
            "næste uge.",
            event_text=SWEDISH_EVENT,
        ),
        SWEDISH_RECRUITER,
        "da",
        Reason.CORRESPONDENCE,
    ),
    (
        "the recruiter last wrote in German",
        LanguageSignals(
            "lena@example.de",
            last_written="Hallo Lena, vielen Dank für das nette Gespräch gestern. Wir melden "
            "uns bald bei dir.",
            event_text="Intervju Lena Müller",
        ),
        SWEDISH_RECRUITER,
        "de",
        Reason.CORRESPONDENCE,
    ),
    (
        "an English reply on top of a quoted Swedish thread counts as English",
        LanguageSignals(
            "sean@example.ie",
            last_written="Hi Sean, thanks so much – see you on Monday!\n\n"
            "Den tis 1 dec. 2026 skrev Maria Lind:\n"
            "> Hej Sean, tack för att du hörde av dig. Vi ses på måndag på kontoret.\n",
            event_text=SWEDISH_EVENT,
        ),
        SWEDISH_RECRUITER,
        "en",
        Reason.CORRESPONDENCE,
    ),
    (
        "the configuration's [languages] map wins over everything",
        LanguageSignals(
            "Aoife@Example.IE",
            stored="sv",
            category="sv",
            last_written="Hej Aoife, tack för samtalet i går. Vi hörs nästa vecka.",
            event_text=SWEDISH_EVENT,
        ),
        LanguagePolicy(LANGUAGES, "sv", overrides={"aoife@example.ie": "en"}),
        "en",
        Reason.CONFIGURED,
    ),
    (
        "a stored override (recruitmail language) wins over a category",
        LanguageSignals("matti@example.fi", stored="fi", category="en", event_text=ENGLISH_EVENT),
        SWEDISH_RECRUITER,
        "fi",
        Reason.STORED,
    ),
    (
        "a category wins over the event's text",
        LanguageSignals("ola@example.no", category="nb", event_text=SWEDISH_EVENT),
        SWEDISH_RECRUITER,
        "nb",
        Reason.CATEGORY,
    ),
    (
        "mixed signals: an English mail from the recruiter beats a Swedish event",
        LanguageSignals(
            "priya@example.com",
            last_written="Hi Priya, great to talk today. I'll send the details for the next "
            "round tomorrow.",
            event_text=SWEDISH_EVENT,
        ),
        SWEDISH_RECRUITER,
        "en",
        Reason.CORRESPONDENCE,
    ),
    (
        "nothing to go on: the recruiter's default",
        LanguageSignals("kim@example.com", event_text="Intervju"),
        SWEDISH_RECRUITER,
        "sv",
        Reason.DEFAULT,
    ),
    (
        "too close to call between Danish and Norwegian: the default, not a guess",
        LanguageSignals("mette@example.dk", event_text="Jobsamtale med Mette Hansen"),
        LanguagePolicy(LANGUAGES, "en"),
        "en",
        Reason.DEFAULT,
    ),
    (
        "an override naming a language without templates is passed over",
        LanguageSignals("jean@example.fr", stored="fr", event_text=ENGLISH_EVENT),
        LanguagePolicy(LANGUAGES, "sv", overrides={"jean@example.fr": "fr"}),
        "en",
        Reason.EVENT_TEXT,
    ),
    (
        "detection is limited to the configured languages: Danish reads as Swedish",
        LanguageSignals(
            "mette@example.dk",
            last_written="Hej Mette, tak for snakken i går. Vi glæder os til at se dig igen.",
        ),
        LanguagePolicy(("sv", "en"), "en"),
        "sv",
        Reason.CORRESPONDENCE,
    ),
    (
        "a German event for a German recruiter",
        LanguageSignals(
            "jonas@example.de",
            event_text="Vorstellungsgespräch mit Jonas Weber\nWir stellen das Team vor und "
            "sprechen über deine Erfahrung.",
        ),
        LanguagePolicy(LANGUAGES, "de"),
        "de",
        Reason.EVENT_TEXT,
    ),
]


@pytest.mark.parametrize(
    ("signals", "policy", "language", "reason"),
    [case[1:] for case in CANDIDATES],
    ids=[case[0] for case in CANDIDATES],
)
def test_the_candidates_language_and_why(
    signals: LanguageSignals, policy: LanguagePolicy, language: str, reason: Reason
) -> None:
    assert choose_language(signals, policy) == (language, reason)


def test_every_reason_can_be_explained_in_status() -> None:
    assert all(reason.explanation for reason in Reason)
    assert Reason.CORRESPONDENCE.explanation == "the language of your last mail to the candidate"


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        (["Rekrytering", "Norsk"], "nb"),
        (["en"], "en"),
        (["DEUTSCH"], "de"),
        (["Suomi", "EN"], "fi"),  # the first that names a language
        (["Rekrytering"], None),
        (["Français"], None),
    ],
)
def test_categories_name_a_language(categories: list[str], expected: str | None) -> None:
    assert category_language(categories, LANGUAGES) == expected


def test_a_category_for_a_language_without_templates_names_none() -> None:
    assert category_language(["Norsk"], ("sv", "en")) is None


def test_quoted_replies_and_forwarded_headers_are_not_the_recruiters_words() -> None:
    mail = (
        "Thanks, see you then!\n"
        "> Hej, passar det på måndag?\n"
        "\n"
        "Am Mo., 30. Nov. 2026 schrieb Lena Müller <lena@example.de>:\n"
        "Danke für die Einladung.\n"
    )
    assert without_quoted_reply(mail).strip() == "Thanks, see you then!"


@pytest.mark.parametrize(
    ("sent", "own"),
    [
        ("Hej Anna!\nVi ses på torsdag.\n\nDen 3 dec. 2026 kl. 10:12 skrev Anna <a@b.se>:\n"
         "> Hello!", "Hej Anna!\nVi ses på torsdag."),
        ("Hei Ola!\nTakk!\n\n3. des. 2026 kl. 10:12 skrev Ola Nordmann <o@b.no>:\n> Hej",
         "Hei Ola!\nTakk!"),
        ("Hei Aino!\nKiitos!\n\nAino Virtanen kirjoitti 3.12.2026 klo 10.12:\n> Hej",
         "Hei Aino!\nKiitos!"),
        ("Hi Liam,\nthanks!\n\n-----Original Message-----\nFrom: Liam\nSent: Monday",
         "Hi Liam,\nthanks!"),
        ("Hej Mette!\nTak.\n________________________________\nFra: Mette", "Hej Mette!\nTak."),
        ("Hej!\nVi hörs.\n-- \nLisa Ek\nRekryterare, Nordljus", "Hej!\nVi hörs."),
        # A preview or snippet has no line breaks: the header inside the line ends the words.
        ("Hallo Jonas, danke für das Gespräch! Von: Jonas Müller Gesendet: Montag, 30. November",
         "Hallo Jonas, danke für das Gespräch!"),
        ("Hi Emma, see you Thursday! On Fri, 4 Dec 2026 at 10:12, Emma <e@x.ie> wrote: > Hej",
         "Hi Emma, see you Thursday!"),
        # Words that only look like a header stay.
        ("Hej Karin!\nSom jag skrev i fredags: vi ses på kontoret.\n",
         "Hej Karin!\nSom jag skrev i fredags: vi ses på kontoret."),
    ],
)  # fmt: skip
def test_a_sent_mail_is_cut_to_the_recruiter_s_own_words(sent: str, own: str) -> None:
    assert own_words(sent) == own


def test_the_recruiter_s_own_words_are_bounded() -> None:
    long = "Hej! " + "Vi ses snart och pratar mer om rollen. " * 2_000
    assert len(own_words(long)) == SENT_EXCERPT_CHARS
    assert own_words("> only quoted\n> text") == ""


def test_short_or_empty_text_decides_nothing() -> None:
    assert detect_language("", LANGUAGES) is None
    assert detect_language("Hej!", LANGUAGES) is None
    assert (
        detect_language("https://teams.microsoft.com/l/meetup-join/19%3ameeting", LANGUAGES) is None
    )
    assert detect_language("Vi ses på kontoret i morgon klockan nio.", ("sv",)) is None


# -- configured texts fall back by language, never into another language --------------------------


def test_a_text_configured_in_another_language_is_left_out_not_pasted() -> None:
    agenda = {"sv": ["Vi presenterar oss", "Dina frågor"]}
    assert in_language(agenda, "nb", []) == []
    assert in_language(agenda, "sv", []) == ["Vi presenterar oss", "Dina frågor"]
    assert in_language({"sv": "Utvecklingschef", "en": ""}, "en", "") == ""
    assert in_language("Erik Johansson", "fi", "") == "Erik Johansson"  # one text for all


# -- no mail mixes two languages -----------------------------------------------------------------

# Proper names read as any language; the check judges the words around them.
NAMES = (
    "Nordvik Systems AB",
    "Nordvik",
    "Anna Svensson",
    "Anna",
    "Maria Lind",
    "Erik Johansson",
    "Sara Ahmed",
    "Jonas Berg",
    "Storgatan",
    "Umeå",
    "Sundsvall Energi",
)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


@pytest.mark.parametrize("language", SAMPLE_LANGUAGES)
@pytest.mark.parametrize("sparse", [False, True], ids=["full", "sparse"])
def test_no_sample_mail_mixes_languages(renderer: Renderer, language: str, sparse: bool) -> None:
    for kind in MailKind:
        mail = renderer.render(
            kind.value, language, sample_context(kind.value, language, sparse=sparse)
        )
        for part, text in (
            ("subject", mail.subject),
            ("text", mail.text),
            ("html", visible_text(mail.html)),
        ):
            foreign = foreign_sentences(text, language, SAMPLE_LANGUAGES, ignore=NAMES)
            assert foreign == [], f"{language}/{kind.value} {part}: {foreign}"


def _welcome_with_agenda(language: str, agenda: list[str]) -> dict[str, Any]:
    context = sample_context("welcome", language)
    context["interview"]["agenda"] = agenda
    return context


SWEDISH_AGENDA = [
    "Vi presenterar oss och berättar om teamet",
    "Du berättar om dig själv och vad du letar efter",
]


@pytest.mark.parametrize("language", ["nb", "da", "fi", "de", "en"])
def test_a_pasted_swedish_agenda_is_caught(renderer: Renderer, language: str) -> None:
    mail = renderer.render("welcome", language, _welcome_with_agenda(language, SWEDISH_AGENDA))
    foreign = foreign_sentences(mail.text, language, SAMPLE_LANGUAGES, ignore=NAMES)
    assert ("Du berättar om dig själv och vad du letar efter", "sv") in foreign
    assert mixes_languages(visible_text(mail.html), language, SAMPLE_LANGUAGES, ignore=NAMES)


@pytest.mark.parametrize("language", ["nb", "da", "fi", "de"])
def test_the_fallback_rule_keeps_the_mail_in_one_language(
    renderer: Renderer, language: str
) -> None:
    agenda = in_language({"sv": SWEDISH_AGENDA}, language, [])
    mail = renderer.render("welcome", language, _welcome_with_agenda(language, agenda))
    assert not mixes_languages(mail.text, language, SAMPLE_LANGUAGES, ignore=NAMES)
    assert "berättar" not in mail.text


# -- the [languages] map of the configuration ------------------------------------------------------


def _config_with(tmp_path: Path, extra: str) -> Path:
    example = Path(__file__).resolve().parent.parent / "config" / "recruitmail.example.toml"
    path = tmp_path / "recruitmail.toml"
    path.write_text(example.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


def test_the_configuration_maps_an_address_to_a_language(tmp_path: Path) -> None:
    settings = load_settings(_config_with(tmp_path, '\n[languages]\n"Aoife@Example.IE" = "en"\n'))
    assert settings.languages == {"aoife@example.ie": "en"}
    policy = LanguagePolicy(LANGUAGES, "sv", overrides=settings.languages)
    signals = LanguageSignals("aoife@example.ie", event_text=SWEDISH_EVENT)
    assert choose_language(signals, policy) == ("en", Reason.CONFIGURED)


def test_a_language_without_templates_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="languages.*use one of sv, en, nb, da, fi, de, not 'fr'"):
        load_settings(_config_with(tmp_path, '\n[languages]\n"jean@example.fr" = "fr"\n'))
