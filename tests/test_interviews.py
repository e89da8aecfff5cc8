"""Who can make recruitmail write, and what of an event reaches a mail.

Anyone can put an event into a recruiter's calendar by sending an invitation. These tables say,
event by event, whether it is an interview (and with whom) or why not; the second half follows
calendar text through ``compose`` into the rendered mail.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from recruitmail.contracts.models import Attendee, DraftKey, Event, MailKind, PersonInfo, Response
from recruitmail.daemon import compose
from recruitmail.daemon.interviews import (
    REASON_EXCLUDED,
    REASON_EXTERNAL_ORGANISER,
    REASON_NOT_ACCEPTED,
    REASON_NOT_MATCHED,
    REASON_PRIVATE,
    REASON_TOO_LONG,
    Interview,
    Rejection,
    recognise,
    safe_text,
    usable_name,
    without_links,
)
from recruitmail.daemon.planner import PlannedMail
from recruitmail.daemon.render import Renderer
from recruitmail.daemon.settings import Settings
from recruitmail.daemon.workdays import WorkCalendar
from tests.planner_harness import PANEL, RECRUITER, ROOM, at, interview, make_settings, person
from tests.scenario.spec import STOCKHOLM

THURSDAY = date(2026, 12, 3)
START = at(THURSDAY, "14:00")
NOW = at(date(2026, 12, 1), "09:00")
CANDIDATE = "anna@example.com"
ATTACKER = "boss@evil.example"
RLO = "\u202e"


def settings(**detection: Any) -> Settings:
    return make_settings({"detection": detection} if detection else None)


def outsider_invites(response: Response, **extra: Any) -> Event:
    """An invitation an outsider sent: the attacker organises, the recruiter and a candidate are
    invited, a colleague is listed under a made-up name."""
    return interview(
        "outside-1",
        None,
        START,
        organizer=Attendee(ATTACKER, "HR", Response.ACCEPTED, is_organizer=True),
        attendees=(
            person(ATTACKER, "HR"),
            person(RECRUITER, "Lisa Ek", response),
            person(PANEL, "Your new CEO"),
            person(CANDIDATE, "Anna Svensson", Response.NEEDS_ACTION),
        ),
        **extra,
    )


def outcome(found: list[Interview] | Rejection) -> str | list[str]:
    """The reason of a rejection, or the candidates' addresses."""
    if isinstance(found, Rejection):
        return found.reason
    return [i.candidate.address for i in found]


# --- who can make us write -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "response", "expected"),
    [
        ("accepted", Response.NEEDS_ACTION, REASON_NOT_ACCEPTED),
        ("accepted", Response.TENTATIVE, REASON_NOT_ACCEPTED),
        ("accepted", Response.NONE, REASON_NOT_ACCEPTED),
        # Once accepted, the outside organiser is a candidate too (candidates do send invitations).
        ("accepted", Response.ACCEPTED, [CANDIDATE, ATTACKER]),
        ("never", Response.ACCEPTED, REASON_EXTERNAL_ORGANISER),
        ("always", Response.NEEDS_ACTION, [CANDIDATE, ATTACKER]),
    ],
)
def test_an_outsiders_invitation_counts_only_as_configured(
    policy: str, response: Response, expected: str | list[str]
) -> None:
    box_settings = settings(external_organisers=policy)
    found = recognise(outsider_invites(response), box_settings.mailboxes[0], box_settings)
    assert outcome(found) == expected


def test_the_default_is_secure_an_unanswered_invitation_is_no_interview() -> None:
    default = make_settings()
    assert default.detection.external_organisers == "accepted"
    found = recognise(outsider_invites(Response.NEEDS_ACTION), default.mailboxes[0], default)
    assert outcome(found) == REASON_NOT_ACCEPTED


