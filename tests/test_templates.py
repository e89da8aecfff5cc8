"""The default templates and the renderer, read the way a recruiter reads a draft."""

from __future__ import annotations

import copy
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from recruitmail.contracts.errors import ConfigError, RenderError
from recruitmail.contracts.models import MailKind
from recruitmail.daemon.render import MAX_PART_BYTES, TEMPLATE_FILES, Renderer, default_template_dir
from recruitmail.daemon.samples import SAMPLE_LANGUAGES, sample_context
from tests.template_checks import CLOSING, EMPTY_ELEMENT, glitches, instructions, visible_text

KINDS = [kind.value for kind in MailKind]
LANGUAGES = ["sv", "en"]

# A word or phrase each subject must carry, per language: proves the subject is about the right
# thing and in the right language.
SUBJECT_WORDS = {
    "sv": {
        "welcome": "Välkommen på intervju",
        "interview_details": "Inför andra intervjun",
        "reschedule_notice": "Ny tid",
        "thank_you": "Tack för intervjun",
        "status_update": "lägesrapport",
        "weekend_greeting": "Trevlig helg",
        "holiday_greeting": "God jul",
        "vacation_notice": "ledig",
    },
    "en": {
        "welcome": "Welcome to your interview",
        "interview_details": "second interview",
        "reschedule_notice": "New time",
        "thank_you": "Thank you for the interview",
        "status_update": "update",
        "weekend_greeting": "weekend",
        "holiday_greeting": "Merry Christmas",
        "vacation_notice": "away",
    },
}
FOREIGN_WORDS = {
    "sv": ("Hello", "Thank", "Best regards", "the "),
    "en": ("Hej", "Tack", " och ", "Vänliga"),
}


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(None)


def body_of(text: str, language: str) -> str:
    """The text part without the signature (everything before the closing line)."""
    return text[: text.rindex(CLOSING[language])]


@pytest.mark.parametrize("sparse", [False, True], ids=["full", "sparse"])
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_template_renders_cleanly(
    renderer: Renderer, kind: str, language: str, sparse: bool
) -> None:
    mail = renderer.render(kind, language, sample_context(kind, language, sparse=sparse))

    assert mail.subject.strip() == mail.subject and mail.subject
    if not (sparse and kind == "holiday_greeting"):
        assert SUBJECT_WORDS[language][kind] in mail.subject
    for word in FOREIGN_WORDS[language]:
        assert word not in mail.subject
        assert word not in body_of(mail.text, language)

    greeting = {"sv": ("Hej!", "Hej Anna!"), "en": ("Hello,", "Hi Anna,")}[language][not sparse]
    assert mail.text.startswith(greeting + "\n\n")
    assert "Maria Lind" in mail.text.split(CLOSING[language])[-1]

    html_text = visible_text(mail.html)
    assert glitches(mail.text) == []
    assert glitches(mail.subject) == []
    assert glitches(html_text) == []
    assert EMPTY_ELEMENT.search(mail.html) is None
    assert html_text.startswith("Nordvik Systems AB\n" + greeting)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_html_is_self_contained_and_narrow(renderer: Renderer, kind: str, language: str) -> None:
    html = renderer.render(kind, language, sample_context(kind, language)).html.lower()
    assert html.startswith("<!doctype html>")
    assert "max-width:600px" in html
    for forbidden in ("<script", "src=", "<link", "@import", "url(", "<style", "<img"):
        assert forbidden not in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_welcome_has_everything_the_candidate_needs(renderer: Renderer, language: str) -> None:
    context = sample_context("welcome", language)
    mail = renderer.render("welcome", language, context)
    interview = context["interview"]
    for part in (mail.text, visible_text(mail.html)):
        assert interview["date"] in part
        assert interview["date"].split()[0] in ("torsdag", "Thursday")
        assert interview["time"] in part and interview["end_time"] in part
        assert interview["zone"] in part
        assert interview["duration"] in part
        assert interview["location"] in part
        for person in interview["panel"]:
            assert person["name"] in part and person["role"] in part
            assert person["bio"] in part
        for item in interview["agenda"]:
            assert item in part
        for text in ("history", "values", "culture", "social", "development"):
            assert context["company"][text] in part
        assert "Maria Lind" in part and context["recruiter"]["title"].lower() in part.lower()
    # The panel line reads "name, role – bio".
    erik = interview["panel"][0]
    assert f"- {erik['name']}, {erik['role']} – {erik['bio']}" in mail.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_only_the_welcome_carries_the_employer_branding(renderer: Renderer, language: str) -> None:
    values = sample_context("welcome", language)["company"]["values"]
    for kind in KINDS:
        mail = renderer.render(kind, language, sample_context(kind, language))
        assert (values in mail.text) is (kind == "welcome"), kind


