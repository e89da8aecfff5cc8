"""``recruitmail run`` under a test that plays systemd: notify socket, watchdog, reload, stop, metrics.

The daemon runs as a real subprocess with its own ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC``. Its
calendar is a published ICS link served by a loopback HTTP server the test controls, so the test
can make a pass hang (the server answers a byte a second); its drafts land in a Maildir in a temp
directory. Waits have generous deadlines: they wait for something to happen, they do not assert
how fast it happens.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.scenario import two_weeks
from tests.scenario.spec import STOCKHOLM, EventSpec, Who, at, to_ics
from tests.servers import LOOPBACK, free_port, spawn, stop

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "recruitmail.service"

WATCHDOG_SECONDS = 2.0
INTERVAL_SECONDS = 10  # the smallest interval settings.py allows
PASS_TIMEOUT_SECONDS = 5  # the smallest pass timeout settings.py allows
WAIT = 30.0  # deadline for something that should happen soon: a safety net, not a measurement

ANNA = Who("anna.svensson@example.com", "Svensson, Anna")
BO = Who("bo.ek@example.org", "Bo Ek")
CARL = Who("carl.nilsson@example.com", "Carl Nilsson")


def stop_timeout() -> float:
    """``TimeoutStopSec=`` of the shipped unit: how long systemd waits before it kills."""
    found = re.search(r"^TimeoutStopSec=(\d+)s?\s*$", UNIT.read_text(encoding="utf-8"), re.M)
    assert found, "the unit should set TimeoutStopSec="
    return float(found.group(1))


def interview_in_two_days(who: Who) -> EventSpec:
    """A first interview in the future of the real clock, so a welcome is due at once."""
    day = (datetime.now(STOCKHOLM) + timedelta(days=2)).date()
    start = at(day, "10:00")
    return EventSpec(
        uid=f"{who.address.split('@')[0]}-1@nordljus.se",
        subject=f"Intervju: {who.name}",
        start=start,
        end=start + timedelta(hours=1),
        organizer=two_weeks.RECRUITER,
        attendees=(two_weeks.RECRUITER, two_weeks.PANEL, who),
        location="Storgatan 1, Umeå",
    )


# --------------------------------------------------------------------------------------------
# The published calendar: a loopback HTTP server that can be told to stall.


class CalendarServer:
    """Serves one ICS document; ``stall()`` makes later answers trickle out a byte a second."""

    def __init__(self) -> None:
        self.body = to_ics([])
        self.requests = 0
        self.stalling = False
        self.stalled = threading.Event()  # a stalled answer has started
        self.release = threading.Event()  # let a stalled answer finish
        self.changed = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                if self.path != server.path:
                    self.send_error(404)
                    return
                with server.changed:
                    server.requests += 1
                    body, stalling = server.body, server.stalling
                    server.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if stalling:
                        server.stalled.set()
                        sent = 0
                        # Slowly, forever: each byte arrives well within any read timeout.
                        while sent < len(body) - 1 and not server.release.wait(1.0):
                            self.wfile.write(body[sent : sent + 1])
                            self.wfile.flush()
                            sent += 1
                        body = body[sent:]
                    self.wfile.write(body)
                except OSError:
                    pass  # the daemon went away mid-answer

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.httpd.daemon_threads = True
        self.path = "/calendar/3f9c2a7e.ics"
        self.url = f"http://{LOOPBACK}:{self.httpd.server_address[1]}{self.path}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, *specs: EventSpec) -> None:
        with self.changed:
            self.body = to_ics(list(specs))

    def stall(self) -> None:
        with self.changed:
            self.stalling = True

    def wait_for_request(self, number: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.requests >= number, WAIT), (
                f"the daemon never fetched the calendar a {number}. time"
            )

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def calendar() -> Iterator[CalendarServer]:
    server = CalendarServer()
    yield server
    server.close()


# --------------------------------------------------------------------------------------------
# The service manager: the receiving end of $NOTIFY_SOCKET.


@dataclass(frozen=True)
class Notification:
    at: float  # time.monotonic() when it arrived
    lines: tuple[str, ...]

    def get(self, key: str) -> str | None:
        for line in self.lines:
            name, _, value = line.partition("=")
            if name == key:
                return value
        return None


class ServiceManager:
    """Collects every datagram the daemon sends, in order, as systemd would read them."""

    def __init__(self) -> None:
        # A short directory of its own: AF_UNIX paths are limited to about 100 bytes.
        self.directory = tempfile.mkdtemp(prefix="rm-notify-")
        self.address = os.path.join(self.directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.received: list[Notification] = []
        self.arrived = threading.Condition()
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self) -> None:
        while not self.closing.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.arrived:
                self.received.append(
                    Notification(time.monotonic(), tuple(data.decode().split("\n")))
                )
                self.arrived.notify_all()

    def wait_for(self, what: Callable[[Notification], bool], after: int = 0, why: str = "") -> int:
        """Index of the first notification from ``after`` on that matches ``what``."""

        def found() -> int | None:
            return next(
                (i for i in range(after, len(self.received)) if what(self.received[i])), None
            )

        with self.arrived:
            self.arrived.wait_for(lambda: found() is not None, WAIT)
            index = found()
        assert index is not None, (
            f"no {why or 'such notification'} arrived; got {self.since(after)}"
        )
        return index

    def wait_for_key(self, line: str, after: int = 0) -> int:
        return self.wait_for(lambda n: line in n.lines, after, line)

    def wait_for_status(self, needle: str, after: int = 0) -> int:
        return self.wait_for(
            lambda n: needle in (n.get("STATUS") or ""), after, f"STATUS with {needle!r}"
        )

    def since(self, index: int) -> list[tuple[str, ...]]:
        with self.arrived:
            return [n.lines for n in self.received[index:]]

    def count(self) -> int:
        with self.arrived:
            return len(self.received)

    def pings(self, after: int = 0) -> list[Notification]:
        with self.arrived:
            return [n for n in self.received[after:] if "WATCHDOG=1" in n.lines]

    def statuses(self) -> list[str]:
        with self.arrived:
            return [s for n in self.received if (s := n.get("STATUS")) is not None]

    def close(self) -> None:
        self.closing.set()
        self.thread.join()
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def manager() -> Iterator[ServiceManager]:
    collector = ServiceManager()
    yield collector
    collector.close()


# --------------------------------------------------------------------------------------------
# The daemon.


class Daemon:
    """``recruitmail run`` as systemd would start it, with a config, a state dir and a Maildir."""

    def __init__(self, root: Path, calendar: CalendarServer, manager: ServiceManager) -> None:
        self.root = root
        self.calendar = calendar
        self.manager = manager
        self.config = root / "recruitmail.toml"
        self.state_dir = root / "state"
        self.maildir = root / "Maildir"
        self.templates = root / "templates"
        self.templates.mkdir()
        self.log = root / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(
        self,
        *,
        name: str = "Lisa Ek",
        templates: Path | None = None,
        metrics_port: int = 0,
        fresh_start_mb: int | None = None,
    ) -> None:
        service = (
            "[service]\n"
            f"interval_seconds = {INTERVAL_SECONDS}\n"
            f"pass_timeout_seconds = {PASS_TIMEOUT_SECONDS}\n"
            f'templates_dir = "{templates or self.templates}"\n'
            f"metrics_port = {metrics_port}\n"
        )
        if fresh_start_mb is not None:
            service += f"fresh_start_mb = {fresh_start_mb}\n"
        text = two_weeks.CONFIG.replace("{state_dir}", str(self.state_dir))
        text = text.replace("[service]\n", service).replace('name = "Lisa Ek"', f'name = "{name}"')
        text += (
            f'\n[mailboxes.source]\ntype = "ics"\nurl = "{self.calendar.url}"\n'
            f'\n[mailboxes.sink]\ntype = "maildir"\npath = "{self.maildir}"\n'
        )
        self.config.write_text(text, encoding="utf-8")

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RECRUITMAIL_", "WATCHDOG_", "NOTIFY_"))
        }
        env.update(
            PYTHONPATH=str(REPO),
            NOTIFY_SOCKET=self.manager.address,
            WATCHDOG_USEC=str(int(WATCHDOG_SECONDS * 1_000_000)),
            # A real calendar link must never be reached by mistake, nor go through a proxy.
            NO_PROXY="127.0.0.1,localhost",
        )
        with self.log.open("wb") as out:
            self.process = spawn(
                [sys.executable, "-m", "recruitmail", "run", "--config", str(self.config)],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def signal(self, signum: int) -> None:
        assert self.process is not None and self.process.poll() is None, self.output()
        self.process.send_signal(signum)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> int:
        """SIGTERM, as ``systemctl stop`` sends it; the exit code within the unit's stop timeout."""
        self.signal(signal.SIGTERM)
        assert self.process is not None
        try:
            return self.process.wait(timeout=stop_timeout())
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {stop_timeout():.0f}s after SIGTERM:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL, unless it has ended already; what it left in its group goes too."""
        stop(self.process, grace=0)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def drafts(self) -> list[EmailMessage]:
        folder = self.maildir / ".Drafts"
        files = sorted(p for sub in ("new", "cur") for p in (folder / sub).glob("*") if p.is_file())
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files
        ]

    def draft_to(self, who: Who) -> EmailMessage:
        found = [m for m in self.drafts() if who.address in str(m["To"])]
        assert len(found) == 1, f"expected one draft to {who.address}, found {len(found)}"
        return found[0]

    def ledger(self) -> list[tuple[str, str, str]]:
        with sqlite3.connect(self.state_dir / "recruitmail.sqlite") as db:
            return sorted(db.execute("SELECT candidate, kind, state FROM ledger").fetchall())

    def integrity(self) -> str:
        with sqlite3.connect(self.state_dir / "recruitmail.sqlite") as db:
            return str(db.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.fixture
def daemon(tmp_path: Path, calendar: CalendarServer, manager: ServiceManager) -> Iterator[Daemon]:
    calendar.publish(interview_in_two_days(ANNA))
    running = Daemon(tmp_path, calendar, manager)
    running.write_config()
    yield running
    calendar.release.set()  # a stalled pass must be able to end for the daemon to stop
    running.kill()


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock of ``MONOTONIC_USEC=``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def drafts_created(count: int) -> str:
    return f"{count} draft(s) created since start"


# --------------------------------------------------------------------------------------------
# The tests.


def test_ready_status_and_watchdog_while_passes_complete_then_a_clean_stop(
    daemon: Daemon, manager: ServiceManager
) -> None:
    daemon.start()
    ready = manager.wait_for_key("READY=1")
    assert daemon.running()

    first_pass = manager.wait_for_status(drafts_created(1), after=ready)
    welcome = daemon.draft_to(ANNA)
    assert welcome["From"].addresses[0].display_name == "Lisa Ek"
    # systemd only needs a ping every WatchdogSec; a healthy idle daemon keeps sending them.
    manager.wait_for(
        lambda n: len(manager.pings(first_pass)) >= 3, after=first_pass, why="three pings"
    )

    statuses = manager.statuses()
    assert statuses, "the daemon should describe itself in STATUS="
    for status in statuses:
        assert status.isprintable() and status.strip() == status
        assert status.startswith("1 mailbox;"), status
        # What systemctl status shows is no place for a candidate's address or name.
        assert ANNA.address not in status and "Anna" not in status
    assert re.fullmatch(
        r"1 mailbox; last pass \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; 1 draft\(s\) created since start",
        manager.received[first_pass].get("STATUS") or "",
    )

    before_stop = manager.count()
    assert daemon.terminate() == 0, daemon.output()
    manager.wait_for_key("STOPPING=1", after=before_stop)
    assert daemon.ledger() == [(ANNA.address, "welcome", "drafted")]
    assert daemon.integrity() == "ok"
    log = daemon.output()
    assert ANNA.address not in log and "Svensson" not in log, "names belong in logs at DEBUG only"


def test_watchdog_pings_stop_while_a_pass_hangs_on_a_stalled_calendar(
    daemon: Daemon, calendar: CalendarServer, manager: ServiceManager
) -> None:
    daemon.start()
    first_pass = manager.wait_for_status(drafts_created(1))
    manager.wait_for(lambda n: len(manager.pings(first_pass)) >= 1, after=first_pass, why="a ping")

    calendar.stall()
    calendar.wait_for_request(2)  # the next scheduled pass is now reading a byte a second
    assert calendar.stalled.wait(WAIT)
    stalled_at = time.monotonic()
    # Past pass_timeout_seconds the pass counts as hung; give the last ping in flight time to land.
    time.sleep(PASS_TIMEOUT_SECONDS + WATCHDOG_SECONDS)
    quiet_from = manager.count()
    time.sleep(WATCHDOG_SECONDS)  # systemd kills a service that stays silent this long
    assert daemon.running()
    assert manager.pings(quiet_from) == [], "a hung pass must starve the watchdog"
    assert any(p.at >= stalled_at for p in manager.pings()), (
        "pings went on while the pass was young"
    )

    calendar.release.set()  # the answer completes: the pass finishes and pings come back
    manager.wait_for(
        lambda n: "WATCHDOG=1" in n.lines, after=quiet_from, why="a ping after the stall"
    )
    before_stop = manager.count()
    assert daemon.terminate() == 0, daemon.output()
    manager.wait_for_key("STOPPING=1", after=before_stop)
    assert daemon.ledger() == [(ANNA.address, "welcome", "drafted")]
    assert daemon.integrity() == "ok"


def test_reload_refuses_a_broken_template_and_keeps_the_running_configuration(
    daemon: Daemon, calendar: CalendarServer, manager: ServiceManager, tmp_path: Path
) -> None:
    daemon.start()
    first_pass = manager.wait_for_status(drafts_created(1))

    # The administrator renames the recruiter and points at templates with a syntax error.
    broken = tmp_path / "templates-new"
    (broken / "sv").mkdir(parents=True)
    (broken / "sv" / "welcome.txt.j2").write_text(
        "{% block subject %}Välkommen {{ candidate.first_name }{% endblock %}\n", encoding="utf-8"
    )
    daemon.write_config(name="Lisa Ek-Holm", templates=broken)
    hup_sent = monotonic_usec()
    daemon.signal(signal.SIGHUP)
    reloading = manager.wait_for_key("RELOADING=1", after=first_pass)
    # systemd matches the reload to its own clock: the daemon's stamp lies after the signal.
    usec = manager.received[reloading].get("MONOTONIC_USEC")
    assert usec is not None and hup_sent <= int(usec) <= monotonic_usec()
    refused = manager.wait_for_key("READY=1", after=reloading)
    assert "reload refused" in (manager.received[refused].get("STATUS") or "")
    assert daemon.running()

    # The next scheduled pass still runs on the old configuration and the old templates.
    calendar.publish(interview_in_two_days(ANNA), interview_in_two_days(BO))
    second_pass = manager.wait_for_status(drafts_created(2), after=refused)
    welcome = daemon.draft_to(BO)
    assert welcome["From"].addresses[0].display_name == "Lisa Ek"
    assert welcome["Subject"] and "{" not in welcome["Subject"]
    assert "reload refused" in (manager.received[second_pass].get("STATUS") or "")
    assert manager.pings(refused), "a refused reload does not stop the watchdog"

    # Fixed and reloaded: RELOADING then READY, the new name is used, the complaint is gone.
    (broken / "sv" / "welcome.txt.j2").unlink()
    daemon.write_config(name="Lisa Ek-Holm", templates=broken)
    calendar.publish(
        interview_in_two_days(ANNA), interview_in_two_days(BO), interview_in_two_days(CARL)
    )
    daemon.signal(signal.SIGHUP)
    reloading = manager.wait_for_key("RELOADING=1", after=second_pass)
    ready = manager.wait_for_key("READY=1", after=reloading)
    assert "reload refused" not in (manager.received[ready].get("STATUS") or "")
    manager.wait_for_status(drafts_created(3), after=ready)
    assert daemon.draft_to(CARL)["From"].addresses[0].display_name == "Lisa Ek-Holm"

    assert daemon.terminate() == 0, daemon.output()
    assert [kind for _, kind, _ in daemon.ledger()] == ["welcome"] * 3
    assert {state for _, _, state in daemon.ledger()} == {"drafted"}
    assert daemon.integrity() == "ok"


def test_a_template_broken_in_place_does_not_reach_the_running_daemon(
    daemon: Daemon, calendar: CalendarServer, manager: ServiceManager
) -> None:
    # The company's own welcome text overrides the shipped one.
    override = daemon.templates / "sv" / "welcome.txt.j2"
    override.parent.mkdir()
    shutil.copy(REPO / "templates" / "sv" / "welcome.txt.j2", override)
    daemon.start()
    first_pass = manager.wait_for_status(drafts_created(1))

    # The administrator edits that template where it lives, makes a mistake, and reloads.
    override.write_text(
        "{% block subject %}Välkommen {{ candidate.first_name }{% endblock %}\n", encoding="utf-8"
    )
    daemon.signal(signal.SIGHUP)
    refused = manager.wait_for_key("READY=1", after=first_pass)
    assert "reload refused" in (manager.received[refused].get("STATUS") or "")

    calendar.publish(interview_in_two_days(ANNA), interview_in_two_days(BO))
    calendar.wait_for_request(2)
    after_fetch = manager.count()
    manager.wait_for(
        lambda n: n.get("STATUS") is not None, after=after_fetch, why="the end of the pass"
    )
    assert len(daemon.drafts()) == 2, (
        "the running configuration should still draft with its templates"
    )
    assert daemon.terminate() == 0, daemon.output()


def test_metrics_count_the_drafts_created_by_kind(daemon: Daemon, manager: ServiceManager) -> None:
    port = free_port()
    daemon.write_config(metrics_port=port)
    daemon.start()
    manager.wait_for_status(drafts_created(1))

    # Never through a proxy: the endpoint is on this machine.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{LOOPBACK}:{port}/metrics", timeout=WAIT) as response:
        assert response.status == 200
        text = response.read().decode("utf-8")

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("recruitmail_drafts_created_total", (("kind", "welcome"),))] == 1.0
    assert samples[("recruitmail_pass_duration_seconds_count", (("outcome", "ok"),))] >= 1.0
    assert any(name == "recruitmail_last_successful_pass_timestamp_seconds" for name, _ in samples)
    # Labels carry hashed ids, never a person's address.
    assert "lisa.ek@nordljus.se" not in text and ANNA.address not in text

    assert daemon.terminate() == 0, daemon.output()


def test_a_first_round_that_grew_the_daemon_starts_it_afresh_once_in_the_same_process(
    daemon: Daemon, calendar: CalendarServer, manager: ServiceManager
) -> None:
    # Any first round grows the process by more than 1 MB (it reads, renders and drafts).
    daemon.write_config(fresh_start_mb=1)
    daemon.start()
    assert daemon.process is not None
    ready = manager.wait_for_key("READY=1")
    manager.wait_for_status(drafts_created(1), after=ready)

    # To systemd a fresh start is a reload of the same main process: RELOADING=1 (with the
    # monotonic time systemd >= 253 wants), then READY=1 from the new program; never STOPPING=1.
    reloading = manager.wait_for_key("RELOADING=1", after=ready)
    assert int(manager.received[reloading].get("MONOTONIC_USEC") or 0) > 0
    again = manager.wait_for_key("READY=1", after=reloading)
    assert daemon.running(), daemon.output()

    # The new process drafts what comes next, and nothing the first one drafted.
    calendar.publish(interview_in_two_days(ANNA), interview_in_two_days(BO))
    counted = manager.wait_for_status(drafts_created(1), after=again)
    manager.wait_for(
        lambda n: len(manager.pings(counted)) >= 2, after=counted, why="two pings after it"
    )
    assert len(daemon.drafts()) == 2
    assert daemon.draft_to(ANNA)["Subject"] and daemon.draft_to(BO)["Subject"]
    assert daemon.ledger() == [
        (ANNA.address, "welcome", "drafted"),
        (BO.address, "welcome", "drafted"),
    ]

    # Once: the new process's own first round (an idle one here) does not start it again.
    assert sum("RELOADING=1" in lines for lines in manager.since(0)) == 1
    assert not any("STOPPING=1" in lines for lines in manager.since(0))
    log = daemon.output()
    assert log.count("starting afresh, once, in the same process") == 1, log
    assert log.count("recruitmail running") == 2, log

    before_stop = manager.count()
    assert daemon.terminate() == 0, daemon.output()
    manager.wait_for_key("STOPPING=1", after=before_stop)
    assert daemon.integrity() == "ok"


def test_a_daemon_does_not_start_afresh_when_its_first_round_stayed_small(
    daemon: Daemon, manager: ServiceManager
) -> None:
    daemon.write_config()  # the shipped default, 64 MB: far more than one small calendar needs
    daemon.start()
    ready = manager.wait_for_key("READY=1")
    first_pass = manager.wait_for_status(drafts_created(1), after=ready)
    manager.wait_for(
        lambda n: len(manager.pings(first_pass)) >= 3, after=first_pass, why="three pings"
    )
    assert not any("RELOADING=1" in lines for lines in manager.since(0))
    assert "starting afresh" not in daemon.output()
    assert daemon.terminate() == 0, daemon.output()


def test_a_configuration_broken_on_disk_keeps_the_daemon_from_starting_afresh(
    daemon: Daemon, calendar: CalendarServer, manager: ServiceManager
) -> None:
    daemon.write_config(fresh_start_mb=1)
    calendar.stall()  # the first pass waits on the calendar while the file is broken
    daemon.start()
    manager.wait_for_key("READY=1")
    assert calendar.stalled.wait(WAIT), daemon.output()
    daemon.config.write_text("[service\n", encoding="utf-8")
    calendar.release.set()

    deadline = time.monotonic() + WAIT
    while "does not start afresh" not in daemon.output() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = daemon.output()
    assert "the configuration on disk no longer loads" in log, log
    assert "TOML" in log or "syntax" in log, log  # the reason, as `recruitmail check` gives it
    # It goes on as it was: the first pass's draft, no reload, no stop.
    manager.wait_for_status(drafts_created(1))
    assert daemon.running()
    assert not any("RELOADING=1" in lines for lines in manager.since(0))
    assert daemon.ledger() == [(ANNA.address, "welcome", "drafted")]
    assert daemon.terminate() == 0, daemon.output()
