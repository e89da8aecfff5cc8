"""The reference scenario: one recruiter, six candidates, 7–23 December 2026 (Stockholm).

Provider-neutral: calendar changes are data (``CHANGES``), the instants at which the service
runs are data (``INSTANTS``), and so are the drafts that must exist at the end (``EXPECTED``).
Every connector's end-to-end test replays it through ``tests.scenario.runner``.

What happens, in short:
- Anna: first interview Tue 8, second booked on Thu 10 for Wed 16.
- Bo (English): welcome sent by the recruiter on Monday; the interview then moves → reschedule.
- Carl: interview on a Friday afternoon → the thank-you carries the weekend wish.
- Dana: booked, then cancelled before the welcome was sent → the draft is marked obsolete.
- Eva (name in decomposed Unicode): two interviews, the second on Friday the 18th.
- Frans: no usable display name → neutral greeting. The recruiter writes to him herself on
  Friday the 18th before nine → no weekend greeting that day, and the silence his status update
  waits for starts again (it would fall after Christmas).
- Carl: on Tue 15 the recruiter mails the panel with Carl in Cc → his status update, due Fri 18,
  waits five working days from that mail: Tue 22.
- Gustav: welcome drafted Tue 8; the recruiter edits it in the web editor and sends it (the
  client may drop our header, property or Message-ID); the interview then moves from Mon 14 to
  Tue 15 → a reschedule notice, not a second welcome. His event names its times in the Windows
  zone "W. Europe Standard Time" as Outlook publishes it (the iCalendar TZID for ICS and CalDAV;
  on Microsoft 365 every event and the mailbox carry that name): for a Swedish company that is
  Europe/Stockholm, and his mails must name Swedish time.
- Wed 23 Dec is the last working day before Christmas and before the recruiter's vacation:
  a vacation notice to everyone in process, with the holiday greeting folded in.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from tests.scenario.spec import EventSpec, Moved, Who, at

RECRUITER = Who("lisa.ek@nordljus.se", "Lisa Ek")
PANEL = Who("erik.holm@nordljus.se", "Erik Holm")
ROOM = Who("rum-norrsken@nordljus.se", "Rum Norrsken", resource=True)

ANNA = "anna.svensson@example.com"
BO = "bo.ek@example.org"
CARL = "carl.nilsson@example.com"
DANA = "dana.berg@example.net"
EVA = "eva.oberg@example.com"
FRANS = "frans@example.com"
GUSTAV = "gustav.lund@example.com"

CANDIDATES = (ANNA, BO, CARL, DANA, EVA, FRANS, GUSTAV)


def d(day: int) -> date:
    return date(2026, 12, day)


def interview(
    uid: str, who: Who, day: int, hhmm: str, minutes: int = 60, **extra: object
) -> EventSpec:
    start = at(d(day), hhmm)
    fields: dict[str, object] = {
        "uid": uid,
        "subject": f"Intervju: {who.name or who.address}",
        "start": start,
        "end": start + timedelta(minutes=minutes),
        "organizer": RECRUITER,
        "attendees": (RECRUITER, PANEL, who, ROOM),
        "location": "Storgatan 1, Umeå",
        "body": "Agenda:\n- Presentation av rollen\n- Dina erfarenheter\n- Frågor\n",
    }
    fields.update(extra)
    return EventSpec(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Change:
    """Something that happens at ``at``: an event is put (created or replaced) or deleted; the
    recruiter sends the newest draft addressed to ``candidate`` (after editing it in the web
    editor when ``web_edit``); or she writes a mail of her own (``to``, ``cc``), which lands in
    Sent."""

    at: datetime
    action: str  # "put" | "delete" | "send" | "mail"
    spec: EventSpec | None = None
    uid: str = ""
    candidate: str = ""
    web_edit: bool = False
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()


ANNA_1 = interview("anna-1@nordljus.se", Who(ANNA, "Svensson, Anna"), 8, "10:00")
ANNA_2 = interview(
    "anna-2@nordljus.se",
    Who(ANNA, "Svensson, Anna"),
    16,
    "14:00",
    subject="Andra intervju: Anna Svensson",
)
BO_1 = interview(
    "bo-1@nordljus.se",
    Who(BO, "Bo Ek"),
    9,
    "13:00",
    categories=("EN",),
    subject="Interview: Bo Ek",
    online_url="https://meet.example/bo-ek",
)
BO_1_MOVED = interview(
    "bo-1@nordljus.se",
    Who(BO, "Bo Ek"),
    10,
    "13:00",
    categories=("EN",),
    subject="Interview: Bo Ek",
    online_url="https://meet.example/bo-ek",
    sequence=1,
)
CARL_1 = interview("carl-1@nordljus.se", Who(CARL, "Carl Nilsson"), 11, "14:00")
DANA_1 = interview("dana-1@nordljus.se", Who(DANA, "Dana Berg"), 10, "10:00")
EVA_NAME = unicodedata.normalize("NFD", "Öberg, Eva")
EVA_1 = interview("eva-1@nordljus.se", Who(EVA, EVA_NAME), 14, "10:00")
EVA_2 = interview(
    "eva-2@nordljus.se", Who(EVA, EVA_NAME), 18, "10:00", subject="Slutintervju Eva Öberg"
)
FRANS_1 = interview("frans-1@nordljus.se", Who(FRANS, FRANS), 15, "09:00")
# Gustav's event names its times the way Outlook does, with a Windows zone id.
WINDOWS_ZONE = "W. Europe Standard Time"
GUSTAV_1 = interview(
    "gustav-1@nordljus.se", Who(GUSTAV, "Gustav Lund"), 14, "14:00", tzid=WINDOWS_ZONE
)
GUSTAV_1_MOVED = interview(
    "gustav-1@nordljus.se",
    Who(GUSTAV, "Gustav Lund"),
    15,
    "14:00",
    sequence=1,
    tzid=WINDOWS_ZONE,
)
# Not an interview: an internal meeting with no candidate, and a weekly series the recruiter runs.
TEAM = EventSpec(
    uid="team@nordljus.se",
    subject="Teammöte",
    start=at(d(7), "08:30"),
    end=at(d(7), "09:00"),
    organizer=RECRUITER,
    attendees=(RECRUITER, PANEL),
    rrule="FREQ=WEEKLY;COUNT=3",
    moved=(Moved(at(d(14), "08:30"), at(d(14), "11:00"), at(d(14), "11:30")),),
)

CHANGES: tuple[Change, ...] = (
    Change(at(d(1), "08:00"), "put", TEAM),
    Change(at(d(7), "08:00"), "put", ANNA_1),
    Change(at(d(7), "09:00"), "put", BO_1),
    Change(at(d(7), "10:00"), "put", CARL_1),
    Change(at(d(7), "11:00"), "put", DANA_1),
    Change(at(d(7), "12:00"), "send", candidate=BO),
    Change(at(d(8), "09:00"), "delete", uid=DANA_1.uid),
    Change(at(d(8), "08:30"), "put", GUSTAV_1),
    Change(at(d(8), "15:00"), "put", BO_1_MOVED),
    Change(at(d(8), "16:00"), "send", candidate=GUSTAV, web_edit=True),
    Change(at(d(9), "10:00"), "put", EVA_1),
    Change(at(d(9), "11:00"), "put", GUSTAV_1_MOVED),
    Change(at(d(10), "12:00"), "put", ANNA_2),
    Change(at(d(14), "16:00"), "put", FRANS_1),
    Change(at(d(15), "10:00"), "put", EVA_2),
    Change(at(d(15), "11:00"), "mail", to=(PANEL.address,), cc=(CARL,)),
    Change(at(d(18), "08:00"), "mail", to=(FRANS,)),
)

_DAYS = [d(n) for n in range(7, 24)]
_TIMES = ("07:00", "09:30", "12:30", "15:30", "18:00")
INSTANTS: tuple[datetime, ...] = tuple(at(day, t) for day in _DAYS for t in _TIMES)

# The service is down from Thursday 17 Dec 07:00 to Monday 21 Dec 07:00.
DOWN_FROM = at(d(17), "07:00")
DOWN_UNTIL = at(d(21), "07:00")
INSTANTS_WITH_OUTAGE: tuple[datetime, ...] = tuple(
    i for i in INSTANTS if not DOWN_FROM <= i < DOWN_UNTIL
)

Draft = tuple[str, str, date]  # (kind, candidate, local day it was drafted)

EXPECTED: frozenset[Draft] = frozenset(
    {
        ("welcome", ANNA, d(7)),
        ("welcome", BO, d(7)),
        ("welcome", CARL, d(7)),
        ("welcome", DANA, d(7)),
        ("thank_you", ANNA, d(8)),
        ("reschedule_notice", BO, d(8)),
        ("welcome", GUSTAV, d(8)),
        ("welcome", EVA, d(9)),
        ("reschedule_notice", GUSTAV, d(9)),
        ("interview_details", ANNA, d(10)),
        ("thank_you", BO, d(10)),
        ("weekend_greeting", ANNA, d(11)),
        ("weekend_greeting", BO, d(11)),
        ("thank_you", CARL, d(11)),
        ("thank_you", EVA, d(14)),
        ("welcome", FRANS, d(14)),
        ("interview_details", EVA, d(15)),
        ("thank_you", FRANS, d(15)),
        ("thank_you", GUSTAV, d(15)),
        ("thank_you", ANNA, d(16)),
        ("status_update", BO, d(17)),
        ("weekend_greeting", ANNA, d(18)),
        ("thank_you", EVA, d(18)),
        ("weekend_greeting", GUSTAV, d(18)),
        ("status_update", CARL, d(22)),
        ("status_update", GUSTAV, d(22)),
        ("vacation_notice", ANNA, d(23)),
        ("vacation_notice", BO, d(23)),
        ("vacation_notice", CARL, d(23)),
        ("vacation_notice", EVA, d(23)),
        ("vacation_notice", FRANS, d(23)),
        ("vacation_notice", GUSTAV, d(23)),
    }
)
# Changed by the recruiter's own mails (she wrote; the daemon holds back):
# - ("weekend_greeting", FRANS, d(18)) is not drafted: she wrote to him that morning.
# - ("status_update", FRANS, d(22)) is not drafted: his silence restarted on the 18th.
# - ("status_update", CARL, d(18)) became d(22): the mail with Carl in Cc on the 15th.

# With the outage: Thursday's and Friday's time-bound mails are skipped as stale; Eva's
# thank-you is still within its two working days on Monday. Carl's status update is not stale:
# the recruiter's mail of the 15th moved it to Tuesday the 22nd, after the outage.
EXPECTED_WITH_OUTAGE: frozenset[Draft] = (
    EXPECTED
    - {
        ("status_update", BO, d(17)),
        ("weekend_greeting", ANNA, d(18)),
        ("thank_you", EVA, d(18)),
        ("weekend_greeting", GUSTAV, d(18)),
    }
) | {("thank_you", EVA, d(21))}

# Drafts the scenario makes obsolete: Dana's welcome (cancelled before it was sent).
EXPECTED_OBSOLETE: frozenset[tuple[str, str]] = frozenset({("welcome", DANA)})

# Mails folded into another one of the same day.
EXPECTED_FOLDED: frozenset[tuple[str, str, date]] = frozenset(
    {
        ("weekend_greeting", CARL, d(11)),
        ("weekend_greeting", EVA, d(18)),
        ("holiday_greeting", ANNA, d(23)),
        ("holiday_greeting", BO, d(23)),
        ("holiday_greeting", CARL, d(23)),
        ("holiday_greeting", EVA, d(23)),
        ("holiday_greeting", FRANS, d(23)),
        ("holiday_greeting", GUSTAV, d(23)),
        ("status_update", ANNA, d(23)),
    }
)

CONFIG = """
[company]
name = "Nordljus AB"
domains = ["nordljus.se"]
country = "SE"
time_zone = "Europe/Stockholm"
careers_url = "https://nordljus.se/jobb"