@pytest.mark.parametrize("language", LANGUAGES)
def test_branding_lines_appear_only_when_configured(renderer: Renderer, language: str) -> None:
    context = sample_context("welcome", language)
    context["company"].update(history="", values="", social="")
    mail = renderer.render("welcome", language, context)
    label = {"sv": "Våra värderingar", "en": "Our values"}[language]
    assert label not in mail.text and label not in mail.html
    assert context["company"]["culture"] in mail.text
    assert glitches(mail.text) == [] and EMPTY_ELEMENT.search(mail.html) is None


@pytest.mark.parametrize("language", LANGUAGES)
def test_thank_you_quotes_the_notes_summary_and_reads_complete_without(
    renderer: Renderer, language: str
) -> None:
    lead = {"sv": "Det här tog vi med oss från samtalet:", "en": "What we took away"}[language]
    context = sample_context("thank_you", language)
    with_summary = renderer.render("thank_you", language, context)
    assert lead in with_summary.text and context["interview"]["summary"] in with_summary.text
    assert context["next_steps"] in with_summary.text
    assert context["decision_date"] in with_summary.text

    context["interview"]["summary"] = ""
    without = renderer.render("thank_you", language, context)
    for part in (without.text, visible_text(without.html)):
        assert lead not in part and "[" not in part
        assert instructions(part) == [] and glitches(part) == []
    assert context["next_steps"] in without.text and context["decision_date"] in without.text


