"""Benchmark: the running daemon over 1,000 Microsoft 365 mailboxes × 100 events, 50 ms per request.

The strict Graph fake (``tests.fakes.graph``) runs in a process of its own, as Graph runs on
another machine, so that this process is the daemon alone: its peak RSS and CPU time are the
daemon's. Every mailbox gets a calendar of ``--events`` occurrences (about 20 % interviews with
external candidates, the rest internal meetings, some of them weekly series) around today.

The daemon is ``daemon.scheduler.Service`` itself, driven in-process exactly as ``recruitmail run``
drives it, minus the signal handlers: ``serve_forever`` in a thread, stopped by setting its stop
event (what SIGTERM does). Its APScheduler jobs run every pass on the daemon's worker threads
(``service.workers``, the default unless ``--workers`` is given) with persistent runners; the bench
watches through the daemon's metrics interface (``pass_finished``) and the fake's request records.

1. Passes, at a long interval so that nothing polls again while the first pass of the others
   runs. The first pass of every mailbox (full sync, recognition, planning, drafts); then all
   jobs are brought forward to now, as every interval brings them due together in a running
   daemon: twice with JSON batching off (one delta request per mailbox), twice with it on (the
   waiting passes' calendars asked 20 to a ``$batch``); then the first pass after a restart.
   Per pass: wall time, HTTP requests and the requests inside batches (per mailbox), CPU per
   mailbox, peak RSS, most requests in flight for one mailbox (limit 4).
2. The floor of each idle pass, measured in the same run: the same requests (the mailboxes' own
   delta links), with the same concurrency, sent by a bare HTTP client against the same fake,
   without the daemon: ``workers`` GETs at a time, or the same batches ``PROBE_THREADS`` at a time.
3. Booking → draft. The restarted daemon polls every ``--interval`` seconds (default 10); an
   interview with a new candidate is put into a random mailbox at a random moment, and the time
   until its welcome draft exists in the fake mailbox is compared with one interval + 5 s.
4. Memory against size, each row a fresh process (its own peak RSS): the daemon's first and idle
   pass over N mailboxes of 100 events, and over one mailbox of N events. ``--memory short``
   (the default) runs 100 mailboxes and 1,000 / 5,000 events, with the main run's row for
   ``--mailboxes``; ``--memory full`` the issue's whole table, 100 / 1,000 / 5,000 mailboxes and
   1,000 / 5,000 / 20,000 events (about half an hour more); ``--memory off`` none.
   ``--memory-only`` runs the table alone, skipping 1.–3. ``SCALE_MEMORY_MAILBOXES`` and
   ``SCALE_MEMORY_EVENTS`` (comma-separated) choose other sizes; ``SCALE_MEMORY=0`` is ``off``.

Each goal is printed with its figure and the floor it was measured against; nothing is asserted.

    python bench/scale.py [--mailboxes 1000] [--events 100] [--latency-ms 50] [--workers N]
                          [--interval 10] [--bookings 3] [--profile] [--census]
                          [--memory short|full|off] [--memory-only]

``--profile`` samples every thread of this process during the idle passes and prints the
functions the daemon spends its time in (self time, and the project's own frames). ``--census``
prints, after the floors, what the idle daemon holds: Python's small-object allocator (arenas,
live bytes, free bytes inside them) and glibc's heap, the SSL contexts, HTTP clients and threads
of the process, the language detectors kept, and the same figures once every runner is closed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import multiprocessing
import os
import random
import resource
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import httpx  # noqa: E402

from recruitmail.daemon.runtime import validate  # noqa: E402
from recruitmail.daemon.scheduler import PROBE_THREADS, Service  # noqa: E402
from recruitmail.daemon.service import Metrics, Notifier, resident_mb, setup_logging  # noqa: E402
from recruitmail.daemon.settings import Service as ServiceSettings  # noqa: E402
from recruitmail.daemon.settings import load_settings  # noqa: E402
from tests.scenario import two_weeks  # noqa: E402
from tests.scenario.spec import STOCKHOLM, EventSpec, Who  # noqa: E402

GOAL_IDLE_SECONDS = 2.5  # the idle pass over 1,000 mailboxes, default workers
GOAL_BATCHED_SECONDS = 0.5  # the same with JSON batching
GOAL_CPU_MS = 3.0  # CPU per idle mailbox
GOAL_MB = 150.0  # the daemon's RSS
MAX_IN_FLIGHT = 4
SLACK_SECONDS = 5.0
PASSES_INTERVAL = 3600  # nothing polls again while the rounds are measured
DEFAULT_INTERVAL = ServiceSettings.model_fields["interval_seconds"].default
DEFAULT_WORKERS = ServiceSettings.model_fields["workers"].default
BATCH = 20
SERIES_LENGTH = 10
MEMORY_SIZES = {"short": ("100", "1000,5000"), "full": ("100,1000,5000", "1000,5000,20000")}
"""The memory table's rows (``--memory``): mailboxes of 100 events, and events in one mailbox."""

