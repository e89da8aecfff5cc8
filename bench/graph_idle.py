"""Benchmark: the idle fleet, 1,000 Microsoft 365 mailboxes at 50 ms per request.

Two measurements; by default both, ``--source-only`` or ``--daemon-only`` one of them.

**The daemon's idle pass** (the issue's goals). The strict Graph fake runs in a process of its own
(``bench/scale.py``'s ``FakeProcess``: ``--events`` occurrences per mailbox, a fifth of them
interviews) so that this process is the daemon alone; the daemon is ``scheduler.Service`` as
``recruitmail run`` builds it, with the default ``service.workers``. After the first pass and the
passes that settle it (the look-ups the first pass deferred, then one pass that plans nothing),
every job is brought forward to now ``--repeat`` times without JSON batching and ``--repeat``
times with it, as each interval brings them due together. Then the floor, in the same run: the
same requests (every mailbox's own next delta link) sent by a bare HTTP client against the same
fake, ``workers`` at a time, and in batches of 20, ``PROBE_THREADS`` at a time. Each goal is
printed with its figure (the median of the rounds), the goal, the floor and the ratio; CPU per
idle mailbox is this process's CPU time over the round; RSS is the process's own.
The daemon runs with ``MALLOC_ARENA_MAX=2`` as the systemd unit sets it (the benchmark starts itself
again with it); ``MALLOC_ARENA_MAX=0`` measures glibc's default (an arena per thread, up to 8 per CPU).
As ``recruitmail run`` does, the daemon starts afresh after its first round when that round grew it
by more than ``service.fresh_start_mb`` (it does at 1,000 mailboxes): the first round runs in a
child process until the daemon decides so, and the rounds after it in this one, on the same state
and fake (``--no-fresh-start``: one process throughout, a daemon that keeps its first round's
leftovers).
``--tracemalloc`` traces allocations from the daemon's first pass on and prints what the idle daemon holds, by
module (it slows everything down: its timings are not the figures). ``--profile`` samples every
thread during the idle rounds.

**The calendar sources alone** (``--source-only``): every mailbox gets one interview, is synced
once, then each idle cycle follows its delta link and finds nothing new: one request per mailbox
(``--source-workers`` at a time), or the links asked ahead in JSON batches of 20
(``GraphCalendarSource.probe_many``) before the syncs. Prints the requests per idle mailbox
(target 1), the wall time of a cycle (median of ``--repeat``) and the sign-ins (target 1).

    python bench/graph_idle.py [--mailboxes 1000] [--events 100] [--latency-ms 50] [--repeat 3]
                               [--workers N] [--source-workers 100] [--source-only|--daemon-only]
                               [--tracemalloc] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import (  # noqa: E402
    DEFAULT_WORKERS,
    GOAL_BATCHED_SECONDS,
    GOAL_CPU_MS,
    GOAL_IDLE_SECONDS,
    GOAL_MB,
    PASSES_INTERVAL,
    Daemon,
    FakeProcess,
    Pass,
    PassWatch,
    Round,
    as_the_unit_runs,
    floor,
    idle_rounds,
    measure_round,
    median,
    print_rounds,
    round_requests,
    rss_mb,
    write_config,
)

from recruitmail.connectors.microsoft import GraphCalendarSource, SourceOptions, open_source  # noqa: E402
from recruitmail.contracts.connector import ConnectorContext  # noqa: E402
from recruitmail.contracts.models import Period  # noqa: E402
from recruitmail.daemon.scheduler import BATCH_SIZE, PROBE_THREADS  # noqa: E402
from recruitmail.daemon.service import setup_logging  # noqa: E402
from tests.fakes.graph import FakeGraph  # noqa: E402
from tests.scenario.spec import EventSpec, Who  # noqa: E402

STOCKHOLM = ZoneInfo("Europe/Stockholm")
WINDOW = Period(datetime(2026, 3, 1, tzinfo=STOCKHOLM), datetime(2026, 7, 1, tzinfo=STOCKHOLM))
SETTLING_ROUNDS = 4
"""At most this many passes after the first before the measured ones: the first pass defers the
look-ups of some mails to the next; a pass that drafts changes the ledger, so the next plans."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100, help="event occurrences per mailbox")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3, help="idle rounds of each kind")
    parser.add_argument(
        "--workers", type=int, default=None, help=f"service.workers (default {DEFAULT_WORKERS})"
    )
    parser.add_argument(
        "--source-workers", type=int, default=100, help="sources synced at once (sources alone)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--source-only", action="store_true")
    which.add_argument("--daemon-only", action="store_true")
    which.add_argument(
        "--one-mailbox",
        type=int,
        metavar="EVENTS",
        help="only: one runner in-process, a pass that skips against one that plans",
    )
    parser.add_argument("--tracemalloc", action="store_true", help="what the idle daemon holds")
    parser.add_argument(
        "--no-fresh-start",
        action="store_true",
        help="one daemon process throughout: no fresh start after the first round",
    )
    parser.add_argument("--first-round-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help="sample the idle rounds")
    args = parser.parse_args()
    as_the_unit_runs()
    if args.first_round_child:
        return first_round_child(*args.first_round_child)
    if args.one_mailbox:
        return one_mailbox(args.one_mailbox)
    failed = 0
    if not args.source_only:
        failed |= daemon_idle(args)
    if not args.daemon_only:
        failed |= source_alone(args)
    return failed


def daemon_idle(args: argparse.Namespace) -> int:
    """The daemon's idle pass against the floor of the same requests, measured in this run."""
    workers = args.workers or DEFAULT_WORKERS
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "graph").mkdir()
        began = time.monotonic()
        fake = FakeProcess(root / "graph", args.mailboxes, args.events)
        try:
            config = write_config(
                root / "daemon.toml", root / "state", fake.options, args, PASSES_INTERVAL
            )
            print(
                f"the daemon's idle pass: {args.mailboxes} mailboxes × {args.events} events, "
                f"{args.latency_ms:.0f} ms per request, service.workers = {workers}; "
                f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start, "
                f"{as_the_unit_runs()}"
            )
            fake.call("latency", args.latency_ms / 1000)
            log_file = (root / "daemon.log").open("w", encoding="utf-8")
            setup_logging("INFO", stream=log_file)
            watch = PassWatch()
            timeout = 1800.0
            rounds = []
            name = "first (full)"
            if not args.no_fresh_start:
                first_round, started_afresh = in_a_child(root, config, fake, began, args, timeout)
                rounds.append(first_round)
                name = "after fresh start" if started_afresh else "after a restart"
                began = time.monotonic()
            daemon = Daemon(config, watch)
            if args.tracemalloc:  # after the start-up's template check (it has a time budget)
                tracemalloc.start(1)
            try:
                first, _ = measure_round(name, watch, fake, began, args, timeout)
                rounds.append(first)
                for n in range(SETTLING_ROUNDS):
                    moment = time.monotonic()
                    daemon.all_due_now()
                    settling, _ = measure_round(
                        f"settling {n + 1}", watch, fake, moment, args, timeout
                    )
                    rounds.append(settling)
                    if not settling.drafts and n >= 1:
                        break
                idle, sampler = idle_rounds(daemon, watch, fake, args, timeout)
                rounds += idle
                floors = [floor(daemon, fake.options, workers) for _ in range(args.repeat)]
                held = held_by_module() if args.tracemalloc else []
            finally:
                daemon.stop()
                log_file.close()
        finally:
            fake.stop()
    print_rounds(rounds, args.mailboxes)
    if args.profile:
        sampler.report()
    if held:
        print("\nwhat the idle daemon holds (tracemalloc, live Python allocations by module):")
        for module, size in held:
            print(f"  {size / 2**20:8.1f} MB  {module}")
    return goals(rounds, floors, args, workers)