@pytest.mark.parametrize(
    ("organizer", "expected"),
    [
        (Attendee(RECRUITER, "Lisa Ek", is_organizer=True), [CANDIDATE]),
        (Attendee(PANEL, "Erik Holm", is_organizer=True), [CANDIDATE]),
        (Attendee("hr@team.nordljus.se", "HR", is_organizer=True), [CANDIDATE]),  # subdomain
        (Attendee("hr@nordljus.se.evil.example", "HR", is_organizer=True), REASON_NOT_ACCEPTED),
        (Attendee("hr@evilnordljus.se", "HR", is_organizer=True), REASON_NOT_ACCEPTED),
    ],
)
def test_the_recruiter_or_a_colleague_organising_is_enough(
    organizer: Attendee, expected: str | list[str]
) -> None:
    box_settings = make_settings()
    event = interview(
        "own-1",
        None,
        START,
        organizer=organizer,
        attendees=(
            person(RECRUITER, "Lisa Ek", Response.NEEDS_ACTION),
            person(CANDIDATE, "Anna Svensson"),
        ),
    )
    assert outcome(recognise(event, box_settings.mailboxes[0], box_settings)) == expected


def test_an_event_without_any_organiser_is_the_recruiters_own() -> None:
    # Plain ICS feeds often carry no ORGANIZER at all.
    box_settings = make_settings()
    event = replace(
        interview("feed-1", CANDIDATE, START),
        organizer=None,
        attendees=(person(RECRUITER, "", Response.NONE), person(CANDIDATE, "Anna")),
    )
    assert outcome(recognise(event, box_settings.mailboxes[0], box_settings)) == [CANDIDATE]


# --- what counts as an interview ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Intervju: Anna", [CANDIDATE]),
        ("Interview – Product Designer", [CANDIDATE]),
        ("INTERVJU", [CANDIDATE]),
        ("Anställningsintervju med Anna", [CANDIDATE]),
        ("Intervjun med Anna", [CANDIDATE]),
        ("Slutintervju Eva Öberg", [CANDIDATE]),
        ("Telefonintervju", [CANDIDATE]),
        ("Kundintervju om appen", REASON_NOT_MATCHED),
        ("Referensintervju", REASON_NOT_MATCHED),
        ("Samtalscoachning och Intervjuteknik-kurs", REASON_NOT_MATCHED),
        ("Samtal med Anna", [CANDIDATE]),
        ("Job interview (Teams)", [CANDIDATE]),
        ("Kundsamtal Volvo", REASON_NOT_MATCHED),
        ("Telefonsamtal med leverantör", REASON_NOT_MATCHED),
        ("Utvecklingssamtal", REASON_NOT_MATCHED),
        ("Interviewing skills", REASON_NOT_MATCHED),
        ("Kund\u00adsamtal", REASON_NOT_MATCHED),  # a soft hyphen does not split a word
        ("interview feedback process - audit", REASON_EXCLUDED),
        ("Intervju – kalibrering", REASON_EXCLUDED),
        ("Debrief: interview Anna", REASON_EXCLUDED),
        ("Planering inför intervjuer", REASON_EXCLUDED),
        ("Lunch", REASON_NOT_MATCHED),
    ],
)
def test_subjects_match_whole_words(subject: str, expected: str | list[str]) -> None:
    box_settings = make_settings()
    event = interview("subject-1", person(CANDIDATE, "Anna"), START, subject=subject)
    assert outcome(recognise(event, box_settings.mailboxes[0], box_settings)) == expected


def test_a_users_own_pattern_is_matched_as_whole_words_too() -> None:
    box_settings = settings(subject_pattern="samtal|möte", exclude_pattern="")
    box = box_settings.mailboxes[0]
    for subject, wanted in [
        ("Samtal", True),
        ("Kundsamtal", False),
        ("Möte med Anna", True),
        ("Mötesrum", False),
        ("interview feedback", False),
    ]:
        event = interview("own-pattern", person(CANDIDATE, "Anna"), START, subject=subject)
        assert isinstance(recognise(event, box, box_settings), Rejection) is not wanted, subject