DOMAIN = "nordljus.se"
PANEL = two_weeks.PANEL  # in [people] of the configuration: the panel gets a name and a role
COLLEAGUES = (PANEL, *(Who(f"kollega{n:02d}@{DOMAIN}", f"Kollega {n}") for n in range(30)))
ROOMS = tuple(Who(f"rum{n}@{DOMAIN}", f"Rum {n}", resource=True) for n in range(6))


def recruiter(n: int) -> Who:
    return Who(f"rekryterare{n:04d}@{DOMAIN}", f"Rekryterare {n}")


# --- the calendars ----------------------------------------------------------------------------


def calendar(owner: Who, n: int, total: int, today: date) -> list[EventSpec]:
    """``total`` event occurrences for mailbox ``n`` within the synced window around ``today``.

    About 20 % are interviews with external candidates (some meet twice), spread over the last four
    weeks and the next three (interviews are booked a few weeks ahead); a fifth of the rest are
    occurrences of weekly series, the others single internal meetings over the whole window.
    Nothing happens today, so that an interview ending while the bench runs cannot make an idle
    pass draft a thank-you.
    """
    rng = random.Random(n)

    def moment(days_from: int, days_to: int) -> datetime:
        offset = rng.choice([d for d in range(days_from, days_to) if d != 0])
        day = today + timedelta(days=offset)
        hour, minute = rng.randrange(8, 17), rng.choice((0, 30))
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=STOCKHOLM)

    specs: list[EventSpec] = []
    interviews = total // 5
    candidates = max(1, interviews * 3 // 4)
    for k in range(interviews):
        c = k % candidates
        who = Who(f"kandidat{n:04d}.{c:02d}@example.com", f"Kandidat{c:02d}, Anna")
        start = moment(-28, 22)
        specs.append(
            EventSpec(
                uid=f"intervju-{n}-{k}@{DOMAIN}",
                subject=f"Intervju: {who.name}",
                start=start,
                end=start + timedelta(hours=1),
                organizer=owner,
                attendees=(owner, rng.choice(COLLEAGUES), who, rng.choice(ROOMS)),
                location="Storgatan 1, Umeå",
                body="Agenda:\n- Presentation av rollen\n- Dina erfarenheter\n- Frågor\n",
            )
        )
    series = (total - interviews) // 5 // SERIES_LENGTH
    for k in range(series):
        start = moment(-25, -12)
        specs.append(
            EventSpec(
                uid=f"serie-{n}-{k}@{DOMAIN}",
                subject=f"Veckomöte {k}",
                start=start,
                end=start + timedelta(minutes=30),
                organizer=owner,
                attendees=(owner, *rng.sample(COLLEAGUES, 3)),
                rrule=f"FREQ=WEEKLY;COUNT={SERIES_LENGTH}",
            )
        )
    for k in range(total - interviews - series * SERIES_LENGTH):
        start = moment(-25, 80)
        specs.append(
            EventSpec(
                uid=f"mote-{n}-{k}@{DOMAIN}",
                subject=rng.choice(("Teammöte", "Lunch", "1:1", "Planering")),
                start=start,
                end=start + timedelta(minutes=rng.choice((30, 45, 60))),
                organizer=owner,
                attendees=(owner, *rng.sample(COLLEAGUES, rng.randrange(1, 5))),
            )
        )
    return specs


def booking(owner: Who, serial: int, today: date) -> tuple[EventSpec, str]:
    """A new interview with a new candidate three days from now: its welcome is due at once."""
    who = Who(f"nybokad{serial:03d}@example.org", "Nybokad, Nora")
    day = today + timedelta(days=3)
    start = datetime(day.year, day.month, day.day, 13, 0, tzinfo=STOCKHOLM)
    spec = EventSpec(
        uid=f"nybokad-{serial}@{DOMAIN}",
        subject="Intervju: Nora Nybokad",
        start=start,
        end=start + timedelta(hours=1),
        organizer=owner,
        attendees=(owner, PANEL, who),
    )
    return spec, who.address


# --- the fake Graph, in a process of its own ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """What the bench needs of one recorded Graph request (compact: the bench process is the
    daemon's, and its RSS is the figure measured)."""

    method: str
    what: str
    mailbox: str
    arrived: float  # time.monotonic(): one clock for every process on the machine
    in_flight: int
    status: int
    batched: bool = False  # inside a $batch


def _what(path: str) -> str:
    for marker, name in (
        ("/$batch", "$batch"),
        ("/calendarView/delta", "calendar delta"),
        ("/events/", "series master"),
        ("/mailboxSettings", "mailbox settings"),
        ("/mailFolders/sentitems/messages", "sent items"),
        ("/mailFolders/", "folder"),
        ("/messages", "messages"),
    ):
        if marker in path:
            return name
    return "directory"


def serve_fake(conn: Connection, directory: str, mailboxes: int, events: int) -> None:
    """The child process: the fake Graph with every calendar, answering the bench over ``conn``."""
    from tests.fakes.graph import FakeGraph

    today = datetime.now(STOCKHOLM).date()
    with FakeGraph(Path(directory)) as fake:
        for n in range(mailboxes):
            owner = recruiter(n)
            fake.add_mailbox(owner.address, owner.name)
            for spec in calendar(owner, n, events, today):
                fake.put_event(owner.address, spec)
        options = fake.options("")
        options.pop("user", None)
        conn.send(options)

        def requests(since: int, end: int | None = None) -> list[Request]:
            with fake.lock:
                records = fake.requests[since:end]
            return [
                Request(
                    r.method, _what(r.path), r.mailbox, r.arrived, r.in_flight, r.status, r.batched
                )
                for r in records
                if r.path.startswith("/v1.0/")
            ]

        def book(
            mailbox: str, spec: EventSpec, candidate: str, timeout: float
        ) -> tuple[float, ...]:
            """Put the event, then watch for its draft: (put, first sync after, draft seen)."""
            with fake.lock:
                since = len(fake.requests)
            fake.put_event(mailbox, spec)
            put = time.monotonic()
            while time.monotonic() - put < timeout:
                if any(candidate in str(m.data.get("toRecipients")) for m in fake.drafts(mailbox)):
                    seen = time.monotonic()
                    polled = next(
                        r.arrived
                        for r in requests(since)
                        if r.mailbox == mailbox and r.what == "calendar delta" and r.arrived > put
                    )
                    return put, polled, seen
                time.sleep(0.01)
            return put, float("nan"), float("nan")

        def since(index: int) -> tuple[int, list[Request]]:
            """The requests recorded from ``index`` on, and the index to ask from next time."""
            with fake.lock:
                end = len(fake.requests)
            return end, requests(index, end)

        def most_in_flight() -> int:
            with fake.lock:
                return max((r.in_flight for r in fake.requests if r.mailbox), default=0)

        def latency(seconds: float) -> None:
            fake.latency = seconds

        commands: dict[str, Callable[..., Any]] = {
            "requests": requests,
            "since": since,
            "most_in_flight": most_in_flight,
            "book": book,
            "latency": latency,
        }
        while True:
            command, *args = conn.recv()
            if command == "stop":
                break
            conn.send(commands[command](*args))
    conn.send("stopped")


class FakeProcess:
    """The bench's handle on the fake in its child process."""

    def __init__(self, directory: Path, mailboxes: int, events: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(
            target=serve_fake, args=(theirs, str(directory), mailboxes, events), daemon=True
        )
        self.process.start()
        self.options: dict[str, Any] = self._answer()
        self.fetched = 0  # the fake's requests up to here have been handed to the bench

    def new_requests(self) -> list[Request]:
        """The Graph requests recorded since the last call (the bench keeps only those of its
        rounds: fetching every request of the run each round made the bench's own memory grow
        with the run, inside the process whose RSS is the daemon's)."""
        self.fetched, records = self.call("since", self.fetched)
        return [
            Request(
                r.method,
                r.what,
                sys.intern(r.mailbox) if r.mailbox else r.mailbox,
                r.arrived,
                r.in_flight,
                r.status,
                r.batched,
            )
            for r in records
        ]

    def _answer(self) -> Any:
        # A fake that died (a bug, memory) must end the bench, not leave it waiting forever.
        while not self.conn.poll(1.0):
            if not self.process.is_alive():
                raise SystemExit(f"the fake Graph process died (exit code {self.process.exitcode})")
        return self.conn.recv()

    def call(self, command: str, *args: Any) -> Any:
        self.conn.send((command, *args))
        return self._answer()

    def stop(self) -> None:
        self.conn.send(("stop",))
        self.conn.recv()
        self.process.join(timeout=30)


# --- the daemon ---------------------------------------------------------------------------------


def write_config(
    path: Path,
    state_dir: Path,
    options: dict[str, Any],
    args: Any,
    interval: int,
    mailboxes: int | None = None,
) -> Path:
    """The scenario's company, people and stages, with ``--mailboxes`` Microsoft 365 mailboxes."""
    company = two_weeks.CONFIG.split("[[mailboxes]]")[0].replace("{state_dir}", str(state_dir))
    lines = [company.rstrip(), f"interval_seconds = {interval}"]
    if args.workers is not None:
        lines.append(f"workers = {args.workers}")
    lines.append("")
    table = "\n".join(f'{k} = "{v}"' for k, v in options.items())
    for n in range(mailboxes if mailboxes is not None else args.mailboxes):
        who = recruiter(n)
        lines += [
            "[[mailboxes]]",
            f'address = "{who.address}"',
            f'name = "{who.name}"',
            'language = "sv"',
            "[mailboxes.source]",
            'type = "microsoft"',
            table,
            "[mailboxes.sink]",
            'type = "microsoft"',
            table,
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass(slots=True)
class Pass:
    mailbox: str
    started: float
    finished: float
    ok: bool


@dataclass
class PassWatch(Metrics):
    """The daemon's metrics interface, recording every finished pass."""

    passes: list[Pass] = field(default_factory=list)
    drafted: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def draft_created(self, kind: str) -> None:
        with self.changed:
            self.drafted += 1

    def pass_finished(self, mailbox: str, seconds: float, ok: bool) -> None:
        finished = time.monotonic()
        with self.changed:
            self.passes.append(Pass(mailbox, finished - seconds, finished, ok))
            self.changed.notify_all()

    def round_after(self, moment: float, mailboxes: int, timeout: float) -> list[Pass]:
        """Wait until every mailbox finished a pass that started after ``moment``; one per box."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                first: dict[str, Pass] = {}
                for p in self.passes:
                    if p.started >= moment and p.mailbox not in first:
                        first[p.mailbox] = p
                if len(first) >= mailboxes or time.monotonic() > deadline:
                    return list(first.values())
                self.changed.wait(1.0)


@dataclass
class Round:
    name: str
    passes: list[Pass]
    requests: list[Request]
    cpu: float
    peak_mb: float
    drafts: int

    @property
    def wall(self) -> float:
        """From the first request or pass of the round to the end of its last pass."""
        began = min([p.started for p in self.passes] + [r.arrived for r in self.requests])
        return max(p.finished for p in self.passes) - began

    @property
    def http(self) -> list[Request]:
        """Requests that were HTTP requests of their own (a batch, or a request outside one)."""
        return [r for r in self.requests if not r.batched]


def round_requests(passes: list[Pass], records: list[Request], after: float) -> list[Request]:
    """The requests of a round: from ``after`` to the end of its last pass (nothing else asks
    Graph while a round runs; requests inside a batch arrive before their pass starts)."""
    end = max(p.finished for p in passes)
    return [r for r in records if after <= r.arrived <= end]


def peak_mb() -> float:
    """The process's own peak resident memory (VmHWM: unlike ``ru_maxrss`` it does not carry
    the parent's peak into a spawned child)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mb() -> float:
    """The process's resident memory now, as the daemon reads its own (``resident_mb``)."""
    found = resident_mb()
    return float("nan") if found is None else found


# --- a sampling profiler over every thread ------------------------------------------------------


class Sampler:
    """Counts, every few milliseconds, where each busy thread is (self frame, and our own frame)."""

    def __init__(self, every: float = 0.005) -> None:
        self.every = every
        self.own: collections.Counter[str] = collections.Counter()
        self.leaf: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self.running = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.running.set()
        self.thread.start()

    def stop(self) -> None:
        self.running.clear()
        self.thread.join()

    def _run(self) -> None:
        me = threading.get_ident()
        while self.running.is_set():
            for ident, frame in sys._current_frames().items():
                if ident == me or frame.f_code.co_name in ("wait", "select", "_recv", "poll"):
                    continue
                self.samples += 1
                self.leaf[f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"] += 1
                seen: set[str] = set()
                walk: Any = frame
                while walk is not None:
                    name = walk.f_code.co_filename
                    if str(ROOT) in name and "/.venv/" not in name:
                        label = f"{Path(name).relative_to(ROOT)}:{walk.f_code.co_name}"
                        if label not in seen:
                            seen.add(label)
                            self.own[label] += 1
                    walk = walk.f_back
            time.sleep(self.every)

    def report(self, top: int = 25) -> None:
        print(f"\nprofile: {self.samples} samples of busy threads (idle rounds)")
        print("  (a thread waiting for a lock is counted in the function that takes it)")
        print("  where the time is spent (self):")
        for label, count in self.leaf.most_common(top):
            print(f"    {100 * count / max(1, self.samples):5.1f} %  {label}")
        print("  project functions on the stack (inclusive):")
        for label, count in self.own.most_common(top):
            print(f"    {100 * count / max(1, self.samples):5.1f} %  {label}")


# --- the bench ----------------------------------------------------------------------------------


def measure_round(
    name: str, watch: PassWatch, fake: FakeProcess, after: float, args: Any, timeout: float
) -> tuple[Round, float]:
    """The round of passes starting after ``after``; returns it and the moment it ended."""
    cpu = time.process_time()
    drafts = watch.drafted
    passes = watch.round_after(after, args.mailboxes, timeout)
    ended = time.monotonic()
    cpu = time.process_time() - cpu
    records = round_requests(passes, fake.new_requests(), after)
    return Round(name, passes, records, cpu, rss_mb(), watch.drafted - drafts), ended


def print_rounds(rounds: list[Round], mailboxes: int) -> None:
    print(
        f"\n{'pass':<20}{'wall':>9}{'HTTP':>7}{'inside':>8}{'req/box':>9}{'CPU/box':>10}"
        f"{'drafts':>8}{'RSS':>8}{'in flight':>11}{'failed':>8}"
    )
    for r in rounds:
        boxes = len(r.passes)
        inner = len(r.requests) - len(r.http)
        flight = max((q.in_flight for q in r.requests if q.mailbox), default=0)
        asked = sum(1 for q in r.requests if q.mailbox)
        print(
            f"{r.name:<20}{r.wall:>7.2f} s{len(r.http):>7}{inner:>8}"
            f"{asked / max(1, boxes):>9.2f}{1000 * r.cpu / max(1, boxes):>7.1f} ms"
            f"{r.drafts:>8}{r.peak_mb:>5.0f} MB{flight:>11}{sum(not p.ok for p in r.passes):>8}"
        )
        if boxes < mailboxes:
            print(f"  ! only {boxes} of {mailboxes} mailboxes finished a pass in this round")
    print("  (HTTP: requests sent; inside: requests inside $batch; req/box: Graph requests per")
    print("   mailbox, each inside a batch counting on its own, as Outlook counts them)")
    for r in rounds:
        kinds = collections.Counter(
            f"{q.method} {q.what}{' (in $batch)' if q.batched else ''}" for q in r.requests
        )
        print(f"  {r.name}: " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))


# --- the floor: the same requests, without the daemon --------------------------------------------


def idle_rounds(
    daemon: Daemon, watch: PassWatch, fake: Any, args: argparse.Namespace, timeout: float
) -> tuple[list[Round], Sampler]:
    """The idle rounds, without and then with ``$batch``, ``args.repeat`` of each (sampled for
    the profile with ``--profile``)."""
    rounds = []
    sampler = Sampler()
    if args.profile:
        sampler.start()
    for batching, label in ((False, "idle"), (True, "idle, $batch")):
        daemon.batching(batching)
        for n in range(args.repeat):
            moment = time.monotonic()
            daemon.all_due_now()
            name = label if n == 0 else f"{label} {n + 1}"
            found, _ = measure_round(name, watch, fake, moment, args, timeout)
            rounds.append(found)
    if args.profile:
        sampler.stop()
    return rounds, sampler


def floor(daemon: Daemon, options: dict[str, Any], workers: int) -> tuple[float, float, int]:
    """The pure network time of an idle pass's requests, measured now against the same fake:
    every mailbox's own next delta link, sent by a bare HTTP client ``workers`` at a time, and
    the same links in batches of 20, ``PROBE_THREADS`` batches at a time. Returns both times in
    seconds and the number of links."""
    sources = [entry[1].source for entry in list(daemon.service.runners.values())]
    links = [(s.user, s.client.relative(s._link)) for s in sources if s._link]
    token = sources[0].client.tokens.token(sources[0].user)
    base = f"{options['graph_endpoint']}/v1.0"
    prefer = 'IdType="ImmutableId", outlook.timezone="UTC", odata.maxpagesize=50'
    verify = ssl.create_default_context(cafile=options["ca_file"])
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    with httpx.Client(verify=verify, trust_env=False, limits=limits) as client:
        headers = {"Authorization": f"Bearer {token}", "Prefer": prefer}
        client.get(base + links[0][1], headers=headers)  # connections as warm as the daemon's
        with ThreadPoolExecutor(max_workers=workers) as pool:
            began = time.monotonic()
            list(pool.map(lambda link: client.get(base + link[1], headers=headers), links))
            direct = time.monotonic() - began
        bodies = [
            json.dumps(
                {
                    "requests": [
                        {"id": str(n), "method": "GET", "url": url, "headers": {"Prefer": prefer}}
                        for n, (_, url) in enumerate(links[start : start + BATCH])
                    ]
                }
            )
            for start in range(0, len(links), BATCH)
        ]
        post = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:
            began = time.monotonic()
            list(pool.map(lambda b: client.post(f"{base}/$batch", headers=post, content=b), bodies))
            batched = time.monotonic() - began
    return direct, batched, len(links)


class Daemon:
    """``recruitmail run`` in-process: ``Service.serve_forever`` in a thread, no signal handlers.
    Unless ``may_start_afresh`` it never starts afresh after its first round, which this process
    could not do (its RSS keeps the first round's leftovers; ``graph_idle.py`` measures the
    fresh start, with the first round in a child process)."""

    def __init__(self, config: Path, watch: PassWatch, *, may_start_afresh: bool = False) -> None:
        settings = load_settings(config)
        self.service = Service(config, settings, validate(settings), Notifier(None), watch)
        self.thread = threading.Thread(
            target=self.service.serve_forever,
            kwargs={"may_start_afresh": may_start_afresh},
            name="daemon",
        )
        self.thread.start()

    def all_due_now(self) -> None:
        """Every mailbox's job comes due at once, as it does each interval in a running daemon."""
        now = datetime.now(UTC)
        for job in self.service.scheduler.get_jobs():
            job.modify(next_run_time=now)

    def batching(self, on: bool) -> None:
        """What a reload with ``service.batch_requests`` on or off does to the running daemon."""
        self.service.batching = on

    def stop(self) -> None:
        """What SIGTERM does: the stop event; the current steps finish, connectors close."""
        self.service.stop.set()
        self.thread.join()


def _allocator_stats() -> dict[str, int]:
    """Python's small-object allocator (``sys._debugmallocstats``) and glibc's heap
    (``malloc_stats``), in bytes; both print to the C stderr, read back through a file."""
    import ctypes

    found: dict[str, int] = {}
    with tempfile.TemporaryFile("w+") as out:
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None).malloc_stats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    for line in text.splitlines():
        label, _, value = line.partition("=")
        label = " ".join(label.split())
        number = value.strip().replace(",", "")
        if number.isdigit():
            found.setdefault(label, int(number))  # the totals come last: keep the first
            found[label + " (last)"] = int(number)
    return found


def census(daemon: Daemon) -> None:
    """What the idle daemon holds: allocator figures, shared objects that could have been per
    mailbox, and what closing every runner gives back."""
    import ctypes
    import gc

    def trimmed() -> None:
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)

    def allocators(label: str) -> None:
        stats = _allocator_stats()
        mb = 1024 * 1024
        print(
            f"  {label}: RSS {rss_mb():.0f} MB; pymalloc {stats.get('# arenas allocated current', 0)}"
            f" arenas (high-water {stats.get('# arenas highwater mark', 0)}), live "
            f"{stats.get('# bytes in allocated blocks', 0) / mb:.1f} MB, free inside them "
            f"{stats.get('# bytes in available blocks', 0) / mb:.1f} MB; glibc heap "
            f"{stats.get('system bytes (last)', 0) / mb:.1f} MB, in use "
            f"{stats.get('in use bytes (last)', 0) / mb:.1f} MB"
        )

    trimmed()
    print("\ncensus of the idle daemon (after gc.collect and malloc_trim):")
    allocators("idle")
    objects = gc.get_objects()
    print(
        f"  ssl.SSLContext: {sum(isinstance(o, ssl.SSLContext) for o in objects)}, "
        f"httpx.Client: {sum(isinstance(o, httpx.Client) for o in objects)}, "
        f"threads: {threading.active_count()}, live objects tracked by gc: {len(objects)}"
    )
    language = sys.modules.get("recruitmail.daemon.language")
    detector = getattr(language, "_detector", None)
    if detector is not None:
        print(f"  language detectors kept: {detector.cache_info().currsize}")
    del objects
    service = daemon.service
    for address in list(service.runners):
        with service.locks[address]:
            service.close_runner(address)
    trimmed()
    allocators("every runner closed")
    print("  (the runners open again at their next pass)")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def as_the_unit_runs() -> str:
    """Start this benchmark again with the allocator setting of the systemd unit, unless the
    caller chose one (``MALLOC_ARENA_MAX=0`` is glibc's default); the setting, for the output.
    The variable counts only from a process's start."""
    if os.environ.get("MALLOC_ARENA_MAX") is None:
        os.execve(
            sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_ARENA_MAX": "2"}
        )
    return f"MALLOC_ARENA_MAX={os.environ['MALLOC_ARENA_MAX']} (the unit sets 2)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100, help="event occurrences per mailbox")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="added to every request")
    parser.add_argument(
        "--workers", type=int, default=None, help=f"service.workers (default {DEFAULT_WORKERS})"
    )
    parser.add_argument("--repeat", type=int, default=3, help="idle passes of each kind")
    parser.add_argument(
        "--interval", type=int, default=10, help="service.interval_seconds for booking → draft"
    )
    parser.add_argument("--bookings", type=int, default=3, help="booking → draft measurements")
    parser.add_argument("--profile", action="store_true", help="sample the idle passes")
    parser.add_argument(
        "--census", action="store_true", help="what the idle daemon holds, after the idle rounds"
    )
    parser.add_argument(
        "--memory",
        choices=sorted(MEMORY_SIZES) + ["off"],
        default="short",
        help="the memory-against-size table: short (100 mailboxes; 1k and 5k events), full "
        "(100 / 1,000 / 5,000 mailboxes; 1k / 5k / 20k events: about half an hour more), off",
    )
    parser.add_argument(
        "--memory-only", action="store_true", help="only the memory table, every row fresh"
    )
    args = parser.parse_args()
    allocator = as_the_unit_runs()
    workers = args.workers or DEFAULT_WORKERS
    if args.memory_only:
        began = time.monotonic()
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
        memory_table(args, None)
        print(
            f"memory table: {time.monotonic() - began:.0f} s; "
            f"load average {os.getloadavg()[0]:.1f} at the end"
        )
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        began = time.monotonic()
        (root / "graph").mkdir()
        fake = FakeProcess(root / "graph", args.mailboxes, args.events)
        try:
            state = root / "state"
            passes = write_config(root / "passes.toml", state, fake.options, args, PASSES_INTERVAL)
            polling = write_config(root / "polling.toml", state, fake.options, args, args.interval)
            print(
                f"{args.mailboxes} mailboxes × {args.events} events, "
                f"{args.latency_ms:.0f} ms per request, service.workers = {workers}"
                f"{'' if args.workers else ' (the default)'}; "
                f"fake ready in {time.monotonic() - began:.0f} s"
            )
            # Wall times mean little on a busy machine: say how busy it was.
            print(
                f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
                f"{allocator}"
            )
            fake.call("latency", args.latency_ms / 1000)
            # The daemon logs as in production (INFO), to a file instead of the journal.
            log_file = (root / "daemon.log").open("w", encoding="utf-8")
            setup_logging("INFO", stream=log_file)
            watch = PassWatch()
            timeout = 900.0
            floors: list[tuple[float, float, int]] = []
            try:
                # 1. Passes: nothing polls again while the first pass of the other mailboxes is
                # still running, as with a real daemon's start.
                start = time.monotonic()
                base_rss = rss_mb()
                daemon = Daemon(passes, watch)
                first, ended = measure_round("first (full)", watch, fake, start, args, timeout)
                rounds = [first]
                idle, sampler = idle_rounds(daemon, watch, fake, args, timeout)
                rounds += idle
                # 2. The floor, now, against the same fake: the same requests, no daemon.
                for _ in range(args.repeat):
                    floors.append(floor(daemon, fake.options, workers))
                if args.census:  # it closes every runner: after the floors, which use them
                    census(daemon)
                daemon.stop()
                # A restart on the same state: every runner opens its connectors again.
                moment = time.monotonic()
                daemon = Daemon(passes, watch)
                restart, ended = measure_round("restart", watch, fake, moment, args, timeout)
                rounds.append(restart)
                daemon.stop()
                # 3. Booking → draft, polling every --interval seconds, once the (re)started
                # daemon has been through every mailbox.
                moment = time.monotonic()
                daemon = Daemon(polling, watch)
                watch.round_after(moment, args.mailboxes, timeout)
                print_rounds(rounds, args.mailboxes)
                print(
                    f"most requests in flight for one mailbox, whole bench: "
                    f"{fake.call('most_in_flight')} "
                    f"(limit {MAX_IN_FLIGHT})"
                )
                if args.profile:
                    sampler.report()
                goals(rounds, floors, args, workers)
                bookings(fake, args)
            finally:
                daemon.stop()
                log_file.close()
            errors = [
                line
                for line in (root / "daemon.log").read_text(encoding="utf-8").splitlines()
                if " ERROR " in line or "Traceback" in line
            ]
            print(
                f"\ndaemon log: {len(errors)} error line(s)"
                + (f"; first: {errors[0]}" if errors else "")
            )
            print(f"peak RSS of the daemon process, whole bench: {peak_mb():.0f} MB")
        finally:
            fake.stop()
        main_row = (base_rss, first.peak_mb, idle_rss(rounds), peak_mb())
        memory_table(args, main_row)
        print(
            f"whole bench: {time.monotonic() - began:.0f} s; "
            f"load average {os.getloadavg()[0]:.1f} at the end"
        )
    return 0


def goals(
    rounds: list[Round], floors: list[tuple[float, float, int]], args: Any, workers: int
) -> None:
    """Each goal of the idle fleet with its figure and the floor measured in this run."""
    direct = [r for r in rounds if r.name.startswith("idle") and "$batch" not in r.name]
    batched = [r for r in rounds if "$batch" in r.name]
    idle_wall = median([r.wall for r in direct])
    batch_wall = median([r.wall for r in batched])
    floor_direct = median([f[0] for f in floors])
    floor_batched = median([f[1] for f in floors])
    links = floors[0][2] if floors else 0

    def cpu(of: list[Round]) -> float:
        return median([1000 * r.cpu / max(1, len(r.passes)) for r in of])

    peak_idle = max(r.peak_mb for r in direct + batched)
    requests = median([sum(1 for q in r.requests if q.mailbox) / len(r.passes) for r in direct])
    n = args.mailboxes
    print(f"\ngoals, this run (median of {args.repeat}; floors measured after the idle passes)")
    print(f"{'goal':<52}{'figure':>10}{'goal':>10}{'floor':>10}{'ratio':>8}")
    rows = [
        (f"idle pass, {n:,} mailboxes, workers = {workers}", idle_wall, GOAL_IDLE_SECONDS,
         floor_direct, f"{links} GETs, {workers} at once"),
        (f"idle pass, {n:,} mailboxes, $batch of {BATCH}", batch_wall, GOAL_BATCHED_SECONDS,
         floor_batched, f"{-(-links // BATCH)} batches, {PROBE_THREADS} at once"),
    ]  # fmt: skip
    for name, figure, goal, base, how in rows:
        print(
            f"{name:<52}{figure:>8.2f} s{'< ' + str(goal) + ' s':>10}{base:>8.2f} s"
            f"{figure / base if base else float('nan'):>7.1f}×   floor: {how}"
        )
    print(f"{'CPU per idle mailbox, without / with $batch':<52}"
          f"{cpu(direct):>5.1f}/{cpu(batched):.1f} ms{'< 3 ms':>7}")  # fmt: skip
    print(f"{'daemon RSS during the idle passes':<52}{peak_idle:>7.0f} MB{'< 150 MB':>10}")
    print(
        f"{'requests per idle mailbox and pass':<52}{requests:>10.2f}"
        f"   at the default {DEFAULT_INTERVAL} s: {requests * 600 / DEFAULT_INTERVAL:.0f} per 10 min"
        f" (Outlook allows 10,000 per app and mailbox)"
    )


# --- memory against size, each in a fresh process ------------------------------------------------


def measure_memory(conn: Connection, mailboxes: int, events: int) -> None:
    """In a child process: a daemon's first and idle pass; its RSS after each and its peak."""
    setup_logging("WARNING")

    class Args:
        workers = None

    Args.mailboxes = mailboxes  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "graph").mkdir()
        fake = FakeProcess(root / "graph", mailboxes, events)
        try:
            config = write_config(
                root / "c.toml", root / "state", fake.options, Args, PASSES_INTERVAL, mailboxes
            )
            watch = PassWatch()
            base = rss_mb()
            daemon = Daemon(config, watch)
            try:
                first, _ = measure_round("first", watch, fake, 0.0, Args, 1800.0)
                moment = time.monotonic()
                daemon.all_due_now()
                idle, _ = measure_round("idle", watch, fake, moment, Args, 1800.0)
            finally:
                daemon.stop()
        finally:
            fake.stop()
    conn.send((base, first.peak_mb, idle.peak_mb, peak_mb()))


