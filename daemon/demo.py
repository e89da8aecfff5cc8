"""``make demo``: a fortnight of a recruiter's calendar around today, run through the real pipeline.

Writes a demo calendar (ICS) and configuration into the output directory, runs ``recruitmail once``
at several instants of the fortnight, and leaves real drafts in a local Maildir plus an HTML preview
of each. No account and no network are needed.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import email.utils
import io
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar

from recruitmail.contracts.connector import KEY_HEADER
from recruitmail.daemon.cli import main as recruitmail
from recruitmail.daemon.state import State

ZONE = ZoneInfo("Europe/Stockholm")
RECRUITER = ("lisa.ek@nordljus.se", "Lisa Ek")
PANEL = ("erik.holm@nordljus.se", "Erik Holm")
ROOM = ("rum-norrsken@nordljus.se", "Rum Norrsken")
DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
INSTALLED_DEMO_CONFIG = Path(sys.prefix) / "share/recruitmail/config/demo.toml"


@dataclass(frozen=True)
class DemoEvent:
    uid: str
    candidate: tuple[str, str]
    start: datetime
    minutes: int = 60
    subject: str = "Intervju"
    categories: tuple[str, ...] = ()
    online_url: str = ""
    cancelled: bool = False


@dataclass(frozen=True)
class Step:
    """At ``at``, the calendar holds ``events`` (a booking appears, moves or is cancelled)."""

    at: datetime
    event: DemoEvent


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def local(day: date, hhmm: str) -> datetime:
    hours, minutes = (int(p) for p in hhmm.split(":"))
    return datetime.combine(day, time(hours, minutes), ZONE)


PASS_TIMES = ("07:00", "09:30", "12:30", "15:30", "18:00")


def fortnight(
    today: date, times: tuple[str, ...] = PASS_TIMES
) -> tuple[list[Step], list[datetime], date]:
    """Bookings over two working weeks starting this week's Monday, and the instants to run at."""
    mon = monday_of(today)
    day = [mon + timedelta(days=n) for n in range(14)]  # day[0] Monday … day[11] Friday next week
    anna = ("anna.svensson@example.com", "Svensson, Anna")
    bo = ("bo.ek@example.org", "Bo Ek")
    carl = ("carl.nilsson@example.com", "Carl Nilsson")
    dana = ("dana.berg@example.net", "Dana Berg")
    eva = ("eva.oberg@example.com", "Öberg, Eva")
    frans = ("frans@example.com", "")
    steps = [
        Step(local(day[0], "08:00"), DemoEvent("anna-1@demo", anna, local(day[1], "10:00"))),
        Step(
            local(day[0], "09:00"),
            DemoEvent(
                "bo-1@demo",
                bo,
                local(day[2], "13:00"),
                subject="Interview",
                categories=("EN",),
                online_url="https://meet.google.com/bo-ek-demo",
            ),
        ),
        Step(local(day[0], "10:00"), DemoEvent("carl-1@demo", carl, local(day[4], "14:00"))),
        Step(local(day[0], "11:00"), DemoEvent("dana-1@demo", dana, local(day[3], "10:00"))),
        Step(
            local(day[1], "09:00"),
            DemoEvent("dana-1@demo", dana, local(day[3], "10:00"), cancelled=True),
        ),
        Step(
            local(day[1], "15:00"),
            DemoEvent(
                "bo-1@demo",
                bo,
                local(day[3], "13:00"),
                subject="Interview",
                categories=("EN",),
                online_url="https://meet.google.com/bo-ek-demo",
            ),
        ),
        Step(local(day[2], "10:00"), DemoEvent("eva-1@demo", eva, local(day[7], "10:00"))),
        Step(
            local(day[3], "12:00"),
            DemoEvent("anna-2@demo", anna, local(day[9], "14:00"), subject="Andra intervju"),
        ),
        Step(local(day[7], "16:00"), DemoEvent("frans-1@demo", frans, local(day[8], "09:00"))),
        Step(
            local(day[8], "10:00"),
            DemoEvent("eva-2@demo", eva, local(day[11], "10:00"), subject="Slutintervju"),
        ),
    ]
    working = [d for d in day if d.weekday() < 5]
    instants = [local(d, t) for d in working for t in times]
    vacation_start = day[11] + timedelta(days=3)  # the Monday after the fortnight
    return steps, instants, vacation_start