def _every_sample(language: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, name, context) for every kind with every sample context, and the thin cases a
    recruiter meets: a thank-you without a summary, a status update with nothing to promise."""
    out = []
    for kind in KINDS:
        for sparse in (False, True):
            out.append(
                (
                    kind,
                    "sparse" if sparse else "full",
                    sample_context(kind, language, sparse=sparse),
                )
            )
        bare = sample_context(kind, language)
        if bare["interview"] is not None:
            bare["interview"]["summary"] = ""
        bare.update(next_steps="", decision_date="", decision_late=True, decision_moved_from="")
        out.append((kind, "bare", bare))
    return out


@pytest.mark.parametrize("language", SAMPLE_LANGUAGES)
def test_no_instruction_text_ever_reaches_a_candidate(renderer: Renderer, language: str) -> None:
    found = []
    for kind, name, context in _every_sample(language):
        mail = renderer.render(kind, language, context)
        for part_name, part in (
            ("subject", mail.subject),
            ("text", mail.text),
            ("html", visible_text(mail.html)),
        ):
            found += [f"{language}/{kind} ({name}, {part_name}): {i}" for i in instructions(part)]
    assert found == []


# Configured texts in casings a sentence might be tempted to change.
AS_WRITTEN = (
    ("Talent Acquisition Partner", "iOS-utvecklare", "Nordljus AB", "HR-chef"),
    ("talent acquisition partner", "VP Engineering", "nordljus ab", "Rekryterare"),
)


def recased(text: str, written: str) -> list[str]:
    """Occurrences of ``written`` in ``text`` whose case differs from how it was configured."""
    pattern = re.compile(rf"(?<!\w){re.escape(written)}(?!\w)", re.IGNORECASE)
    return [m.group(0) for m in pattern.finditer(text) if m.group(0) != written]


@pytest.mark.parametrize("language", SAMPLE_LANGUAGES)
def test_configured_texts_are_used_as_written(renderer: Renderer, language: str) -> None:
    found = []
    for title, role, company, stand_in_role in AS_WRITTEN:
        for kind, name, context in _every_sample(language):
            context["recruiter"]["title"] = title
            context["company"]["name"] = company
            if context["interview"] and context["interview"]["panel"]:
                context["interview"]["panel"][0]["role"] = role
                context["interview"]["panel"][-1]["role"] = title
            for vacation in (context["vacation"], context["also"]["vacation"]):
                if vacation and vacation["stand_in"]:
                    vacation["stand_in"]["role"] = stand_in_role
            mail = renderer.render(kind, language, context)
            shown = (mail.subject, mail.text, visible_text(mail.html))
            for written in (title, role, company, stand_in_role):
                found += [
                    f"{language}/{kind} ({name}): {written!r} shown as {other!r}"
                    for part in shown
                    for other in recased(part, written)
                ]
            assert title in mail.text or not context["recruiter"]["title"] or kind != "welcome"
    assert found == []


def test_the_instruction_check_catches_what_a_recruiter_might_leave(renderer: Renderer) -> None:
    assert instructions("Tack!\n[Sammanfattning: skriv två, tre meningar]\n")
    assert instructions("Summary: <SUMMARY HERE>")
    assert instructions("Write two or three sentences here before sending.")
    assert instructions("Hej Anna! Vi ses (kl. 14:00) – 2 [1] mars.") == []


def test_a_thank_you_without_a_summary_hints_the_recruiter_not_the_candidate() -> None:
    from recruitmail.daemon import compose
    from tests.planner_harness import Sim, at, interview

    sim = Sim()
    event = interview("a@x", "anna@example.com", at(date(2026, 11, 3), "10:00"))
    for hhmm in ("11:00", "12:00"):
        sim.poll([event], at(date(2026, 11, 3), hhmm))
    (done,) = sim.drafted
    context = compose.build_context(
        done.mail, sim.box, sim.settings, sim.calendar, done.at, compose.Facts()
    )
    assert context["hints"] == [compose.SUMMARY_HINT]
    mail = Renderer(None).render("thank_you", context["language"], context)
    assert "Sammanfattning" not in mail.text and instructions(mail.text) == []

    noted = interview(
        "b@x",
        "bo@example.com",
        at(date(2026, 11, 4), "10:00"),
        body="Sammanfattning: Vi pratade om ditt arbete med kartor.\n\nInterna anteckningar: stark.",
    )
    sim = Sim()
    for hhmm in ("11:00", "12:00"):
        sim.poll([noted], at(date(2026, 11, 4), hhmm))
    (done,) = sim.drafted
    context = compose.build_context(
        done.mail, sim.box, sim.settings, sim.calendar, done.at, compose.Facts()
    )
    assert context["hints"] == []
    text = Renderer(None).render("thank_you", "sv", context).text
    assert "Vi pratade om ditt arbete med kartor." in text and "stark" not in text


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", ["weekend_greeting", "holiday_greeting"])
def test_greetings_are_short(renderer: Renderer, kind: str, language: str) -> None:
    for sparse in (False, True):
        text = renderer.render(kind, language, sample_context(kind, language, sparse=sparse)).text
        body = body_of(text, language).strip()
        assert len(body) < 600
        assert 2 <= len([line for line in body.splitlines() if line.strip()]) <= 4


def test_the_weekend_greeting_reads_like_a_person_wrote_it(renderer: Renderer) -> None:
    text = renderer.render("weekend_greeting", "sv", sample_context("weekend_greeting", "sv")).text
    assert body_of(text, "sv").strip() == (
        "Hej Anna!\n\nTack igen för mötet i veckan. Önskar dig en härlig helg – vi hörs nästa vecka!"
    )


HOLIDAY_WISHES = {
    "sv": {
        "christmas": "God jul!",
        "midsummer": "Glad midsommar!",
        "new_year": "Gott nytt år!",
        "easter": "Glad påsk!",
        "pentecost": "Trevlig pingsthelg!",
    },
    "en": {
        "christmas": "Merry Christmas!",
        "midsummer": "Happy Midsummer!",
        "new_year": "Happy New Year!",
        "easter": "Happy Easter!",
    },
}
HOLIDAY_KEYS = [
    "christmas", "midsummer", "new_year", "easter", "ascension", "pentecost",
    "national_day", "may_day", "all_saints", "epiphany", "other",
]  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("key", HOLIDAY_KEYS)
def test_holiday_greetings_name_the_holiday(renderer: Renderer, key: str, language: str) -> None:
    context = sample_context("holiday_greeting", language)
    context["holiday"] = {"key": key, "name": "Boxing Day" if key == "other" else key}
    mail = renderer.render("holiday_greeting", language, context)
    assert glitches(mail.text) == [] and glitches(mail.subject) == []
    assert mail.subject.endswith("!")
    wish = mail.subject.removesuffix(", Anna!")
    assert f"{wish}!" in mail.text
    if key in HOLIDAY_WISHES[language]:
        assert HOLIDAY_WISHES[language][key] in mail.text
    # Every holiday has a wish of its own; only "other" falls back to a general one.
    if key != "other":
        assert wish != _wish(renderer, "other", language)


def _wish(renderer: Renderer, key: str, language: str) -> str:
    context = sample_context("holiday_greeting", language)
    context["holiday"] = {"key": key, "name": key}
    return renderer.render("holiday_greeting", language, context).subject.removesuffix(", Anna!")


@pytest.mark.parametrize("language", LANGUAGES)
def test_vacation_notice_says_when_who_and_how(renderer: Renderer, language: str) -> None:
    context = sample_context("vacation_notice", language)
    mail = renderer.render("vacation_notice", language, context)
    vacation, stand_in = context["vacation"], context["vacation"]["stand_in"]
    for part in (mail.text, visible_text(mail.html)):
        assert vacation["first_day"] in part and vacation["back_day"] in part
        assert (
            stand_in["name"] in part and stand_in["address"] in part and stand_in["phone"] in part
        )
    assert vacation["back_day"] in mail.subject


@pytest.mark.parametrize("language", LANGUAGES)
def test_reschedule_shows_the_new_time_and_the_old_one(renderer: Renderer, language: str) -> None:
    context = sample_context("reschedule_notice", language)
    mail = renderer.render("reschedule_notice", language, context)
    new, old = context["interview"]["when"], context["interview"]["previous_when"]
    assert new in mail.subject
    text = body_of(mail.text, language)
    assert text.index(context["interview"]["date"]) < text.index(old)
    assert old in visible_text(mail.html)
    assert {"sv": "Tack för att du är flexibel", "en": "Thank you for being flexible"}[
        language
    ] in text


FOLDS: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("thank_you", {"weekend": True}, {"sv": "skön helg", "en": "lovely weekend"}),
    ("thank_you", {"holiday": {"key": "midsummer", "name": "x"}}, {"sv": "Glad midsommar!", "en": "Happy Midsummer!"}),
    ("interview_details", {"thank_you": True}, {"sv": "tack igen för senaste samtalet", "en": "thanks again"}),
    ("status_update", {"weekend": True}, {"sv": "skön helg", "en": "lovely weekend"}),
]  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(("kind", "also", "sentence"), FOLDS)
def test_folded_touchpoints_add_a_sentence(
    renderer: Renderer, kind: str, also: dict[str, Any], sentence: dict[str, str], language: str
) -> None:
    context = sample_context(kind, language)
    context["also"] = {"weekend": False, "thank_you": False, "holiday": None, "vacation": None}
    plain = renderer.render(kind, language, context)
    context["also"].update(also)
    folded = renderer.render(kind, language, context)
    assert sentence[language] not in plain.text
    assert sentence[language] in folded.text and sentence[language] in visible_text(folded.html)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_folded_vacation_names_the_stand_in(renderer: Renderer, language: str) -> None:
    context = sample_context("thank_you", language)
    context["also"]["vacation"] = sample_context("vacation_notice", language)["vacation"]
    mail = renderer.render("thank_you", language, context)
    assert "Jonas Berg" in mail.text and context["also"]["vacation"]["back_day"] in mail.text
    assert glitches(mail.text) == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_holiday_greeting_does_not_also_wish_a_nice_weekend(
    renderer: Renderer, language: str
) -> None:
    context = sample_context("holiday_greeting", language)
    context["also"]["weekend"] = True
    text = renderer.render("holiday_greeting", language, context).text
    assert {"sv": "helg!", "en": "weekend"}[language] not in text.replace("Trevlig helg!", "")


HOSTILE = ["{{ 7*7 }}", "{% for %}", "<script>alert(1)</script>", "O'Brien & <Co>"]


def _hostile_context(kind: str, language: str) -> dict[str, Any]:
    context = sample_context(kind, language)
    context["candidate"] = {"first_name": "{{ 7*7 }}", "full_name": "O'Brien & <Co>"}
    context["company"]["values"] = "{% for %} O'Brien & <Co>"
    if context["interview"]:
        interview = context["interview"]
        interview["panel"] = [{"name": value, "role": value, "bio": value} for value in HOSTILE]
        interview["agenda"] = list(HOSTILE)
        interview["location"] = "<script>alert(1)</script>"
        interview["online_url"] = "javascript:alert(1)"
        interview["summary"] = "{% for %}<script>alert(1)</script>"
    return context


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", ["welcome", "thank_you", "reschedule_notice"])
def test_calendar_text_is_data_never_template_or_markup(
    renderer: Renderer, kind: str, language: str
) -> None:
    mail = renderer.render(kind, language, _hostile_context(kind, language))
    assert "49" not in mail.text and "49" not in mail.html
    assert "{{ 7*7 }}" in mail.text and "{{ 7*7 }}" in mail.html
    assert "<script>alert(1)</script>" in mail.text
    assert "<script" not in mail.html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in mail.html
    assert 'href="javascript' not in mail.html.lower()
    if kind == "welcome":
        assert "{% for %}" in mail.text and "{% for %}" in mail.html
        assert "O'Brien & <Co>" in mail.text
        assert "O&#39;Brien &amp; &lt;Co&gt;" in mail.html
        assert "O'Brien" not in mail.html


def test_a_hostile_name_cannot_add_a_header_line(renderer: Renderer) -> None:
    context = sample_context("thank_you", "en")
    context["candidate"]["first_name"] = "Anna\r\nBcc: everyone@example.org"
    subject = renderer.render("thank_you", "en", context).subject
    assert "\n" not in subject and "\r" not in subject
    assert subject.startswith("Thank you for the interview, Anna Bcc:")


def test_the_renderer_shows_mappings_as_objects(renderer: Renderer) -> None:
    # "company.values" must be the configured text, not dict.values.
    context = sample_context("welcome", "sv")
    text = renderer.render("welcome", "sv", context).text
    assert f"Våra värderingar: {context['company']['values']}" in text
    assert "built-in method" not in text


def test_the_default_templates_are_complete_and_check_clean(renderer: Renderer) -> None:
    for language in LANGUAGES:
        names = {path.name for path in (default_template_dir() / language).iterdir()}
        assert names == set(TEMPLATE_FILES)
    assert renderer.check() == []


# --- overrides ---------------------------------------------------------------------------------


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_an_override_replaces_one_file_only(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "sv/welcome.txt.j2",
        '{% extends "_layout.txt.j2" %}\n'
        "{% block subject %}Vi ses {{ interview.date }}{% endblock %}\n"
        "{% block body %}Hej {{ candidate.first_name }}, egen text från varumärkesteamet.{% endblock %}\n",
    )
    default = Renderer(None)
    custom = Renderer(tmp_path)
    context = sample_context("welcome", "sv")

    mail = custom.render("welcome", "sv", context)
    assert mail.subject == "Vi ses torsdag 3 december"
    assert mail.text.startswith("Hej Anna, egen text från varumärkesteamet.\n")
    assert "Vänliga hälsningar\nMaria Lind" in mail.text  # the default layout still frames it
    assert mail.html == default.render("welcome", "sv", context).html
    for kind, language in (("welcome", "en"), ("thank_you", "sv")):
        assert custom.render(kind, language, sample_context(kind, language)) == default.render(
            kind, language, sample_context(kind, language)
        )
    assert custom.check() == []


def test_an_override_of_the_macros_changes_every_mail(tmp_path: Path) -> None:
    macros = (default_template_dir() / "sv/_macros.j2").read_text(encoding="utf-8")
    _write(
        tmp_path, "sv/_macros.j2", macros.replace('"Glad midsommar"', '"Glad midsommar och sol"')
    )
    context = sample_context("holiday_greeting", "sv", sparse=True)
    assert (
        "Glad midsommar och sol!"
        in Renderer(tmp_path).render("holiday_greeting", "sv", context).text
    )


def test_a_broken_override_names_file_and_line(tmp_path: Path) -> None:
    broken = _write(
        tmp_path,
        "sv/thank_you.txt.j2",
        '{% extends "_layout.txt.j2" %}\n{% block subject %}Tack{% endblock %}\n'
        "{% block body %}\nHej {{ candidate.first_name }\n{% endblock %}\n",
    )
    renderer = Renderer(tmp_path)
    with pytest.raises(ConfigError) as caught:
        renderer.render("thank_you", "sv", sample_context("thank_you", "sv"))
    assert f"{broken}:4:" in str(caught.value)
    assert any(problem.startswith(f"{broken}:4:") for problem in renderer.check())


def test_a_misspelt_variable_names_file_and_line(tmp_path: Path) -> None:
    broken = _write(
        tmp_path,
        "en/weekend_greeting.html.j2",
        '{% extends "_layout.html.j2" %}\n{% block body %}\n<p>Hi</p>\n<p>{{ candidate.frist_name }}</p>\n'
        "{% endblock %}\n",
    )
    renderer = Renderer(tmp_path)
    # At run time the mail is held (RenderError), not the whole mailbox stopped.
    with pytest.raises(RenderError) as caught:
        renderer.render("weekend_greeting", "en", sample_context("weekend_greeting", "en"))
    assert f"{broken}:4:" in str(caught.value)
    assert "frist_name" in str(caught.value)
    assert any(p.startswith(f"{broken}:4:") and "frist_name" in p for p in renderer.check())


def test_a_broken_layout_is_reported_at_its_own_line(tmp_path: Path) -> None:
    layout = (default_template_dir() / "en/_layout.txt.j2").read_text(encoding="utf-8")
    lines = layout.splitlines()
    lines[5] = "{% if recruiter.name %}"  # never closed
    broken = _write(tmp_path, "en/_layout.txt.j2", "\n".join(lines) + "\n")
    renderer = Renderer(tmp_path)
    with pytest.raises(RenderError) as caught:
        renderer.render("status_update", "en", sample_context("status_update", "en"))
    assert str(broken) in str(caught.value)
    assert any(str(broken) in problem for problem in renderer.check())


def test_the_sandbox_refuses_to_reach_python_internals(tmp_path: Path) -> None:
    evil = _write(
        tmp_path,
        "sv/status_update.txt.j2",
        "{% block subject %}x{% endblock %}\n"
        "{{ candidate.__class__.__mro__[1].__subclasses__() }}\n",
    )
    with pytest.raises(RenderError) as caught:
        Renderer(tmp_path).render("status_update", "sv", sample_context("status_update", "sv"))
    assert f"{evil}:2:" in str(caught.value)
    assert "SecurityError" in str(caught.value)


def test_a_template_without_subject_block_is_a_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "sv/weekend_greeting.txt.j2", "Hej!\n")
    with pytest.raises(ConfigError, match="subject") as caught:
        Renderer(tmp_path).render(
            "weekend_greeting", "sv", sample_context("weekend_greeting", "sv")
        )
    assert str(path) in str(caught.value)


def test_check_reports_override_files_recruitmail_never_uses(tmp_path: Path) -> None:
    stray = _write(tmp_path, "sv/welcome.txt.jinja.j2", "x")
    assert any(str(stray) in problem for problem in Renderer(tmp_path).check())


def test_a_missing_override_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="templates_dir"):
        Renderer(tmp_path / "nope")


def test_an_unknown_language_or_kind_is_a_config_error(renderer: Renderer) -> None:
    with pytest.raises(ConfigError, match="xx/welcome.txt.j2"):
        renderer.render("welcome", "xx", sample_context("welcome", "sv"))
    with pytest.raises(ConfigError):
        renderer.render("../secrets", "sv", sample_context("welcome", "sv"))


# --- data that cannot be rendered ----------------------------------------------------------------


def test_an_absurdly_long_value_is_refused_not_rendered(renderer: Renderer) -> None:
    context = sample_context("thank_you", "sv")
    context["interview"]["summary"] = "bla " * (MAX_PART_BYTES // 4 + 10)
    with pytest.raises(RenderError, match="exceeds 256 KiB"):
        renderer.render("thank_you", "sv", context)


def test_a_value_of_the_wrong_type_skips_the_mail(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "sv/welcome.txt.j2",
        '{% extends "_layout.txt.j2" %}\n{% block subject %}Intervju nr {{ "%d"|format(interview.number) }}'
        "{% endblock %}\n",
    )
    context = sample_context("welcome", "sv")
    assert Renderer(tmp_path).render("welcome", "sv", context).subject == "Intervju nr 1"
    context["interview"]["number"] = "ett"
    with pytest.raises(RenderError) as caught:
        Renderer(tmp_path).render("welcome", "sv", copy.deepcopy(context))
    assert "welcome.txt.j2:2" in str(caught.value)


# --- failures stay with one mail ------------------------------------------------------------------


def test_a_branch_only_real_data_reaches_holds_that_mail_only(tmp_path: Path) -> None:
    # Sample data never has a fourth interview; real data does, and the branch is broken.
    _write(
        tmp_path,
        "en/welcome.txt.j2",
        '{% extends "_layout.txt.j2" %}\n{% block subject %}Welcome{% endblock %}\n'
        "{% block body %}\n{% if interview.number > 3 %}{{ interview.nmber }}{% endif %}\n"
        "Hi {{ candidate.first_name }}\n{% endblock %}\n",
    )
    renderer = Renderer(tmp_path)
    assert renderer.check() == []  # start-up cannot see it
    usual = sample_context("welcome", "en")
    assert "Hi Anna" in renderer.render("welcome", "en", usual).text
    fourth = copy.deepcopy(usual)
    fourth["interview"]["number"] = 4
    with pytest.raises(RenderError) as caught:
        renderer.render("welcome", "en", fourth)
    assert "welcome.txt.j2:4" in str(caught.value) and "nmber" in str(caught.value)
    # The next mail renders as before: nothing is stuck.
    assert "Hi Anna" in renderer.render("welcome", "en", usual).text


def test_a_render_error_never_quotes_calendar_text(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "sv/welcome.txt.j2",
        '{% extends "_layout.txt.j2" %}\n{% block subject %}{{ "%d"|format(candidate.full_name) }}'
        "{% endblock %}\n",
    )
    context = sample_context("welcome", "sv")
    context["candidate"]["full_name"] = "Hemlig Kandidat"
    with pytest.raises(RenderError) as caught:
        Renderer(tmp_path).render("welcome", "sv", context)
    assert "Hemlig" not in str(caught.value)
    assert "welcome.txt.j2:2" in str(caught.value) and "TypeError" in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ('{{ "x" * 1000000000 }}', "grew past"),
        ("{{ [1] * 1000000000 }}", "grew past"),
        ("{{ 9 ** 99999999 }}", "huge power"),
        ("{% for i in range(10**9) %}x{% endfor %}", "range"),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
            "{% endfor %}{{ ns.s|length }}",
            "grew past",
        ),
        ("{% for i in range(9000) %}{{ 'y' * 100 }}{% endfor %}", "exceeds 256 KiB"),
        (
            "{% for i in range(10000) %}{% for j in range(10000) %}{% set x = i + j %}"
            "{% endfor %}{% endfor %}",
            "CPU time",
        ),
    ],
)
def test_a_template_cannot_make_a_huge_mail_or_run_away(
    tmp_path: Path, expression: str, reason: str
) -> None:
    _write(
        tmp_path,
        "en/weekend_greeting.txt.j2",
        '{% extends "_layout.txt.j2" %}\n{% block subject %}Hi{% endblock %}\n'
        f"{{% block body %}}{expression}{{% endblock %}}\n",
    )
    with pytest.raises(RenderError, match=reason):
        Renderer(tmp_path).render(
            "weekend_greeting", "en", sample_context("weekend_greeting", "en")
        )


def test_check_renders_hostile_samples_and_names_an_unsafe_template(tmp_path: Path) -> None:
    # |safe on a calendar value: fine with the friendly samples, caught by the hostile one.
    layout = (default_template_dir() / "en/welcome.html.j2").read_text(encoding="utf-8")
    unsafe = _write(
        tmp_path,
        "en/welcome.html.j2",
        layout.replace("{{ m.details_html(interview) }}", "{{ interview.location|safe }}"),
    )
    assert unsafe.exists()
    assert Renderer(tmp_path).check() == [
        "en/welcome.html.j2: shows calendar text as markup (hostile sample); "
        "remove |safe or Markup() around calendar values"
    ]


def test_check_fails_a_kind_that_only_breaks_on_hostile_data(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "sv/welcome.txt.j2",
        '{% extends "_layout.txt.j2" %}\n{% block subject %}Hej{% endblock %}\n'
        "{% block body %}{{ candidate.full_name[:5000] * 300 }}{% endblock %}\n",
    )
    problems = Renderer(tmp_path).check()
    assert any("hostile sample" in p and "sv/welcome" in p for p in problems), problems


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_panel_member_known_only_by_role_is_shown_by_role(
    renderer: Renderer, language: str
) -> None:
    context = sample_context("welcome", language)
    context["interview"]["panel"] = [{"name": "", "role": "Designer", "bio": ""}]
    mail = renderer.render("welcome", language, context)
    assert "\n- Designer\n" in mail.text
    assert "<strong>Designer</strong>" in mail.html
    assert "- ," not in mail.text and "<strong></strong>" not in mail.html


@pytest.mark.parametrize("language", LANGUAGES)
def test_only_https_links_are_made_links(renderer: Renderer, language: str) -> None:
    context = sample_context("interview_details", language)
    context["interview"]["online_url"] = "http://meet.nordvik.example/j/1"
    html = renderer.render("interview_details", language, context).html
    assert 'href="http://meet' not in html
