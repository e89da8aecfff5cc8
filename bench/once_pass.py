"""Benchmark: one ``recruitmail once`` pass over one mailbox whose calendar holds 5,000 events.

Writes an ICS file around a fixed date (about 20 % interviews with external candidates, the rest
internal meetings, a share of them weekly series with a moved and a cancelled occurrence), then
runs ``recruitmail once --now …`` twice in a subprocess with a Maildir sink: a first, full pass
(everything is new: sync, recognition, planning, rendering, drafting) and a second, idle pass
(nothing changed). Prints the wall time, CPU and peak RSS of each pass (a whole `recruitmail once`,
start-up included); targets: the first pass under 1.5 s and 100 MB, the idle one under 0.3 s.
Figures are printed, never asserted.

    python bench/once_pass.py [--events 5000] [--keep DIR] [--profile] [--repeat N]
                              [--source] [--cold] [--no-reading] [--stages N]

The passes run as an installed service's do: from compiled bytecode (``--source``: as this
environment has it), with the cache directory systemd gives the unit (``CACHE_DIRECTORY``:
compiled templates, the remembered start-up check, days off), filled by an untimed warm-up pass
over the same calendar in a state of its own (``--cold``: no cache directory, so that every pass
checks and compiles the templates and works out the days off, as a new installation's first).

``--profile`` runs each pass under cProfile in every thread (the pass itself runs in a worker
thread, which a profiler of the main thread alone never sees) and prints the top of its profile,
by cumulative and by own time (the CPU cost of profiling stretches every figure).
``--stages N`` then runs N first passes in process (no start-up), each on a fresh state, and
prints the CPU and wall time of each stage (sync, reading, composing, rendering, writing, the
ledger's transactions), medians. ``--repeat N`` runs both passes N times, each time on a fresh state and Maildir, and prints the
medians (one run on a busy machine is noise).

Each pass's wall time, CPU (user + system of its process) and peak RSS are printed beside the
same figures of its floor, a process of its own measured in the same runs, and the ratio: for
the first pass, a Python process that reads the calendar, unfolds it into content lines and
writes as many files of the same sizes as the drafts the pass made, 64 at a time (written,
each fsynced, then renamed, then one directory fsync: what the Maildir sink must do at least to
keep its crash guarantee); for the idle pass, a Python process that reads and digests the calendar (what
tells a pass that nothing changed). Each run takes the first pass, the idle pass and the two
floors in turn, so that the machine's load falls on all of them alike.

Then, in this process, the calendar reading alone: the floor (a bare read and unfold), the
source's reading (``read_ics`` over the pass's window, with the pre-filter) and the full parse of
every component (``prefilter=False``), with their ratios to the floor (``--no-reading`` leaves
this out: the full parse takes long).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recruitmail.connectors import ics as ics_source  # noqa: E402
from recruitmail.contracts.models import Period  # noqa: E402
from tests.scenario import two_weeks  # noqa: E402
from tests.scenario.spec import EventSpec, Moved, Who, to_ics  # noqa: E402

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 12, 9, 10, 0, tzinfo=STOCKHOLM)  # a Wednesday
TARGETS = {"first (full)": (1.5, 100.0), "second (idle)": (0.3, 100.0)}
"""Per pass: (seconds, MB)."""
SERIES_LENGTH = 10

RECRUITER = two_weeks.RECRUITER
COLLEAGUES = tuple(Who(f"kollega{n:02d}@nordljus.se", f"Kollega {n}") for n in range(40))
ROOMS = tuple(Who(f"rum{n}@nordljus.se", f"Rum {n}", resource=True) for n in range(6))


def calendar(total: int, seed: int = 7) -> tuple[list[EventSpec], int]:
    """``total`` event occurrences within the sync window around ``NOW``; returns (specs, interviews)."""
    rng = random.Random(seed)

    def moment(days_from: int, days_to: int) -> datetime:
        day = (NOW + timedelta(days=rng.randrange(days_from, days_to))).date()
        return datetime(
            day.year,
            day.month,
            day.day,
            rng.randrange(8, 17),
            rng.choice((0, 30)),
            tzinfo=STOCKHOLM,
        )

    specs: list[EventSpec] = []
    interviews = total // 5
    candidates = max(1, interviews * 2 // 3)  # some candidates meet us twice
    for n in range(interviews):
        start = moment(-30, 60)
        who = Who(
            f"kandidat{n % candidates:04d}@example.com", f"Kandidat{n % candidates:04d}, Anna"
        )
        specs.append(
            EventSpec(
                uid=f"intervju-{n}@nordljus.se",
                subject=f"Intervju: {who.name}",
                start=start,
                end=start + timedelta(hours=1),
                organizer=RECRUITER,
                attendees=(RECRUITER, rng.choice(COLLEAGUES), who, rng.choice(ROOMS)),
                location="Storgatan 1, Umeå",
                body="Agenda:\n- Presentation av rollen\n- Dina erfarenheter\n- Frågor\n",
            )
        )
    series = (
        (total - interviews) // 4 // SERIES_LENGTH
    )  # a quarter of the meetings are weekly series
    for n in range(series):
        start = moment(-30, -20)
        specs.append(
            EventSpec(
                uid=f"serie-{n}@nordljus.se",
                subject=f"Veckomöte {n}",
                start=start,
                end=start + timedelta(minutes=30),
                organizer=RECRUITER,
                attendees=(RECRUITER, *rng.sample(COLLEAGUES, 3)),
                rrule=f"FREQ=WEEKLY;COUNT={SERIES_LENGTH}",
                exdates=(start + timedelta(weeks=3),),
                moved=(
                    Moved(
                        start + timedelta(weeks=5),
                        start + timedelta(weeks=5, hours=1),
                        start + timedelta(weeks=5, hours=1, minutes=30),
                    ),
                ),
            )
        )
    occurrences = series * (SERIES_LENGTH - 1)  # one occurrence of each series is cancelled
    for n in range(total - interviews - occurrences):
        start = moment(-30, 60)
        specs.append(
            EventSpec(
                uid=f"mote-{n}@nordljus.se",
                subject=rng.choice(("Teammöte", "Lunch", "1:1", "Planering")),
                start=start,
                end=start + timedelta(minutes=rng.choice((30, 45, 60))),
                organizer=RECRUITER,
                attendees=(RECRUITER, *rng.sample(COLLEAGUES, rng.randrange(1, 5))),
            )
        )
    return specs, interviews


def config(workdir: Path, ics: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "recruitmail.toml"
    path.write_text(
        two_weeks.CONFIG.replace("{state_dir}", str(workdir / "state"))
        + f'\n[mailboxes.source]\ntype = "ics"\npath = "{ics}"\n'
        + f'\n[mailboxes.sink]\ntype = "maildir"\npath = "{workdir / "Maildir"}"\n',
        encoding="utf-8",
    )
    return path


def child_environment(workdir: Path, source: bool, cold: bool) -> dict[str, str]:
    """The passes' environment: compiled bytecode as an installed recruitmail has it (unless
    ``source``), and the service's cache directory as systemd's ``CacheDirectory=`` gives it,
    shared by every pass so that the warm-up fills it (unless ``cold``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CACHE_DIRECTORY", None)
    if not source:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "bytecode")
    if not cold:
        (workdir / "cache").mkdir(mode=0o700, parents=True, exist_ok=True)
        env["CACHE_DIRECTORY"] = str(workdir / "cache")
    return env