def write_calendar(path: Path, events: dict[str, DemoEvent]) -> None:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//recruitmail demo//EN")
    cal.add("version", "2.0")
    for item in events.values():
        ev = icalendar.Event()
        ev.add("uid", item.uid)
        ev.add("dtstamp", datetime(2026, 1, 1, tzinfo=UTC))
        name = item.candidate[1] or item.candidate[0]
        ev.add("summary", f"{item.subject}: {name}")
        ev.add("dtstart", item.start)
        ev.add("dtend", item.start + timedelta(minutes=item.minutes))
        ev.add("location", "Storgatan 1, Umeå" if not item.online_url else "")
        if item.online_url:
            ev.add("url", item.online_url)
        ev.add(
            "description", "Agenda:\n- Presentation av rollen\n- Dina erfarenheter\n- Dina frågor\n"
        )
        if item.categories:
            ev.add("categories", list(item.categories))
        if item.cancelled:
            ev.add("status", "CANCELLED")
        organizer = icalendar.vCalAddress(f"mailto:{RECRUITER[0]}")
        organizer.params["CN"] = RECRUITER[1]
        ev.add("organizer", organizer)
        for address, cn, cutype in (
            RECRUITER + ("INDIVIDUAL",),
            PANEL + ("INDIVIDUAL",),
            item.candidate + ("INDIVIDUAL",),
            ROOM + ("ROOM",),
        ):
            attendee = icalendar.vCalAddress(f"mailto:{address}")
            if cn:
                attendee.params["CN"] = cn
            attendee.params["PARTSTAT"] = "ACCEPTED"
            attendee.params["CUTYPE"] = cutype
            ev.add("attendee", attendee, encode=False)
        cal.add_component(ev)
    cal.add_missing_timezones()
    path.write_bytes(cal.to_ical())


def send_latest_to(maildir: Path, candidate: str, when: datetime) -> None:
    """Play the recruiter pressing Send: the draft moves from Drafts to Sent."""
    drafts = [p for sub in ("cur", "new") for p in (maildir / ".Drafts" / sub).glob("*")]
    mine = [p for p in drafts if candidate in p.read_text(encoding="utf-8", errors="replace")]
    if not mine:
        return
    newest = max(mine, key=lambda p: p.stat().st_mtime_ns)
    message = email.message_from_bytes(newest.read_bytes(), policy=email.policy.default)
    del message["Date"]
    message["Date"] = email.utils.format_datetime(when)
    sent = maildir / ".Sent" / "cur"
    sent.mkdir(parents=True, exist_ok=True)
    (sent / (newest.name.split(":")[0] + ":2,S")).write_bytes(message.as_bytes())
    newest.unlink()


def config_text(out: Path, vacation_start: date) -> str:
    template = DEMO_CONFIG if DEMO_CONFIG.exists() else INSTALLED_DEMO_CONFIG
    return (
        template.read_text(encoding="utf-8")
        .replace("{out}", str(out))
        .replace("{vacation_start}", vacation_start.isoformat())
        .replace("{vacation_end}", (vacation_start + timedelta(days=4)).isoformat())
    )