@pytest.mark.parametrize(
    ("detection", "problem"),
    [
        ({"subject_pattern": "intervju("}, "not a valid regular expression"),
        ({"subject_pattern": "x*"}, "matches an empty subject"),
        ({"subject_pattern": ""}, "name at least one word"),
        ({"external_organisers": "sometimes"}, "external_organisers"),
        ({"max_candidates": 0}, "max_candidates"),
    ],
)
def test_bad_detection_settings_are_refused(detection: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        settings(**detection)


def test_more_external_attendees_than_a_handful_is_not_an_interview() -> None:
    box_settings = make_settings()
    box = box_settings.mailboxes[0]
    crowd = tuple(person(f"guest{n}@example.com", f"Guest {n}") for n in range(4))
    event = interview(
        "crowd-1",
        None,
        START,
        attendees=(person(RECRUITER, "Lisa Ek"), person(PANEL, "Erik Holm"), *crowd),
    )
    assert outcome(recognise(event, box, box_settings)) == (
        "more than 3 external attendees: not an interview"
    )
    three = replace(event, attendees=event.attendees[:5])
    assert len(outcome(recognise(three, box, box_settings))) == 3
    # Declined guests still count: 50,000 declined attendees are not an interview either.
    declined = replace(
        event,
        attendees=(*event.attendees[:2], *(replace(a, response=Response.DECLINED) for a in crowd)),
    )
    assert "external attendees" in str(outcome(recognise(declined, box, box_settings)))
    loose = settings(max_candidates=5)
    assert len(outcome(recognise(event, loose.mailboxes[0], loose))) == 4


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"private": True}, REASON_PRIVATE),
        ({"end": START + timedelta(hours=12, minutes=1)}, REASON_TOO_LONG),
        ({"end": START + timedelta(hours=12)}, [CANDIDATE]),
        ({"end": START + timedelta(days=3)}, REASON_TOO_LONG),
    ],
)
def test_private_and_overlong_events_are_no_interviews(
    change: dict[str, Any], expected: str | list[str]
) -> None:
    box_settings = make_settings()
    event = replace(interview("long-1", person(CANDIDATE, "Anna"), START), **change)
    assert outcome(recognise(event, box_settings.mailboxes[0], box_settings)) == expected


def test_rejection_reasons_hold_no_calendar_text() -> None:
    box_settings = settings(external_organisers="never")
    found = recognise(
        outsider_invites(Response.ACCEPTED, subject="Intervju Pay at https://evil.example"),
        box_settings.mailboxes[0],
        box_settings,
    )
    assert isinstance(found, Rejection)
    assert "evil" not in found.reason and "Pay" not in found.reason and "@" not in found.reason


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Anna Svensson", "Anna Svensson"),
        ("Svensson, Anna", "Svensson, Anna"),
        ("ceo@nordljus.se", ""),
        ("Anna (anna@evil.example)", ""),
        ("https://evil.example", ""),
        ("www.evil.example", ""),
        ("evil.example", ""),
        (f"{RLO}Anna{RLO} Svensson", "Anna Svensson"),
        ("Anna\r\nBcc: x", "Anna Bcc: x"),
        ("A" * 4000, "A" * 120),
        ("", ""),
    ],
)
def test_display_names_that_are_addresses_are_dropped(raw: str, shown: str) -> None:
    assert usable_name(raw) == shown


def test_a_candidate_named_like_an_address_gets_a_neutral_greeting() -> None:
    box_settings = make_settings()
    event = interview("name-1", person(CANDIDATE, "ceo@nordljus.se"), START)
    [found] = recognise(event, box_settings.mailboxes[0], box_settings)  # type: ignore[misc]
    assert found.candidate.name == "" and found.candidate.first_name == ""


def test_panel_names_come_from_the_directory_not_from_an_outsider() -> None:
    box_settings = make_settings()
    found = recognise(outsider_invites(Response.ACCEPTED), box_settings.mailboxes[0], box_settings)
    assert not isinstance(found, Rejection)
    # erik.holm is in [people]: his configured name, not "Your new CEO".
    assert [m.name for m in found[0].panel] == ["Erik Holm"]
    unknown = replace(
        outsider_invites(Response.ACCEPTED),
        attendees=(
            person(RECRUITER, "Lisa Ek", Response.ACCEPTED),
            person("kim@nordljus.se", "Your new CEO"),
            person(CANDIDATE, "Anna"),
        ),
    )
    found = recognise(unknown, box_settings.mailboxes[0], box_settings)
    assert not isinstance(found, Rejection)
    assert [m.name for m in found[0].panel] == [""]  # not in the directory: no name at all


