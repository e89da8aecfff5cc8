"""Run one corpus entry through the real CLI on ICS + Maildir, and judge what came out.

Each pass is ``python -m recruitmail --config … once --now …`` in a child process with an
address-space limit and a hang guard, so that a calendar which still explodes fails its own entry
instead of the machine. The child's own resource usage (``wait4``) gives the benchmark its figures.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import gzip
import logging
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from recruitmail.daemon import cli
from tests import servers
from tests.hostile.model import ORDINARY, Entry
from tests.hostile.translate import calendar
from tests.scenario import two_weeks

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 2 * 1024**3
"""Address space one pass may reserve; far above a sound pass, far below what hurts the machine."""
PASS_TIMEOUT = 240.0
"""A hang guard, not a measurement: a pass that has not ended by then never will."""
BIDI_AND_CONTROL = re.compile(
    "[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200b-\u200f"
    "\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff]"
)
MAX_DRAFT_BYTES = 300_000
SECRET_PATH = "/calendars/5b1e7c/published.ics"


@dataclass
class Run:
    """One ``once`` pass as a process."""

    code: int
    seconds: float
    max_rss_mb: float
    timed_out: bool
    log: str


@dataclass
class Result:
    """Everything one entry produced, for the verdict and the benchmark."""

    runs: list[Run] = field(default_factory=list)
    drafts: list[EmailMessage] = field(default_factory=list)
    state_bytes: int = 0
    state_blob: bytes = b""
    status: str = ""
    redirect_target_hits: int = 0
    written_through_link: list[str] = field(default_factory=list)

    @property
    def log(self) -> str:
        return "\n".join(run.log for run in self.runs)


# --- feeds ---------------------------------------------------------------------------------------


_BOMB: bytes | None = None


def gzip_bomb() -> bytes:
    """About 2 KB that expand, through ``Content-Encoding: gzip, gzip``, to 1 GiB."""
    global _BOMB
    if _BOMB is None:
        inner = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
        parts = [inner.compress(b"BEGIN:VCALENDAR\r\nX-PAD:")]
        chunk = b"A" * (1024 * 1024)
        parts.extend(inner.compress(chunk) for _ in range(1024))
        parts.append(inner.flush())
        _BOMB = gzip.compress(b"".join(parts), 9)
    return _BOMB


class Feed:
    """A published calendar on loopback that misbehaves the way an entry says, until repaired."""

    def __init__(self, entry: Entry, good: bytes, attacker: bytes) -> None:
        self.entry = entry
        self.good = good
        self.attacker = attacker
        self.repaired = False
        self.target_hits = 0
        self._servers: list[ThreadingHTTPServer] = []

    def start(self) -> Feed:
        feed = self
        if self.entry.feed == "gzip-bomb":
            gzip_bomb()  # made before any pass: its cost is not the pass's

        class Target(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                feed.target_hits += 1
                self._send(200, feed.attacker, {"Content-Type": "text/calendar"})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        target = ThreadingHTTPServer(("127.0.0.2", 0), Target)

        class Calendar(Target):
            def do_GET(self) -> None:  # noqa: N802
                mode = "file" if feed.repaired else feed.entry.feed
                if mode == "gzip-bomb":
                    self._send(
                        200,
                        gzip_bomb(),
                        {"Content-Type": "text/calendar", "Content-Encoding": "gzip, gzip"},
                    )
                elif mode == "retry-after":
                    self._send(503, b"busy", {"Retry-After": "3000000000"})
                elif mode == "redirect":
                    location = f"http://127.0.0.2:{target.server_address[1]}/cal.ics"
                    self._send(302, b"", {"Location": location})
                else:
                    self._send(200, feed.good, {"Content-Type": "text/calendar"})

        source = ThreadingHTTPServer(("127.0.0.1", 0), Calendar)
        self._servers = [source, target]
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}{SECRET_PATH}"

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


# --- the working directory ------------------------------------------------------------------------


BOOM_LINE = '{% if candidate.first_name == "Boom" %}{{ candidate.no_such_field.here }}{% endif %}'


def write_config(entry: Entry, root: Path, tables: str) -> Path:
    """The scenario's configuration with this entry's ``[mailboxes.source]`` and
    ``[mailboxes.sink]`` ``tables``."""
    text = two_weeks.CONFIG.replace("{state_dir}", str(root / "state"))
    if entry.templates == "raises-for-boom":
        override = root / "templates"
        for language in ("sv", "en"):
            (override / language).mkdir(parents=True, exist_ok=True)
            default = (ROOT / "templates" / language / "welcome.txt.j2").read_text("utf-8")
            head, marker, tail = default.partition("{% block body %}")
            (override / language / "welcome.txt.j2").write_text(
                head + marker + BOOM_LINE + tail, "utf-8"
            )
        text = text.replace(
            "lookup_grace_seconds = 0\n",
            f'lookup_grace_seconds = 0\ntemplates_dir = "{override}"\n',
        )
    text += tables
    path = root / "recruitmail.toml"
    path.write_text(text, encoding="utf-8")
    return path


def set_trap(entry: Entry, root: Path) -> None:
    """Lay the Maildir trap the entry names, before the first pass."""
    maildir = root / "Maildir"
    for folder in ("", ".Drafts", ".Sent"):
        for sub in ("cur", "new", "tmp"):
            (maildir / folder / sub).mkdir(parents=True, exist_ok=True)
    if entry.mailbox == "fifo-in-sent":
        os.mkfifo(maildir / ".Sent" / "cur" / "1700000000.fifo.host:2,S")
    elif entry.mailbox == "symlinked-drafts":
        elsewhere = root / "elsewhere"
        elsewhere.mkdir()
        (maildir / ".Drafts" / "cur").rmdir()
        (maildir / ".Drafts" / "cur").symlink_to(elsewhere, target_is_directory=True)


def repair(entry: Entry, root: Path, feed: Feed | None) -> None:
    """What an administrator does after the first pass: the trap is taken away."""
    if feed is not None:
        feed.repaired = True
    if entry.mailbox == "symlinked-drafts":
        link = root / "Maildir" / ".Drafts" / "cur"
        link.unlink()
        link.mkdir()


# --- passes ---------------------------------------------------------------------------------------


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(
    config: Path, *args: str, workdir: Path, timeout: float = PASS_TIMEOUT, fresh: bool = False
) -> Run:
    """``recruitmail --config config ARGS`` in a child process; its own time and peak RSS.

    The child is forked from this process and calls ``daemon.cli.main`` (the imports are paid
    once per test run); ``fresh=True`` starts ``python -m recruitmail`` instead, for figures that
    must not include this process's memory (the benchmark).
    """
    out = workdir / f"cli-{time.monotonic_ns()}.log"
    argv = ["--config", str(config), *args]
    started = time.monotonic()
    with out.open("wb") as sink:
        if fresh:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
            env.pop("RECRUITMAIL_CONFIG", None)
            # The child starts as a fork of this process, and ru_maxrss survives exec: it would
            # count this process's memory (the corpus it built). The new interpreter reports
            # its own peak (VmHWM, which exec resets) into a file as it exits.
            peak_file = workdir / f"peak-{time.monotonic_ns()}"
            launcher = (
                "import atexit, runpy, sys\n"
                "def peak():\n"
                "    for line in open('/proc/self/status'):\n"
                "        if line.startswith('VmHWM:'):\n"
                f"            open({str(peak_file)!r}, 'w').write(line.split()[1])\n"
                "atexit.register(peak)\n"
                "sys.argv[0] = 'recruitmail'\n"
                "runpy.run_module('recruitmail', run_name='__main__')\n"
            )
            child = servers.spawn(
                [sys.executable, "-c", launcher, *argv],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                preexec_fn=_limits,
            )
            pid = child.pid
        else:
            sys.stdout.flush()
            sys.stderr.flush()
            servers.guard_fork()
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:
                _child(sink.fileno(), argv, parent)
            servers.watch(pid)  # its own group: the child calls setsid first
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

        guard = threading.Timer(timeout, kill)
        guard.start()
        reaped = False
        try:
            _, status, usage = os.wait4(pid, 0)
            reaped = True
            if fresh:
                child.returncode = os.waitstatus_to_exitcode(status)
        finally:
            guard.cancel()
            # Whatever the pass left in its group goes too (all of it, if this was interrupted).
            if fresh:
                servers.stop(child, grace=0)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                if not reaped:
                    os.waitpid(pid, 0)
                servers.unwatch(pid)
    seconds = time.monotonic() - started
    log = out.read_bytes().decode("utf-8", "replace")
    out.unlink()
    code = os.waitstatus_to_exitcode(status)
    peak_kib = float(usage.ru_maxrss)
    if fresh and peak_file.exists():
        peak_kib = float(peak_file.read_text() or peak_kib)
        peak_file.unlink()
    return Run(code, seconds, peak_kib / 1024, timed_out.is_set(), log)


def _child(output: int, argv: list[str], parent: int) -> None:
    """The forked pass: never returns into the test runner."""
    code = 70
    try:
        os.setsid()
        servers.die_with_parent(parent)
        _limits()
        os.dup2(output, 1)
        os.dup2(output, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        logging.shutdown()
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)
        os.environ.pop("RECRUITMAIL_CONFIG", None)
        code = cli.main(argv)
    except BaseException:  # noqa: BLE001 - report it like the process would, then leave
        traceback.print_exc()
        code = 70
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def run_entry(entry: Entry, root: Path, *, hostile: bool = True, fresh: bool = False) -> Result:
    """Every pass of ``entry`` in ``root`` (``hostile=False``: the same calendar without the
    hostile part, the benchmark's baseline)."""
    root.mkdir(parents=True, exist_ok=True)
    good = calendar(entry, entry.now, hostile=hostile)
    feed: Feed | None = None
    if hostile and entry.feed != "file":
        attacker = calendar(entry, entry.now, hostile=False).replace(
            b"olle.ordinar@example.com", b"victim@evil.example"
        )
        feed = Feed(entry, calendar(entry, entry.now, hostile=False), attacker).start()
        source = f'\n[mailboxes.source]\ntype = "ics"\nurl = "{feed.url}"\n'
    else:
        (root / "calendar.ics").write_bytes(good)
        source = f'\n[mailboxes.source]\ntype = "ics"\npath = "{root / "calendar.ics"}"\n'
    sink = f'\n[mailboxes.sink]\ntype = "maildir"\npath = "{root / "Maildir"}"\n'
    config = write_config(entry, root, source + sink)
    if hostile:
        set_trap(entry, root)
    passes = entry.passes if hostile else 1
    try:
        result = run_passes(entry, root, config, passes, lambda: repair(entry, root, feed), fresh)
    finally:
        if feed is not None:
            feed.stop()
    if feed is not None:
        result.redirect_target_hits = feed.target_hits
    elsewhere = root / "elsewhere"
    if elsewhere.exists():
        result.written_through_link = sorted(p.name for p in elsewhere.iterdir())
    return finish(entry, root, config, result, read_drafts(root / "Maildir"))


def run_passes(
    entry: Entry,
    root: Path,
    config: Path,
    passes: int,
    between: Callable[[], None] = lambda: None,
    fresh: bool = False,
) -> Result:
    """``once`` ``passes`` times, an hour and a minute apart (past a capped Retry-After)."""
    result = Result()
    for number in range(passes):
        if number:
            between()
        now = entry.now + timedelta(minutes=61 * number)
        result.runs.append(
            run_cli(config, "once", "--now", now.isoformat(), workdir=root, fresh=fresh)
        )
    return result


def finish(
    entry: Entry, root: Path, config: Path, result: Result, drafts: list[EmailMessage]
) -> Result:
    """Add what the mailbox and the state directory hold (and ``status``, when the log does not
    give the reason an entry expects)."""
    result.drafts = drafts
    state = root / "state"
    files = [p for p in state.rglob("*") if p.is_file()] if state.exists() else []
    result.state_bytes = sum(p.stat().st_size for p in files)
    result.state_blob = b"".join(p.read_bytes() for p in files)
    if entry.expect.outcome == "skipped" and not _mentions(result.log, entry.expect.reasons):
        result.status = run_cli(config, "status", workdir=root).log
    return result


def read_drafts(maildir: Path) -> list[EmailMessage]:
    out: list[EmailMessage] = []
    for folder in (".Drafts", ".Sent"):
        for sub in ("cur", "new"):
            directory = maildir / folder / sub
            if not directory.is_dir() or directory.is_symlink():
                continue
            for path in sorted(directory.iterdir()):
                if path.is_file() and not path.is_symlink():
                    message = email.message_from_bytes(
                        path.read_bytes(), policy=email.policy.default
                    )
                    if message["X-Recruitmail-Key"] is not None:
                        out.append(message)
    return out


# --- the verdict ----------------------------------------------------------------------------------


def _mentions(text: str, reasons: tuple[str, ...]) -> bool:
    return not reasons or any(reason in text for reason in reasons)


def recipient(message: EmailMessage) -> str:
    to = message["To"]
    addresses = getattr(to, "addresses", ())
    if not addresses:
        return ""
    local, _, domain = addresses[0].addr_spec.lower().rpartition("@")
    if "xn--" in domain:  # an IDNA-encoded domain names the same person as its Unicode form
        with contextlib.suppress(UnicodeError):
            domain = domain.encode("ascii").decode("idna")
    return f"{local}@{domain}"


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML parts of a draft."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return (
        str(text.get_content()) if text is not None else "",
        str(html.get_content()) if html is not None else "",
    )