def run(
    out: Path, today: date, until: datetime | None = None, times: tuple[str, ...] = PASS_TIMES
) -> int:
    """The demo into ``out``; ``until`` and ``times`` shorten it (the tests read a part of it)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    steps, instants, vacation_start = fortnight(today, times)
    if until is not None:
        instants = [i for i in instants if i <= until]
    config = out / "recruitmail.toml"
    config.write_text(config_text(out, vacation_start), encoding="utf-8")
    calendar: dict[str, DemoEvent] = {}
    write_calendar(out / "calendar.ics", calendar)
    pending = sorted(steps, key=lambda s: s.at)
    sent_bo = False
    print(
        f"recruitmail demo: the fortnight from {instants[0]:%A %d %B %Y}, {len(instants)} passes …"
    )
    for instant in instants:
        changed = False
        while pending and pending[0].at <= instant:
            step = pending.pop(0)
            calendar[step.event.uid] = step.event
            changed = True
        if changed:
            write_calendar(out / "calendar.ics", calendar)
        if not sent_bo and instant.weekday() == 0 and instant.hour >= 12:
            send_latest_to(out / "Maildir", "bo.ek@example.org", instant)  # Bo's welcome goes out
            sent_bo = True
        with contextlib.redirect_stdout(io.StringIO()):  # one summary table at the end instead
            code = recruitmail(["--config", str(config), "once", "--now", instant.isoformat()])
        if code != 0:
            print(
                f"recruitmail once failed at {instant.isoformat()} (exit {code})", file=sys.stderr
            )
            return code
    return report(out)


def drafts(maildir: Path) -> list[EmailMessage]:
    """Every mail the demo left in Drafts and Sent, oldest file first."""
    found = []
    for folder in (".Drafts", ".Sent"):
        for path in sorted((maildir / folder).glob("*/*")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
    return found


def report(out: Path) -> int:
    previews = out / "previews"
    previews.mkdir(exist_ok=True)
    state = State.in_dir(out / "state")
    rows = {r.entry.key.id: r for r in state.all_ledger()}
    state.close()
    found = []
    for folder in (".Drafts", ".Sent"):
        for path in sorted((out / "Maildir" / folder).glob("*/*")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            row = rows.get(str(message[KEY_HEADER]))
            if row is None or row.entry.done_at is None:
                continue
            html = message.get_body(("html",))
            key = row.entry.key
            local = row.entry.done_at.astimezone(ZONE)
            name = f"{local:%m%d-%H%M}-{key.kind.value}-{key.candidate.split('@')[0]}.html"
            preview = previews / name
            if html is not None:
                preview.write_text(html.get_content(), encoding="utf-8")
            state_text = row.entry.state.value + (" (sent)" if folder == ".Sent" else "")
            found.append(
                (
                    row.entry.done_at.astimezone(ZONE),
                    row.entry.key.candidate,
                    row.entry.key.kind.value,
                    state_text,
                    str(message["Subject"]),
                    preview,
                )
            )
    found.sort()
    print()
    print(f"{'day':<16}  {'candidate':<27} {'kind':<18} {'state':<16} {'subject':<62} file")
    for when, candidate, kind, state_text, subject, preview in found:
        shown = subject if len(subject) <= 60 else subject[:59] + "…"
        print(
            f"{when:%a %d %b %H:%M}  {candidate:<27} {kind:<18} {state_text:<16} {shown:<62} "
            f"previews/{preview.name}"
        )
    print()
    print(
        f"{len(found)} drafts in {out / 'Maildir'} (a Maildir: open it with `mutt -f {out / 'Maildir'}/.Drafts`"
    )
    print(
        f"or any Maildir client); an HTML preview of each in {previews}/ — e.g. open {found[0][5] if found else previews}"
    )
    print(
        f"Each candidate's journey: recruitmail --config {out / 'recruitmail.toml'} status --offline"
    )
    return 0


def cli() -> int:
    parser = argparse.ArgumentParser(prog="recruitmail-demo", description=__doc__)
    parser.add_argument("--out", default="demo-output", help="output directory (replaced)")
    parser.add_argument("--today", help="pretend today is this date (YYYY-MM-DD)")
    args = parser.parse_args()
    today = date.fromisoformat(args.today) if args.today else datetime.now(ZONE).date()
    return run(Path(args.out).resolve(), today)


if __name__ == "__main__":
    sys.exit(cli())
