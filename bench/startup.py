"""Benchmark: what a ``recruitmail`` command costs before it does anything, against the floor.

Runs, each in a fresh process, ``python -c pass`` (the floor: the interpreter and the virtual
environment's start-up), ``recruitmail --help``, ``recruitmail --version``, ``recruitmail check``,
``recruitmail status --offline`` and ``recruitmail once`` on a small idle calendar (an ICS file
with a handful of events and a Maildir, as ``make demo`` uses; a first, untimed pass has already
drafted what was due, so the timed passes find nothing to do). ``once`` runs a second time with
an empty template cache, to show what compiling every template costs. The commands take turns,
run after run, so that the load of the machine falls on all of them alike. Prints the median
wall and CPU time of each, with its ratio to the floor; targets: ``--help`` under 150 ms and the
idle ``once`` under 500 ms wall. Figures are printed, never asserted.

The commands run as an installed recruitmail does: from compiled bytecode (pip compiles every
module when it installs the wheel). A source tree run with ``PYTHONDONTWRITEBYTECODE`` would
compile every module of the project again in every process, so the children get a bytecode
directory of their own (``PYTHONPYCACHEPREFIX``) and a first, untimed round of every command
fills it; ``--source`` measures without it.

With ``--against REV`` (a git revision) or ``--against DIR`` (a tree laid out as installed:
``DIR/recruitmail/{contracts,daemon,connectors,templates}``), the same commands of that
recruitmail run too, taking turns with this tree's in the same rounds, each tree with a
workspace of its own (its own state, compiled templates and remembered check): a before and
after measured under the same load. Give it twice to compare two revisions exactly
(``--against HEAD~1 --against HEAD``); this tree, uncommitted edits included, always runs.

Last, what the idle ``once`` of this tree imports, by top-level package: the median over
three runs under ``python -X importtime`` of each package's own import time (the modules'
bodies, pydantic's model building in ``recruitmail`` included), largest first; ``--imports 0``
leaves it out.

    python bench/startup.py [--runs 10] [--keep DIR] [--source] [--against REV|DIR ...]

Where the time of one command goes: ``python -X importtime -m recruitmail --help``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

NOW = "2026-12-09T10:00:00+01:00"  # a Wednesday
TARGETS_MS = {"recruitmail --help": 150.0, "recruitmail once (idle)": 500.0}

CONFIG = """\
[company]
name = "Nordljus AB"
domains = ["nordljus.se"]
country = "SE"
time_zone = "Europe/Stockholm"

[service]
state_dir = "{root}/state"
log_level = "WARNING"

[[mailboxes]]
address = "lisa.ek@nordljus.se"
name = "Lisa Ek"
language = "sv"

[mailboxes.source]
type = "ics"
path = "{root}/calendar.ics"