# --- text cleaning ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (f"Room 1{RLO}txt.exe", "Room 1 txt.exe"),
        ("a\u2066b\u2069c", "a b c"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("tag\U000e0041\U000e0042s", "tags"),
        ("bell\x07 and\x1b[31m colour", "bell and [31m colour"),
        ("line\u2028break", "line break"),
        ("Åsa", "Åsa"),
        ("שלום Anna", "שלום Anna"),  # right-to-left letters are text, not tricks
    ],
)
def test_safe_text_removes_bidi_and_control_characters(raw: str, clean: str) -> None:
    assert safe_text(raw) == clean


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("Pay the 50 EUR booking fee at https://evil.example/pay", "Pay the 50 EUR booking fee at"),
        ("Storgatan 1, Umeå", "Storgatan 1, Umeå"),
        ("Rum 3, kl. 14:00", "Rum 3, kl. 14:00"),
        ("Intervju: Anna", "Intervju: Anna"),
        ("See www.evil.example now", "See now"),
        ("Go to evil.example/pay", "Go to"),
        ("javascript:alert(1) here", "here"),
        ("mailto:x@evil.example", ""),
        ("- Presentation\n- https://evil.example\n- Frågor", "- Presentation\n\n- Frågor"),
    ],
)
def test_links_are_left_out_of_calendar_text(raw: str, kept: str) -> None:
    assert without_links(raw) == kept


# --- through compose and the templates ------------------------------------------------------------


def compose_mail(event: Event, **facts: Any) -> tuple[dict[str, Any], str, str]:
    """The context, text and HTML of the welcome for ``event``'s candidate, as the executor
    makes it (``recognise`` → ``compose.build_context`` → ``Renderer.render``)."""
    box_settings = make_settings()
    box = box_settings.mailboxes[0]
    found = recognise(event, box, box_settings)
    assert not isinstance(found, Rejection), found
    mail = PlannedMail(
        key=DraftKey(box.address, found[0].candidate.address, MailKind.WELCOME, event.occasion),
        due=NOW,
        valid_until=event.start,
        interview=found[0],
    )
    calendar = WorkCalendar("SE", STOCKHOLM)
    context = compose.build_context(mail, box, box_settings, calendar, NOW, compose.Facts(**facts))
    rendered = Renderer(None).render("welcome", compose.language_of(mail, box), context)
    return context, rendered.text, rendered.html


def booked(**extra: Any) -> Event:
    return interview("booked-1", person(CANDIDATE, "Anna Svensson"), START, **extra)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://teams.microsoft.com/l/meetup-join/19%3ameeting", True),
        ("https://teams.live.com/meet/123", True),
        ("https://meet.google.com/abc-defg-hij", True),
        ("https://zoom.us/j/123", True),
        ("https://eu01web.zoom.us/j/123", True),
        ("https://acme.webex.com/meet/x", True),
        ("https://nordljus.se/intervju", True),
        ("https://video.nordljus.se/x", True),
        ("https://nordljus.se.login-verify.example/teams", False),
        ("https://teams.microsoft.com.evil.example/x", False),
        ("https://evilzoom.us/j/1", False),
        ("https://teams.microsoft.com@evil.example/x", False),
        ("http://teams.microsoft.com/l/x", False),
        ("javascript:alert(1)", False),
        ("https://teams.microsoft.com:8443/x", False),
        (f"https://evil.example/{RLO}https://teams.microsoft.com", False),
    ],
)
def test_only_known_meeting_hosts_become_links(url: str, shown: bool) -> None:
    context, text, html = compose_mail(booked(online_url=url, location=""))
    host = url.split("//", 1)[-1].split("/", 1)[0]
    if shown:
        assert context["interview"]["online_url"] == url
        assert f'href="{url}"' in html and url in text
        assert context["left_out"] == []
    else:
        assert context["interview"]["online_url"] == ""
        assert set(re.findall(r'href="([^"]*)"', html)) == {
            "https://nordljus.se/jobb",  # the careers site, from the configuration
            f"mailto:{RECRUITER}",
        }
        assert host not in text and host not in html
        assert any("meeting link left out" in reason for reason in context["left_out"])