def memory_row(mailboxes: int, events: int) -> tuple[float, float, float, float]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=measure_memory, args=(theirs, mailboxes, events))
    child.start()
    child.join()
    return ours.recv() if ours.poll() else (float("nan"),) * 4


def idle_rss(rounds: list[Round]) -> float:
    return max((r.peak_mb for r in rounds if r.name.startswith("idle")), default=float("nan"))


def sizes(name: str, default: str) -> list[int]:
    return [int(v) for v in os.environ.get(name, default).split(",") if v.strip()]


def memory_table(args: Any, main_row: tuple[float, float, float, float] | None) -> None:
    """Memory against size, each row a fresh daemon; says whether growth stays linear."""
    if os.environ.get("SCALE_MEMORY", "1") == "0" or args.memory == "off":
        return
    mailbox_sizes, event_sizes = MEMORY_SIZES[args.memory]
    mailbox_rows = sizes("SCALE_MEMORY_MAILBOXES", mailbox_sizes)
    print("\nmemory against size (each row a fresh daemon process; RSS after imports, after the")
    print("first pass, after an idle pass, and its peak, in MB; growth: idle RSS above the start,")
    print("and per 1,000 events more than the row before in the same sweep)")
    print(f"{'mailboxes':>10}{'events/box':>12}{'events':>9}{'start':>8}{'first':>8}"
          f"{'idle':>8}{'peak':>8}{'growth':>8}{'per 1k more':>13}", flush=True)  # fmt: skip
    rows: list[tuple[int, int, tuple[float, float, float, float] | None]] = [
        (m, 100, None) for m in mailbox_rows
    ]
    if main_row is not None and args.mailboxes not in mailbox_rows:
        rows.append((args.mailboxes, args.events, main_row))  # the main run above
    sweeps = [
        sorted(rows, key=lambda row: row[:2]),
        [(1, e, None) for e in sizes("SCALE_MEMORY_EVENTS", event_sizes)],
    ]
    for sweep in sweeps:
        before: tuple[int, float] | None = None
        slopes: list[float] = []
        for mailboxes, per_box, measured in sweep:
            # Each row is printed as soon as it is measured: the largest take many minutes.
            base, after_first, idle, peak = measured or memory_row(mailboxes, per_box)
            total = mailboxes * per_box
            slope = ""
            if before and total > before[0]:
                slopes.append((idle - before[1]) / ((total - before[0]) / 1000))
                slope = f"{slopes[-1]:.2f}"
            print(f"{mailboxes:>10,}{per_box:>12,}{total:>9,}{base:>8.0f}{after_first:>8.0f}"
                  f"{idle:>8.0f}{peak:>8.0f}{idle - base:>8.0f}{slope:>13}", flush=True)  # fmt: skip
            before = (total, idle)
        if len(slopes) >= 2:
            # Linear or better: each step costs no more per 1,000 events than the step before
            # (within a quarter, the noise of one RSS reading).
            verdict = all(b <= a * 1.25 + 0.05 for a, b in itertools.pairwise(slopes))
            print(
                f"{'':>10}per 1,000 events more, step by step: "
                + " → ".join(f"{s:.2f}" for s in slopes)
                + f" MB: {'no faster than linear' if verdict else 'FASTER THAN LINEAR'}"
            )