[company.texts.sv]
history = "Nordljus grundades 2009 i Umeå."
values = "Nyfikenhet, omtanke och mod."
culture = "Frihet under ansvar."
social = "Fredagsfika och konferens i fjällen."
development = "Egen utvecklingsbudget och mentor."

[company.texts.en]
history = "Nordljus was founded in Umeå in 2009."
values = "Curiosity, care and courage."
culture = "Freedom with responsibility."
social = "Friday fika and a conference in the mountains."
development = "Your own learning budget and a mentor."

[people."erik.holm@nordljus.se"]
name = "Erik Holm"
role = { sv = "Teamchef", en = "Team lead" }
bio = { sv = "Har byggt vår plattform sedan 2015.", en = "Has built our platform since 2015." }

[people."sara.lind@nordljus.se"]
name = "Sara Lind"
role = { sv = "Rekryterare", en = "Recruiter" }
phone = "+46 70 123 45 67"

[[stages]]
name = { sv = "första intervjun", en = "first interview" }
next_steps = { sv = "Vi återkommer om en andra intervju.", en = "We will get back to you about a second interview." }

[[stages]]
name = { sv = "andra intervjun", en = "second interview" }
next_steps = { sv = "Vi tar referenser och återkommer.", en = "We will check references and get back to you." }

[service]
state_dir = "{state_dir}"
lookup_grace_seconds = 0

[[mailboxes]]
address = "lisa.ek@nordljus.se"
name = "Lisa Ek"
title = { sv = "Rekryterare", en = "Recruiter" }
language = "sv"
stand_in = "sara.lind@nordljus.se"
vacations = [{ start = "2026-12-28", end = "2027-01-08" }]
"""