def whole(message: EmailMessage) -> str:
    text, html = parts(message)
    headers = "\n".join(f"{k}: {v}" for k, v in message.items())
    return f"{headers}\n{text}\n{html}"


def verdict(entry: Entry, result: Result, victims: tuple[str, ...] | None = None) -> list[str]:
    """Every way ``result`` breaks the entry's expectation or the corpus-wide rules (empty: kept)."""
    expect = entry.expect
    victims = tuple(v.lower() for v in (expect.victims if victims is None else victims))
    problems: list[str] = []
    for number, run in enumerate(result.runs, 1):
        if run.timed_out:
            problems.append(f"pass {number} did not end within {PASS_TIMEOUT:.0f} s")
        if "Traceback" in run.log or "MemoryError" in run.log:
            problems.append(f"pass {number} crashed: {_tail(run.log)}")
    by_recipient: dict[str, list[EmailMessage]] = {}
    for message in result.drafts:
        by_recipient.setdefault(recipient(message), []).append(message)
    if expect.calendar_unavailable:
        if not _mentions(result.log, expect.reasons):
            problems.append(f"no reason among {expect.reasons} in the log")
    else:
        if result.runs and result.runs[-1].code != 0:
            last = result.runs[-1]
            problems.append(f"the last pass exited {last.code}: {_tail(last.log)}")
        ordinary = by_recipient.get(ORDINARY, [])
        if len(ordinary) != 1 or "Välkommen" not in str(ordinary[0]["Subject"]):
            problems.append(f"the ordinary interview got {len(ordinary)} drafts, not one welcome")
    for message in result.drafts:
        problems.extend(_draft_problems(message, expect.must_not, expect.html_must_not))
    mine = [m for v in victims for m in by_recipient.get(v, [])]
    if expect.outcome in ("skipped", "ignored") and mine:
        problems.append(f"{len(mine)} drafts for the hostile event ({expect.outcome} expected)")
    if expect.outcome == "skipped" and not _mentions(result.log + result.status, expect.reasons):
        problems.append(f"no reason among {expect.reasons} in the log or in status")
    if expect.outcome == "drafted":
        for victim in victims:
            got = by_recipient.get(victim, [])
            if len(got) != 1:
                problems.append(f"{len(got)} drafts to a hostile event's attendee, not 1")
                continue
            text = "\n".join(parts(got[0]))
            problems.extend(f"the draft lacks {s!r}" for s in expect.must if s not in text)
    if expect.outcome == "handled":
        problems.extend(
            f"{len(by_recipient[v])} drafts to one attendee"
            for v in victims
            if len(by_recipient.get(v, [])) > 1
        )
    if result.state_bytes > expect.state_max_bytes:
        problems.append(f"the state directory holds {result.state_bytes} bytes")
    problems.extend(
        f"the state directory holds {s!r}"
        for s in expect.not_in_state
        if s.encode("utf-8") in result.state_blob
    )
    logged = _log_problems(result.log, (*victims, ORDINARY, *expect.not_in_log))
    problems.extend(logged)
    if result.redirect_target_hits:
        problems.append(f"the redirect target was fetched {result.redirect_target_hits} times")
    if result.written_through_link:
        problems.append("drafts were written through a symlinked folder")
    return problems