# Starts a child from a small process and reports its wall time, CPU and peak RSS. The kernel
# carries a process's peak RSS across exec, so a pass started straight from this benchmark
# (which holds the 5,000 event specs, ~90 MB) would report this process's peak, not its own.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
cpu = usage.ru_utime + usage.ru_stime
sys.stdout.write(f"\\n@@ {wall} {cpu} {usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""

# The floor of each pass, as a process of its own started the same way: the interpreter's start,
# then what any reader of the calendar must do. First pass: read the file and unfold it into
# content lines, then write as many files of the same sizes as the pass's drafts, FSYNC_BATCH at
# a time: the batch's files written, each fsynced, then renamed into place, then one directory
# fsync (what the Maildir sink must do at least to keep its crash guarantee). Idle pass: read the file and digest it (what
# tells a pass that nothing changed).
FLOOR = """
import hashlib, os, re, sys
calendar, mode = sys.argv[1], sys.argv[2]
data = open(calendar, "rb").read()
if mode == "idle":
    hashlib.sha256(data).hexdigest()
    sys.exit(0)
re.sub(rb"\\r?\\n[ \\t]", b"", data).splitlines()
scratch, sizes, batch = sys.argv[3], open(sys.argv[4]).read().split(), int(sys.argv[5])
os.makedirs(scratch, exist_ok=True)
folder = os.open(scratch, os.O_RDONLY)
for first in range(0, len(sizes), batch):
    names = range(first, min(first + batch, len(sizes)))
    for n in names:
        with open(os.path.join(scratch, f"{n}.tmp"), "wb") as out:
            out.write(b"x" * int(sizes[n]))
    for n in names:
        descriptor = os.open(os.path.join(scratch, f"{n}.tmp"), os.O_RDONLY)
        os.fsync(descriptor)
        os.close(descriptor)
    for n in names:
        os.rename(os.path.join(scratch, f"{n}.tmp"), os.path.join(scratch, f"{n}.eml"))
    os.fsync(folder)
"""


# Runs ``recruitmail`` with cProfile in every thread: each new thread's first profiling event
# starts a profiler of its own, and all of them are printed together when the command ends.
PROFILED = """
import cProfile, pstats, runpy, sys, threading
profiles = []
def start(*_):
    profile = cProfile.Profile()
    profiles.append(profile)
    profile.enable()
threading.setprofile(start)
main = cProfile.Profile()
profiles.append(main)
sys.argv[0] = "recruitmail"
main.enable()
try:
    runpy.run_module("recruitmail", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    code = stop.code
else:
    code = 0
finally:
    for profile in profiles:
        profile.disable()
    stats = pstats.Stats(*profiles, stream=sys.stdout)
    stats.strip_dirs().sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
sys.exit(code)
"""


# One first pass in a process of its own, in process (no start-up): the thread's CPU clock and
# the wall clock around each stage, inclusive (an inner call of the same stage is not counted
# twice), printed as JSON. The stages are wrapped here, in the measuring process only.
STAGES = """
import functools, json, logging, os, sys, time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo
from recruitmail.connectors import ics, maildir
from recruitmail.daemon import executor
from recruitmail.daemon.render import Renderer
from recruitmail.daemon.runtime import open_runner, template_cache_dir
from recruitmail.daemon.settings import load_settings
from recruitmail.daemon.state import State
from recruitmail.daemon.language import _detector, _LINGUA_NAMES
logging.disable(logging.INFO)
settings = load_settings(Path(sys.argv[1]))
state = State.open(settings.service)
renderer = Renderer(settings.service.templates_dir, template_cache_dir(settings))
_detector(tuple(sorted(_LINGUA_NAMES)))  # loaded as a pass after start-up finds it
import icalendar, recurring_ical_events  # noqa: F401
figures = {}
def wrap(owner, name, label):
    inner = getattr(owner, name, None)
    if inner is None:
        return
    busy = [False]
    @functools.wraps(inner)
    def timed(*args, **kwargs):
        if busy[0]:
            return inner(*args, **kwargs)
        busy[0] = True
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            busy[0] = False
            seen = figures.setdefault(label, [0.0, 0.0, 0])
            seen[0] += time.thread_time() - cpu
            seen[1] += time.perf_counter() - wall
            seen[2] += 1
    setattr(owner, name, timed)
for name in ("sync", "settled_snapshot", "carry_out", "prepare", "language", "interviews"):
    wrap(executor.MailboxRunner, name, "runner." + name)
wrap(executor, "plan", "plan")
wrap(Renderer, "render", "render")
for name in ("create_draft", "flush", "find_draft"):
    wrap(maildir.MaildirSink, name, "sink." + name)
wrap(maildir, "to_bytes", "to_bytes")
wrap(ics, "read_ics", "read_ics")
wrap(ics, "_expand", "read_ics: series expansion")
for name in ("begin_attempts", "finish_drafts", "remember_language", "apply_sync", "events"):
    wrap(State, name, "state." + name)
now = datetime.fromisoformat(sys.argv[2])
cpu, wall = time.thread_time(), time.perf_counter()
with open_runner(settings, 0, state, renderer) as runner:
    report = runner.reconcile(now)
figures["the pass"] = [time.thread_time() - cpu, time.perf_counter() - wall, len(report.drafted)]
print(json.dumps(figures))
"""


@dataclass(frozen=True)
class Figures:
    """One child process: wall seconds, CPU seconds (user + system), peak RSS in MB."""

    wall: float
    cpu: float
    mb: float


def run_child(command: list[str], env: dict[str, str] | None = None) -> tuple[Figures, str]:
    """Run ``command`` from the launcher: its figures and its output."""
    child = subprocess.run(
        [sys.executable, "-S", "-c", LAUNCHER, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env or {**os.environ, "PYTHONPATH": str(ROOT)},
    )
    output, _, figures = child.stdout.rpartition("\n@@ ")
    if child.returncode != 0 or not figures:
        print(child.stdout, file=sys.stderr)
        raise SystemExit(f"{command[1:4]} failed with exit code {child.returncode}")
    wall, cpu, max_rss = figures.split()
    return Figures(float(wall), float(cpu), int(max_rss) / 1024), output  # KiB on Linux


def one_pass(
    config_path: Path, profile: bool, env: dict[str, str] | None = None
) -> tuple[Figures, str]:
    """Run ``recruitmail once`` in a child process: its figures and its output."""
    command = [
        sys.executable,
        "-m",
        "recruitmail",
        "--config",
        str(config_path),
        "once",
        "--now",
        NOW.isoformat(),
    ]
    if profile:
        command[1:3] = ["-c", PROFILED]
    return run_child(command, env)


def floor_pass(name: str, ics: Path, maildir: Path, scratch: Path) -> Figures:
    """The floor of pass ``name`` (see ``FLOOR``), the drafts' sizes read from ``maildir``."""
    if name == IDLE:
        figures, _ = run_child([sys.executable, "-c", FLOOR, str(ics), "idle"])
        return figures
    sizes = [
        str(p.stat().st_size)
        for p in maildir.rglob("*")
        if p.is_file() and p.parent.name in ("cur", "new")
    ]
    scratch.mkdir(parents=True, exist_ok=True)
    listing = scratch.parent / f"{scratch.name}.sizes"
    listing.write_text(" ".join(sizes))
    figures, _ = run_child(
        [sys.executable, "-c", FLOOR, str(ics), "first", str(scratch), str(listing),
         str(FSYNC_BATCH)]
    )  # fmt: skip
    return figures


FOLD = re.compile(rb"\r?\n[ \t]")
FSYNC_BATCH = 64  # drafts per directory fsync in the Maildir sink
FIRST, IDLE = "first (full)", "second (idle)"


def reading_figures(ics: Path, repeat: int) -> dict[str, float]:
    """Seconds (median of ``repeat``) to read the calendar in this process: the floor, the
    source's reading and the full parse."""
    today = NOW.date()
    window = Period(  # the pass's window (service.window_past_days / window_future_days)
        datetime.combine(today - timedelta(days=30), clock_time(0), STOCKHOLM),
        datetime.combine(today + timedelta(days=90), clock_time(0), STOCKHOLM),
    )

    def floor() -> None:
        FOLD.sub(b"", ics.read_bytes()).splitlines()

    def source() -> None:
        ics_source.read_ics(ics.read_bytes(), window, STOCKHOLM, "bench")

    def full() -> None:
        ics_source.read_ics(ics.read_bytes(), window, STOCKHOLM, "bench", prefilter=False)

    figures: dict[str, float] = {}
    for name, work in (("floor", floor), ("read_ics", source), ("full parse", full)):
        times = []
        for _ in range(max(1, repeat)):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        figures[name] = statistics.median(times)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=5000, help="event occurrences in the calendar"
    )
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--profile", action="store_true", help="run each pass under cProfile")
    parser.add_argument("--repeat", type=int, default=1, help="runs of both passes (medians)")
    parser.add_argument(
        "--source", action="store_true", help="leave this environment's bytecode settings"
    )
    parser.add_argument(
        "--cold", action="store_true", help="no cache directory: each pass as a new installation's"
    )
    parser.add_argument(
        "--stages",
        type=int,
        default=0,
        metavar="N",
        help="then N first passes in process (no start-up): CPU and wall of each stage",
    )
    parser.add_argument(
        "--no-reading",
        action="store_true",
        help="leave out the calendar reading in this process (the full parse takes long)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        specs, interviews = calendar(args.events)
        ics = workdir / "calendar.ics"
        ics.write_bytes(to_ics(specs))
        del specs
        print(
            f"calendar: {args.events} events ({interviews} interviews), "
            f"{ics.stat().st_size / 1e6:.1f} MB ICS; --now {NOW.isoformat()}"
        )
        env = child_environment(workdir, args.source, args.cold)
        print(
            "bytecode: "
            + ("as this environment has it" if args.source else "compiled, as installed")
            + "; caches (compiled templates, start-up check, days off): "
            + ("none, every pass as a new installation's" if args.cold else
               "in CACHE_DIRECTORY, as under systemd, filled by an untimed warm-up pass")
        )  # fmt: skip
        if not args.cold or not args.source:
            warm, _ = one_pass(config(workdir / "warm-up", ics), False, env)
            print(f"warm-up pass (untimed): {warm.wall:.2f} s")
        print(
            "each run: the first pass, the idle pass, then their floors (the same launcher; "
            "see FLOOR)"
        )
        print(f"{'run':<5}{'what':<22}{'wall':>9}{'CPU':>9}{'peak RSS':>10}   result")
        passes: dict[str, list[Figures]] = {FIRST: [], IDLE: []}
        floors: dict[str, list[Figures]] = {FIRST: [], IDLE: []}
        for run in range(max(1, args.repeat)):
            config_path = config(workdir / f"run-{run}", ics)
            for name in (FIRST, IDLE):
                figures, output = one_pass(config_path, args.profile, env)
                passes[name].append(figures)
                summary = (
                    output.strip().splitlines()[-1] if output.strip() and not args.profile else ""
                )
                print(f"{run:<5}{name:<22}{_row(figures)}   {summary}")
                if args.profile:
                    print(output)
            for name in (FIRST, IDLE):
                figures = floor_pass(
                    name, ics, workdir / f"run-{run}" / "Maildir", workdir / f"floor-{run}"
                )
                floors[name].append(figures)
                print(f"{run:<5}{'floor of ' + name:<22}{_row(figures)}")
        runs = len(passes[FIRST])
        print(
            f"\ngoals (median of {runs} run{'s' if runs > 1 else ''}; the floor of each pass "
            "measured in the same runs):"
        )
        print(f"{'pass':<15}{'measure':<10}{'figure':>10}{'floor':>10}{'ratio':>8}{'goal':>11}")
        for name in (FIRST, IDLE):
            seconds, megabytes = TARGETS[name]
            got, low = _median(passes[name]), _median(floors[name])
            for measure, value, base, goal, unit in (
                ("wall", got.wall, low.wall, seconds, "s"),
                ("CPU", got.cpu, low.cpu, None, "s"),
                ("peak RSS", got.mb, low.mb, megabytes, "MB"),
            ):
                verdict = "" if goal is None else ("ok" if value < goal else "OVER")
                goal_text = "" if goal is None else f"< {goal:g} {unit}"
                print(
                    f"{name:<15}{measure:<10}{_amount(value, unit):>10}{_amount(base, unit):>10}"
                    f"{value / base:>7.1f}×{goal_text:>11}  {verdict}"
                )
        print(
            "floors: first pass = a Python process that reads and unfolds the calendar and "
            f"writes as many files of the drafts' sizes, {FSYNC_BATCH} at a time (written, "
            "each fsynced, renamed, one directory fsync); idle pass = a Python process that reads and digests the calendar"
        )
        if args.stages:
            stage_figures(workdir, ics, env, args.stages)
        if args.no_reading:
            return 0
        reading = reading_figures(ics, max(3, args.repeat))
        base = reading["floor"]
        print("\nreading the calendar in this process (median of at least three):")
        for name, seconds in reading.items():
            ratio = "" if name == "floor" else f"  {seconds / base:>5.1f}× the floor"
            what = {
                "floor": "bare read + unfold",
                "read_ics": "the source (pre-filter)",
                "full parse": "every component parsed",
            }[name]
            print(f"  {name:<11}{seconds * 1000:>8.0f} ms  {what}{ratio}")
    return 0


def stage_figures(workdir: Path, ics: Path, env: dict[str, str], runs: int) -> None:
    """``runs`` first passes in process (``STAGES``), each on a fresh state and Maildir: the
    median CPU and wall of each stage."""
    import json

    found: list[dict[str, list[float]]] = []
    for run in range(runs):
        config_path = config(workdir / f"stages-{run}", ics)
        child = subprocess.run(
            [sys.executable, "-c", STAGES, str(config_path), NOW.isoformat()],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            check=True,
        )
        found.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(f"\nstages of the first pass in process (median of {runs}; inclusive):")
    print(f"{'stage':<30}{'CPU':>9}{'wall':>9}{'calls':>7}")
    for label in sorted({name for figures in found for name in figures}):
        seen = [figures[label] for figures in found if label in figures]
        cpu = statistics.median(f[0] for f in seen)
        wall = statistics.median(f[1] for f in seen)
        print(f"{label:<30}{cpu:>8.3f}s{wall:>8.3f}s{int(seen[0][2]):>7}")


def _row(figures: Figures) -> str:
    return f"{figures.wall:>7.2f} s{figures.cpu:>7.2f} s{figures.mb:>7.0f} MB"


def _median(runs: list[Figures]) -> Figures:
    return Figures(
        statistics.median(f.wall for f in runs),
        statistics.median(f.cpu for f in runs),
        statistics.median(f.mb for f in runs),
    )


def _amount(value: float, unit: str) -> str:
    return f"{value:.2f} s" if unit == "s" else f"{value:.0f} MB"


if __name__ == "__main__":
    sys.exit(main())
