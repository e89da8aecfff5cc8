"""Benchmark: one ``recruitmail once`` pass over one mailbox whose calendar holds 5,000 events.

Writes an ICS file around a fixed date (about 20 % interviews with external candidates, the rest
internal meetings, a share of them weekly series with a moved and a cancelled occurrence), then
runs ``recruitmail once --now …`` twice in a subprocess with a Maildir sink: a first, full pass
(everything is new: sync, recognition, planning, rendering, drafting) and a second, idle pass
(nothing changed). Prints the wall time and peak RSS of each pass (a whole `recruitmail once`,
start-up included); targets: the first pass under 1.5 s and 100 MB, the idle one under 0.3 s.
Figures are printed, never asserted.

    python bench/once_pass.py [--events 5000] [--keep DIR] [--profile] [--repeat N]
                              [--source] [--cold]

The passes run as an installed service's do: from compiled bytecode (``--source``: as this
environment has it), with the cache directory systemd gives the unit (``CACHE_DIRECTORY``:
compiled templates, the remembered start-up check, days off), filled by an untimed warm-up pass
over the same calendar in a state of its own (``--cold``: no cache directory, so that every pass
checks and compiles the templates and works out the days off, as a new installation's first).

``--profile`` runs each pass under pyinstrument (if installed) and prints where the time goes.
``--repeat N`` runs both passes N times, each time on a fresh state and Maildir, and prints the
medians (one run on a busy machine is noise).

Beside the passes, in the same run, it measures the calendar reading alone in this process: the
floor (a bare read of the file and its unfolding into content lines: what any reader pays), the
source's reading (``read_ics`` over the pass's window, with the pre-filter) and the full parse of
every component (``prefilter=False``), with their ratios to the floor.

Each pass's goal is printed beside its floor from the same run: for the first pass, a bare
interpreter's start (``python -c pass``), the bare read and unfold of the calendar, and writing
the same number of files of the same sizes as the drafts the pass made, each fsynced, with one
directory fsync per 64 (what the Maildir sink must do at least); for the idle pass, the
interpreter's start and a read and digest of the calendar (what tells it nothing changed).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
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


# Starts the pass from a small process and reports its wall time, CPU and peak RSS. The kernel
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


def one_pass(
    config_path: Path, profile: bool, env: dict[str, str] | None = None
) -> tuple[float, float, str]:
    """Run ``once`` in a child process: (wall seconds, peak RSS in MB, its output); its CPU
    seconds in ``last_cpu``."""
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
        command[1:3] = ["-m", "pyinstrument", "-m", "recruitmail"]
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
        raise SystemExit(f"recruitmail once failed with exit code {child.returncode}")
    wall, cpu, max_rss = figures.split()
    global last_cpu
    last_cpu = float(cpu)
    return float(wall), int(max_rss) / 1024, output  # ru_maxrss is in KiB on Linux


FOLD = re.compile(rb"\r?\n[ \t]")
FSYNC_BATCH = 64  # drafts per directory fsync in the Maildir sink
last_cpu = 0.0  # user + system seconds of the last pass's process (wait4)


def interpreter_floor(repeat: int) -> float:
    """Median wall seconds of ``python -c pass`` in a fresh process (the floor of any command)."""
    times = []
    for _ in range(max(3, repeat)):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def writing_floor(maildir: Path, scratch: Path) -> tuple[float, int]:
    """Seconds to write as many files of the same sizes as the drafts in ``maildir``, each
    fsynced before its rename, with a directory fsync per ``FSYNC_BATCH``; and the count."""
    sizes = [
        p.stat().st_size
        for p in maildir.rglob("*")
        if p.is_file() and p.parent.name in ("cur", "new")
    ]
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    folder = os.open(scratch, os.O_RDONLY)
    try:
        for n, size in enumerate(sizes):
            temporary, final = scratch / f"{n}.tmp", scratch / f"{n}.eml"
            with open(temporary, "wb") as out:
                out.write(b"x" * size)
                out.flush()
                os.fsync(out.fileno())
            os.rename(temporary, final)
            if (n + 1) % FSYNC_BATCH == 0:
                os.fsync(folder)
        os.fsync(folder)
    finally:
        os.close(folder)
    return time.perf_counter() - started, len(sizes)


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
    parser.add_argument("--profile", action="store_true", help="run each pass under pyinstrument")
    parser.add_argument("--repeat", type=int, default=1, help="runs of both passes (medians)")
    parser.add_argument(
        "--source", action="store_true", help="leave this environment's bytecode settings"
    )
    parser.add_argument(
        "--cold", action="store_true", help="no cache directory: each pass as a new installation's"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        specs, interviews = calendar(args.events)
        ics = workdir / "calendar.ics"
        ics.write_bytes(to_ics(specs))
        print(
            f"calendar: {args.events} events ({interviews} interviews, {len(specs)} VEVENT masters), "
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
            wall, _, _ = one_pass(config(workdir / "warm-up", ics), False, env)
            print(f"warm-up pass (untimed): {wall:.2f} s")
        print(f"{'pass':<14}{'wall time':>12}{'CPU':>9}{'peak RSS':>12}   result")
        figures: dict[str, list[tuple[float, float]]] = {}
        cpus: dict[str, list[float]] = {}  # user + system seconds of each pass's process
        for run in range(max(1, args.repeat)):
            config_path = config(workdir / f"run-{run}", ics)
            for name in ("first (full)", "second (idle)"):
                wall, mb, output = one_pass(config_path, args.profile, env)
                figures.setdefault(name, []).append((wall, mb))
                cpus.setdefault(name, []).append(last_cpu)
                seconds, megabytes = TARGETS[name]
                verdict = "ok" if wall < seconds and mb < megabytes else "OVER TARGET"
                summary = (
                    output.strip().splitlines()[-1] if output.strip() and not args.profile else ""
                )
                print(
                    f"{name:<14}{wall:>10.2f} s{last_cpu:>7.2f} s{mb:>9.0f} MB   {verdict}  {summary}"
                )
                if args.profile:
                    print(output)
        if args.repeat > 1:
            for name, runs in figures.items():
                wall = statistics.median(w for w, _ in runs)
                mb = statistics.median(m for _, m in runs)
                cpu = statistics.median(cpus[name])
                print(
                    f"{name:<14}{wall:>10.2f} s{cpu:>7.2f} s{mb:>9.0f} MB   median of {len(runs)}"
                )
        print(
            "targets: "
            + "; ".join(f"{name} under {t:g} s and {m:.0f} MB" for name, (t, m) in TARGETS.items())
        )
        reading = reading_figures(ics, max(3, args.repeat))
        base = reading["floor"]
        print("reading the calendar in this process (median of at least three):")
        for name, seconds in reading.items():
            ratio = "" if name == "floor" else f"  {seconds / base:>5.1f}× the floor"
            what = {
                "floor": "bare read + unfold",
                "read_ics": "the source (pre-filter)",
                "full parse": "every component parsed",
            }[name]
            print(f"  {name:<11}{seconds * 1000:>8.0f} ms  {what}{ratio}")
        started = time.perf_counter()
        hashlib.sha256(ics.read_bytes()).hexdigest()
        digest = time.perf_counter() - started
        interpreter = interpreter_floor(args.repeat)
        writes, drafts = writing_floor(workdir / "run-0" / "Maildir", workdir / "floor-writes")
        floors = {
            "first (full)": (interpreter + base + writes, f"python -c pass {interpreter * 1000:.0f} ms"
                             f" + read and unfold {base * 1000:.0f} ms + {drafts} files written"
                             f" and fsynced {writes * 1000:.0f} ms"),
            "second (idle)": (interpreter + digest, f"python -c pass {interpreter * 1000:.0f} ms"
                              f" + read and digest {digest * 1000:.0f} ms"),
        }  # fmt: skip
        print(
            f"\ngoals, this run (median of {len(next(iter(figures.values())))}; floors measured after the passes)"
        )
        print(
            f"{'goal':<28}{'figure':>10}{'goal':>9}{'floor':>10}{'ratio':>8}{'peak':>8}{'goal':>9}"
        )
        for name, runs in figures.items():
            wall = statistics.median(w for w, _ in runs)
            mb = statistics.median(m for _, m in runs)
            seconds, megabytes = TARGETS[name]
            floor_seconds, how = floors[name]
            verdict = "ok" if wall < seconds and mb < megabytes else "OVER"
            print(
                f"{name + ' pass':<28}{wall:>8.2f} s{'< ' + format(seconds, 'g') + ' s':>9}"
                f"{floor_seconds:>8.2f} s{wall / floor_seconds:>7.1f}×{mb:>5.0f} MB"
                f"{'< ' + format(megabytes, '.0f') + ' MB':>9}   {verdict}; "
                f"CPU {statistics.median(cpus[name]):.2f} s; floor: {how}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