def test_the_attack_from_the_issue_reaches_no_mail_text() -> None:
    context, text, html = compose_mail(
        booked(
            location=f"Pay the 50 EUR booking fee at https://evil.example/pay {RLO}1exe.txt",
            online_url="https://nordljus.se.login-verify.example/teams",
            body="Agenda:\n- Ta med ditt BankID och ditt personnummer: https://evil.example/id\n",
        )
    )
    for part in (text, html):
        assert "evil.example" not in part and "login-verify" not in part
        assert RLO not in part
    assert context["interview"]["location"] == "Pay the 50 EUR booking fee at 1exe.txt"
    assert context["interview"]["agenda"] == ["Ta med ditt BankID och ditt personnummer"]
    assert sorted(context["left_out"]) == [
        "a link in the location left out",
        "meeting link left out: host not on the list",
    ]


def test_a_teams_link_in_the_location_becomes_the_meeting_link() -> None:
    link = "https://teams.microsoft.com/l/meetup-join/abc"
    context, text, html = compose_mail(
        booked(location=f"Microsoft Teams Meeting; {link}", online_url="")
    )
    assert context["interview"]["location"] == "Microsoft Teams Meeting"
    assert context["interview"]["online_url"] == link
    assert f'href="{link}"' in html


def test_no_bidi_or_control_character_reaches_any_part_of_a_mail() -> None:
    tricks = f"{RLO}\u2066\u200f\x1b\x00"
    context, text, html = compose_mail(
        interview(
            "bidi-1",
            person(CANDIDATE, f"{tricks}Anna Svensson"),
            START,
            location=f"Room 1{tricks}txt.exe",
            body=f"Agenda:\n- Intro{tricks}\n\nSummary:\nWe{tricks} talked\n",
        ),
        directory={PANEL: PersonInfo(PANEL, f"Erik{tricks}", f"Lead{tricks}")},
    )
    for part in (text, html):
        assert not any(ch in part for ch in tricks)
    assert "Room 1 txt.exe" in text


def test_panel_members_are_never_shown_by_address() -> None:
    event = interview(
        "panel-1",
        None,
        START,
        attendees=(
            person(RECRUITER, "Lisa Ek"),
            person("kim@nordljus.se", "kim@nordljus.se"),
            person("lo@nordljus.se", ""),
            person("mo@nordljus.se", "Mo Berg"),
            person(ROOM, "Rum", is_resource=True),
            person(CANDIDATE, "Anna Svensson"),
        ),
    )
    context, text, html = compose_mail(
        event, directory={"lo@nordljus.se": PersonInfo("lo@nordljus.se", "", "Designer")}
    )
    panel = context["interview"]["panel"]
    assert [(p["name"], p["role"]) for p in panel] == [
        ("Lisa Ek", "Rekryterare"),
        ("", "Designer"),
        ("Mo Berg", ""),
    ]
    assert "kim@" not in text and "lo@" not in text and "kim@" not in html
    assert "- Designer\n" in text
    assert context["left_out"] == ["a panel member without a known name or role left out"]


def test_a_candidate_name_that_is_an_address_is_not_in_the_to_header() -> None:
    box_settings = make_settings()
    box = box_settings.mailboxes[0]
    [found] = recognise(  # type: ignore[misc]
        interview("to-1", person(CANDIDATE, "ceo@nordljus.se"), START), box, box_settings
    )
    mail = PlannedMail(
        key=DraftKey(box.address, CANDIDATE, MailKind.WELCOME, "to-1"),
        due=NOW,
        valid_until=START,
        interview=found,
    )
    message = compose.build_message(mail, box, "s", "t", "h", compose.Facts())
    assert message.to[0].name == "" and message.to[0].address == CANDIDATE


def test_recognition_never_looks_at_the_clock() -> None:
    box_settings = make_settings()
    event = interview(
        "clock-1", person(CANDIDATE, "Anna"), datetime(2020, 1, 2, 10, 0, tzinfo=STOCKHOLM)
    )
    assert outcome(recognise(event, box_settings.mailboxes[0], box_settings)) == [CANDIDATE]