def _draft_problems(
    message: EmailMessage, must_not: tuple[str, ...], html_must_not: tuple[str, ...]
) -> list[str]:
    problems = []
    who = recipient(message) or "?"
    if message["Bcc"] is not None or message["Cc"] is not None:
        problems.append(f"a draft to {who} has Bcc/Cc")
    if len(getattr(message["To"], "addresses", ())) != 1:
        problems.append(f"a draft has To: {str(message['To'])[:80]!r}")
    for name, value in message.items():
        if "\n" in str(value) or "\r" in str(value) or BIDI_AND_CONTROL.search(str(value)):
            problems.append(f"a draft to {who} has a control character in {name}")
    text, html = parts(message)
    for label, body in (("text", text), ("HTML", html)):
        found = BIDI_AND_CONTROL.search(body)
        if found:
            problems.append(f"the {label} to {who} holds U+{ord(found.group()):04X}")
    if len(message.as_bytes()) > MAX_DRAFT_BYTES:
        problems.append(f"a draft to {who} is {len(message.as_bytes())} bytes")
    everything = whole(message)
    problems.extend(f"a draft to {who} holds {s!r}" for s in must_not if s in everything)
    problems.extend(f"the HTML to {who} holds {s!r}" for s in html_must_not if s in html)
    return problems


def _log_problems(log: str, secrets: tuple[str, ...]) -> list[str]:
    problems = [f"the log holds {s!r}" for s in secrets if s and s in log]
    for line in log.splitlines():
        found = BIDI_AND_CONTROL.search(line.replace("\t", " "))
        if found:
            problems.append(f"a log line holds U+{ord(found.group()):04X}")
            break
    return problems


def _tail(log: str) -> str:
    lines = [line for line in log.strip().splitlines() if line.strip()]
    return " | ".join(lines[-2:])[:300]