def bookings(fake: FakeProcess, args: Any) -> None:
    """Put interviews into random mailboxes at random moments; time until each draft exists."""
    rng = random.Random(11)
    today = datetime.now(STOCKHOLM).date()
    print(
        f"\nbooking → draft, daemon running, interval {args.interval} s "
        f"(bound: interval + {SLACK_SECONDS:.0f} s = {args.interval + SLACK_SECONDS:.0f} s)"
    )
    print(f"{'booking':<9}{'latency':>10}{'/interval':>11}{'wait for poll':>15}{'poll→draft':>12}")
    worst_work = 0.0
    for serial in range(args.bookings):
        time.sleep(rng.uniform(0, args.interval))
        owner = recruiter(rng.randrange(args.mailboxes))
        spec, candidate = booking(owner, serial, today)
        put, polled, seen = fake.call(
            "book", owner.address, spec, candidate, 3.0 * args.interval + 60
        )
        latency, wait, work = seen - put, polled - put, seen - polled
        worst_work = max(worst_work, work)
        print(
            f"{serial + 1:<9}{latency:>8.2f} s{latency / args.interval:>11.2f}"
            f"{wait:>13.2f} s{work:>10.2f} s"
        )
    print(
        f"the poll→draft part does not grow with the interval: with the default "
        f"{DEFAULT_INTERVAL} s the worst case is {DEFAULT_INTERVAL} s + {worst_work:.2f} s "
        f"(bound {DEFAULT_INTERVAL + SLACK_SECONDS:.0f} s; slack beyond the interval "
        f"{worst_work:.2f} s of {SLACK_SECONDS:.0f} s)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