FIRST_ROUND = """The first round in a child process: the daemon as ``recruitmail run`` builds it, until it
decides to start afresh (``Service.fresh_start``), or until the round is over and it did not."""


def in_a_child(
    root: Path, config: Path, fake: FakeProcess, began: float, args: argparse.Namespace,
    timeout: float,
) -> tuple[Round, bool]:  # fmt: skip
    """``FIRST_ROUND``: its passes, CPU and RSS as a ``Round`` (the child's own figures), and
    whether the daemon decided to start afresh."""
    report = root / "first-round.json"
    subprocess.run(
        [sys.executable, __file__, "--first-round-child", str(config), str(report), str(timeout)],
        check=True,
        env={**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")},
    )
    found = json.loads(report.read_text())
    passes = [Pass(*p) for p in found["passes"]]
    records = round_requests(passes, fake.new_requests(), began)
    if not found["fresh_start"]:
        print(
            f"  (the first round grew the daemon by {found['grown']:.0f} MB, not more than "
            "service.fresh_start_mb: it did not start afresh; the rounds below are a restart's)"
        )
    first = Round("first (full)", passes, records, found["cpu"], found["rss"], found["drafted"])
    return first, bool(found["fresh_start"])


def first_round_child(config: str, report: str, timeout: str) -> int:
    """The child's side of ``in_a_child``."""
    setup_logging("INFO", stream=Path(report).with_suffix(".log").open("w", encoding="utf-8"))
    watch = PassWatch()
    started = rss_mb()
    daemon = Daemon(Path(config), watch, may_start_afresh=True)
    service = daemon.service
    service.first_round_over.wait(float(timeout))
    if service.fresh_start:
        daemon.thread.join(float(timeout))  # serve_forever returns, for the process to exec
    rss = rss_mb()
    grown = rss - started
    daemon.stop()
    Path(report).write_text(
        json.dumps(
            {
                "passes": [[p.mailbox, p.started, p.finished, p.ok] for p in watch.passes],
                "cpu": time.process_time(),
                "rss": rss,
                "drafted": watch.drafted,
                "fresh_start": service.fresh_start,
                "grown": grown,
            }
        )
    )
    return 0


def one_mailbox(events: int, passes: int = 200, rounds: int = 5) -> int:
    """CPU of one mailbox's idle pass, runner kept open, against the fake Graph in this process
    (no latency): passes that skip (nothing changed since an empty plan) and passes that plan
    (each at an instant before the last plan's, which an empty plan never covers: the snapshot
    is read, the interviews decoded and recognised again, and the planner runs). Both include the
    fake's own work on the one delta request; the difference is what skipping saves."""
    from scale import STOCKHOLM as ZONE
    from scale import calendar, recruiter

    from recruitmail.daemon.render import Renderer
    from recruitmail.daemon.runtime import open_runner, template_cache_dir
    from recruitmail.daemon.settings import load_settings
    from recruitmail.daemon.state import State

    setup_logging("WARNING")
    figures: dict[str, list[float]] = {"skips": [], "plans": []}
    with tempfile.TemporaryDirectory() as tmp, FakeGraph(Path(tmp)) as fake:
        owner = recruiter(0)
        fake.add_mailbox(owner.address, owner.name)
        for spec in calendar(owner, 0, events, datetime.now(ZONE).date()):
            fake.put_event(owner.address, spec)
        options = fake.options("")
        options.pop("user", None)
        one = argparse.Namespace(workers=None, mailboxes=1)
        config = write_config(Path(tmp) / "c.toml", Path(tmp) / "state", options, one, 3600)
        settings = load_settings(config)
        state = State.open(settings.service)
        try:
            renderer = Renderer(settings.service.templates_dir, template_cache_dir(settings))
            with open_runner(settings, 0, state, renderer) as runner:
                now = datetime.now(ZONE)
                for n in range(4):  # the first pass, the deferred look-ups, an empty plan
                    runner.reconcile(now + timedelta(seconds=n))
                for r in range(rounds):
                    began = time.process_time()
                    for n in range(passes):
                        moment = now + timedelta(seconds=4 + r * passes + n)
                        assert not runner.reconcile(moment).planned
                    figures["skips"].append((time.process_time() - began) / passes)
                    began = time.process_time()
                    for n in range(passes):
                        moment = now - timedelta(seconds=1 + r * passes + n)
                        assert runner.reconcile(moment).planned
                    figures["plans"].append((time.process_time() - began) / passes)
                interviews = len(runner.interviews())
        finally:
            state.close()
    skips, plans = median(figures["skips"]) * 1000, median(figures["plans"]) * 1000
    print(
        f"one mailbox, {events} events ({interviews} interviews), CPU per idle pass, median of "
        f"{rounds} × {passes}: {skips:.2f} ms skipping, {plans:.2f} ms planning "
        f"(skipping saves {plans - skips:.2f} ms; both include the fake's work)"
    )
    return 0


def held_by_module(top: int = 20) -> list[tuple[str, int]]:
    """Live allocations grouped by the module (file, under site-packages or the project) that
    made them, largest first."""
    snapshot = tracemalloc.take_snapshot()
    sizes: dict[str, int] = {}
    for stat in snapshot.statistics("filename"):
        name = stat.traceback[0].filename
        for marker in ("site-packages/", "/work/main/", "/lib/python3"):
            if marker in name:
                name = name.split(marker, 1)[1]
                break
        sizes[name] = sizes.get(name, 0) + stat.size
    total = sum(sizes.values())
    return [("(all)", total), *sorted(sizes.items(), key=lambda kv: -kv[1])[:top]]


def goals(
    rounds: list[Round], floors: list[tuple[float, float, int]], args: Any, workers: int
) -> int:
    """Each goal of the idle fleet with its figure and the floor measured in this run."""
    direct = [r for r in rounds if r.name.startswith("idle") and "$batch" not in r.name]
    batched = [r for r in rounds if "$batch" in r.name]
    links = floors[0][2] if floors else 0

    def cpu(of: list[Round]) -> float:
        return median([1000 * r.cpu / max(1, len(r.passes)) for r in of])

    idle_wall, batch_wall = median([r.wall for r in direct]), median([r.wall for r in batched])
    floor_direct, floor_batched = median([f[0] for f in floors]), median([f[1] for f in floors])
    rss = max(r.peak_mb for r in direct + batched)
    requests = median([sum(1 for q in r.requests if q.mailbox) / len(r.passes) for r in direct])
    n = args.mailboxes
    print(f"\ngoals (median of {args.repeat} rounds each; floors measured after them, same run)")
    print(f"{'goal':<50}{'figure':>10}{'goal':>10}{'floor':>9}{'ratio':>8}")
    rows = [
        (f"idle pass, {n:,} mailboxes, workers = {workers}", idle_wall, GOAL_IDLE_SECONDS,
         floor_direct, f"{links} GETs, {workers} at once"),
        (f"idle pass, {n:,} mailboxes, $batch of {BATCH_SIZE}", batch_wall, GOAL_BATCHED_SECONDS,
         floor_batched, f"{-(-links // BATCH_SIZE)} batches, {PROBE_THREADS} at once"),
    ]  # fmt: skip
    met = True
    for name, figure, goal, base, how in rows:
        met &= figure < goal
        print(
            f"{name:<50}{figure:>8.2f} s{'< ' + str(goal) + ' s':>10}{base:>7.2f} s"
            f"{figure / base if base else float('nan'):>7.1f}×   floor: {how}"
        )
    cpu_direct, cpu_batched = cpu(direct), cpu(batched)
    met &= max(cpu_direct, cpu_batched) < GOAL_CPU_MS and rss < GOAL_MB
    print(f"{'CPU per idle mailbox, without / with $batch':<50}"
          f"{cpu_direct:>4.1f}/{cpu_batched:.1f} ms{'< ' + str(GOAL_CPU_MS) + ' ms':>8}")  # fmt: skip
    print(
        f"{'daemon RSS during the idle rounds':<50}{rss:>7.0f} MB{'< ' + str(GOAL_MB) + ' MB':>10}"
    )
    print(f"{'Graph requests per idle mailbox and pass':<50}{requests:>10.2f}{'1':>10}")
    print(f"{'RSS now (after the daemon stopped)':<50}{rss_mb():>7.0f} MB")
    return 0 if met and requests == 1 else 1


def source_alone(args: argparse.Namespace) -> int:
    """The calendar sources alone, in this process, ``--source-workers`` at a time."""
    workers = args.source_workers

    with tempfile.TemporaryDirectory() as tmp, FakeGraph(Path(tmp)) as fake:
        addresses = [f"recruiter{n:04d}@example.se" for n in range(args.mailboxes)]
        start = datetime(2026, 4, 1, 10, 0, tzinfo=STOCKHOLM)
        for n, address in enumerate(addresses):
            fake.add_mailbox(address, f"Recruiter {n}")
            fake.put_event(
                address,
                EventSpec(
                    uid=f"interview-{n}@example.se",
                    subject="Intervju",
                    start=start,
                    end=start + timedelta(hours=1),
                    organizer=Who(address),
                    attendees=(Who(f"candidate{n}@example.com", "Kandidat"),),
                ),
            )
        sources: list[GraphCalendarSource] = []
        for address in addresses:
            options = SourceOptions(**fake.options(address))
            context = ConnectorContext(address, "", "Europe/Stockholm", ("example.se",), Path(tmp))
            sources.append(open_source(options, context))

        with ThreadPoolExecutor(max_workers=workers) as pool:
            cursors = list(pool.map(lambda s: s.sync(None, WINDOW).cursor, sources))
            fake.latency = args.latency_ms / 1000
            pairs = list(zip(sources, cursors, strict=True))

            def cycle() -> tuple[float, int, int, int]:
                before = len(fake.graph_requests())
                began = time.perf_counter()
                results = list(pool.map(lambda sc: sc[0].sync(sc[1], WINDOW), pairs))
                elapsed = time.perf_counter() - began
                records = fake.graph_requests()[before:]
                changed = sum(len(r.events) + len(r.removed) for r in results)
                return elapsed, sum(1 for r in records if r.mailbox), len(records), changed

            def batched() -> tuple[float, int, int, int]:
                before = len(fake.graph_requests())
                began = time.perf_counter()
                chunks = [sources[i : i + BATCH_SIZE] for i in range(0, len(sources), BATCH_SIZE)]
                with ThreadPoolExecutor(max_workers=PROBE_THREADS) as probes:
                    list(probes.map(GraphCalendarSource.probe_many, chunks))
                results = list(pool.map(lambda sc: sc[0].sync(sc[1], WINDOW), pairs))
                elapsed = time.perf_counter() - began
                records = fake.graph_requests()[before:]
                changed = sum(len(r.events) + len(r.removed) for r in results)
                return (
                    elapsed,
                    sum(1 for r in records if r.mailbox),
                    len(records) - sum(1 for r in records if r.batched),
                    changed,
                )

            direct_runs = [cycle() for _ in range(args.repeat)]
            batch_runs = [batched() for _ in range(args.repeat)]
        for source in sources:
            source.close()

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    elapsed = median([r[0] for r in direct_runs])
    batched_elapsed = median([r[0] for r in batch_runs])
    per_mailbox = direct_runs[0][1] / args.mailboxes
    changed = sum(r[3] for r in direct_runs + batch_runs)
    print(f"mailboxes:                         {args.mailboxes}")
    print(f"added latency per request:         {args.latency_ms:.0f} ms")
    print(f"requests per idle mailbox / cycle: {per_mailbox:.2f}  (target 1)")
    print(f"wall time of one idle cycle:       {elapsed:.2f} s  (target < 10 s; {workers} at once)")
    print(
        f"the same, asked in $batch of {BATCH_SIZE}:    {batched_elapsed:.2f} s  "
        f"({PROBE_THREADS} batches at once; requests per mailbox "
        f"{batch_runs[0][1] / args.mailboxes:.2f}, HTTP round trips {batch_runs[0][2]})"
    )
    print(f"changes seen in the idle cycles:   {changed}  (expected 0)")
    print(f"most requests in flight per box:   {fake.max_in_flight()}  (limit 4)")
    print(f"sign-ins (token requests):         {fake.token_requests}  (target 1)")
    ok = (
        per_mailbox == 1
        and changed == 0
        and fake.token_requests == 1
        and (args.mailboxes != 1000 or elapsed < 10)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