[mailboxes.sink]
type = "maildir"
path = "{root}/Maildir"
"""

EVENT = """\
BEGIN:VEVENT
UID:{uid}@nordljus.se
DTSTAMP:20261201T080000Z
DTSTART;TZID=Europe/Stockholm:{start}
DTEND;TZID=Europe/Stockholm:{end}
SUMMARY:{subject}
ORGANIZER;CN=Lisa Ek:mailto:lisa.ek@nordljus.se
ATTENDEE;CN=Lisa Ek;PARTSTAT=ACCEPTED:mailto:lisa.ek@nordljus.se
ATTENDEE;CN=Erik Holm;PARTSTAT=ACCEPTED:mailto:erik.holm@nordljus.se
{guest}END:VEVENT
"""


def calendar() -> str:
    """Two interviews (one past, one next week) and a few internal meetings around ``NOW``."""
    events = [
        ("intervju-anna", "20261207T100000", "20261207T110000", "Intervju", "anna@example.com"),
        ("intervju-bo", "20261215T140000", "20261215T150000", "Intervju", "bo@example.org"),
        ("teammote-1", "20261208T090000", "20261208T093000", "Teammöte", ""),
        ("lunch-1", "20261209T120000", "20261209T130000", "Lunch", ""),
        ("planering-1", "20261211T130000", "20261211T140000", "Planering", ""),
    ]
    body = "".join(
        EVENT.format(
            uid=uid,
            start=start,
            end=end,
            subject=subject,
            guest=f"ATTENDEE;CN=Kandidat;PARTSTAT=ACCEPTED:mailto:{guest}\n" if guest else "",
        )
        for uid, start, end, subject, guest in events
    )
    text = f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//recruitmail//startup bench//EN\n{body}END:VCALENDAR\n"
    return text.replace("\n", "\r\n")


def workspace(root: Path) -> Path:
    (root / "calendar.ics").write_bytes(calendar().encode("utf-8"))
    for folder in ("cur", "new", "tmp"):
        (root / "Maildir" / folder).mkdir(parents=True, exist_ok=True)
    config = root / "recruitmail.toml"
    config.write_text(CONFIG.format(root=root), encoding="utf-8")
    return config


def recruitmail_command() -> list[str]:
    """The installed ``recruitmail`` script beside this Python, else ``python -m recruitmail``."""
    script = Path(sys.executable).parent / "recruitmail"
    return [str(script)] if script.exists() else [sys.executable, "-m", "recruitmail"]


@dataclass
class Timings:
    command: list[str]
    fresh_cache: bool = False
    env: dict[str, str] = field(default_factory=dict)
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    last_output: str = ""


def run(timings: Timings, env: dict[str, str], scratch: Path) -> None:
    """One run of the command in a fresh process: its wall time and its own CPU time."""
    child_env = {**env, **timings.env}
    if timings.fresh_cache:
        cache = Path(tempfile.mkdtemp(dir=scratch))
        child_env["CACHE_DIRECTORY"] = str(cache)
    started = time.perf_counter()
    child = subprocess.Popen(
        timings.command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env,
    )
    output = child.stdout.read() if child.stdout else b""
    # wait4 gives this child's own resource usage, not that of every child so far.
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if child.stdout:
        child.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        print(output.decode(errors="replace"), file=sys.stderr)
        raise SystemExit(f"{' '.join(timings.command)} failed")
    timings.walls.append(wall)
    timings.cpus.append(usage.ru_utime + usage.ru_stime)
    timings.last_output = output.decode(errors="replace")
    if timings.fresh_cache:
        shutil.rmtree(child_env["CACHE_DIRECTORY"], ignore_errors=True)


def imports_by_package(command: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    """Median self import time (ms) per top-level package of ``command`` under ``-X importtime``."""
    totals: dict[str, list[float]] = {}
    for run_number in range(runs):
        child = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "recruitmail", *command],
            capture_output=True,
            text=True,
            env=env,
        )
        if child.returncode != 0:
            raise SystemExit(f"recruitmail {' '.join(command)} failed:\n{child.stderr}")
        found: dict[str, float] = {}
        for line in child.stderr.splitlines():
            fields = line.removeprefix("import time:").split("|")
            if not line.startswith("import time:") or not fields[0].strip().isdigit():
                continue  # the header line
            package = fields[2].strip().partition(".")[0]
            found[package] = found.get(package, 0.0) + int(fields[0]) / 1000
        for package in set(totals) | set(found):
            totals.setdefault(package, [0.0] * run_number).append(found.get(package, 0.0))
    return {package: statistics.median(times) for package, times in totals.items()}


def lay_out(revision: str, into: Path) -> Path:
    """The recruitmail of a git revision as installed: ``into/recruitmail/{daemon,connectors,…}``
    (the mapping of ``[tool.setuptools.package-dir]``), for ``PYTHONPATH``."""
    repository = Path(__file__).resolve().parent.parent
    source = into / "source"
    source.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(repository), "archive", revision],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    package = into / "tree" / "recruitmail"
    shutil.copytree(source / "recruitmail", package)
    for folder in ("daemon", "connectors", "templates"):
        shutil.copytree(source / folder, package / folder)
    return into / "tree"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (median)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument(
        "--source",
        action="store_true",
        help="leave the bytecode settings of this environment as they are",
    )
    parser.add_argument(
        "--against",
        metavar="REV|DIR",
        action="append",
        default=[],
        help="also time the recruitmail of this git revision (or tree laid out as installed); "
        "may be given more than once",
    )
    parser.add_argument(
        "--imports",
        type=int,
        default=3,
        metavar="RUNS",
        help="runs of this tree's idle once under -X importtime (0: leave the breakdown out)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = (args.keep or Path(tmp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        # The environment a user's shell gives: no configuration overrides, no systemd cache.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().startswith("RECRUITMAIL_") and k != "CACHE_DIRECTORY"
        }
        if not args.source:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(root / "bytecode")
        recruitmail = recruitmail_command()
        trees: list[tuple[str, Path, dict[str, str]]] = [("", root, {})]
        for number, against in enumerate(args.against, 1):
            place = root / f"against-{number}"
            other = Path(against)
            if not other.is_dir():
                other = lay_out(against, place)
            trees.append((f"{against}: ", place, {"PYTHONPATH": str(other.resolve())}))
        rows = {"python -c pass (floor)": Timings([sys.executable, "-c", "pass"])}
        firsts: list[Timings] = []
        for label, place, tree_env in trees:
            place.mkdir(parents=True, exist_ok=True)
            with_config = [*recruitmail, "--config", str(workspace(place))]
            commands = {
                "recruitmail --help": ([*recruitmail, "--help"], False),
                "recruitmail --version": ([*recruitmail, "--version"], False),
                "recruitmail check": ([*with_config, "check"], False),
                "recruitmail status --offline": ([*with_config, "status", "--offline"], False),
                "recruitmail once (idle)": ([*with_config, "once", "--now", NOW], False),
                "recruitmail once (idle), empty template cache": (
                    [*with_config, "once", "--now", NOW],
                    True,
                ),
            }
            for name, (command, fresh) in commands.items():
                rows[label + name] = Timings(command, fresh, tree_env)
            firsts.append(Timings([*with_config, "once", "--now", NOW], env=tree_env))
        scratch = root / "scratch"
        scratch.mkdir(exist_ok=True)
        # The first pass drafts what is due and makes the state directory; a round of every
        # command then fills the caches (bytecode, compiled templates, days off). Not timed.
        for first in firsts:
            run(first, env, scratch)
        for timings in rows.values():
            run(Timings(timings.command, timings.fresh_cache, timings.env), env, scratch)
        load_before = os.getloadavg()[0]
        for _ in range(args.runs):
            for timings in rows.values():
                run(timings, env, scratch)
        load_after = os.getloadavg()[0]

        floor = rows["python -c pass (floor)"]
        floor_wall, floor_cpu = statistics.median(floor.walls), statistics.median(floor.cpus)
        print(f"command: {' '.join(recruitmail)}; --now {NOW}")
        for (label, place, tree_env), first in zip(trees, firsts, strict=True):
            where = tree_env.get("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
            print(f"{label or 'this tree: '}{where}; calendar {place / 'calendar.ics'}")
            print(f"  first pass (untimed): {first.last_output.strip()}")
        print(
            f"{args.runs} runs of each, medians; load average {load_before:.1f} → {load_after:.1f}"
        )
        width = max(46, *(len(name) + 2 for name in rows))
        print(f"{'':<{width}}{'wall':>9}{'CPU':>9}{'wall/floor':>12}{'CPU/floor':>11}   target")
        for name, timings in rows.items():
            wall, cpu = statistics.median(timings.walls), statistics.median(timings.cpus)
            target = next((t for goal, t in TARGETS_MS.items() if name.endswith(goal)), None)
            verdict = ""
            if target is not None:
                verdict = f"< {target:.0f} ms wall: {'ok' if wall * 1000 < target else 'OVER'}"
            print(
                f"{name:<{width}}{wall * 1000:>6.0f} ms{cpu * 1000:>6.0f} ms"
                f"{wall / floor_wall:>11.1f}×{cpu / floor_cpu:>10.1f}×   {verdict}"
            )
        idle = rows["recruitmail once (idle)"].last_output.strip().splitlines()
        print(f"idle pass said: {idle[-1] if idle else '(nothing)'}")
        print(
            "bytecode: "
            + ("as this environment has it (--source)" if args.source else "compiled, as installed")
        )
        print("\ngoals (median wall time; floor: python -c pass in the same run)")
        print(f"{'goal':<{width}}{'figure':>10}{'goal':>10}{'floor':>10}{'ratio':>8}")
        for label, _, _ in trees:
            for name, target in TARGETS_MS.items():
                wall = statistics.median(rows[label + name].walls) * 1000
                print(
                    f"{label + name:<{width}}{wall:>7.0f} ms{'< ' + format(target, '.0f') + ' ms':>10}"
                    f"{floor_wall * 1000:>7.0f} ms{wall / (floor_wall * 1000):>7.1f}×   "
                    + ("ok" if wall < target else "OVER")
                )
        if args.imports:
            idle = rows["recruitmail once (idle)"].command[len(recruitmail) :]
            by_package = imports_by_package(idle, env, args.imports)
            total = sum(by_package.values())
            print(
                f"\nwhat the idle once imports (this tree; median of {args.imports} runs under "
                f"-X importtime, own time per top-level package): {total:.0f} ms in all"
            )
            ranked = sorted(by_package.items(), key=lambda item: -item[1])
            for package, took in ranked[:12]:
                print(f"  {package:<28}{took:>7.1f} ms")
            rest = sum(took for _, took in ranked[12:])
            print(f"  {f'{len(ranked) - 12} others':<28}{rest:>7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
