"""Benchmark: several ``recruitmail run`` instances on one PostgreSQL over the Graph fake.

The strict Graph fake runs in a process of its own (``bench/scale.py``'s ``FakeProcess``, ``--events``
occurrences per mailbox, none of them interviews, so every pass after the first is idle) with
``--latency-ms`` per request; PostgreSQL is the tests' own throwaway server (``tests/postgres.py``).
``--instances`` real ``recruitmail run`` processes share ``--mailboxes`` mailboxes; once every
mailbox had its first pass and the leases are shared, each instance gets SIGHUP, which makes every
mailbox it holds due at once (a reload schedules them now, and again one interval later), and the
bench reads from the fake's request records and the database:

- idle pass wall time: from the first to the last calendar request of the round that comes due
  one interval after the SIGHUP (the SIGHUP's own round reopens every runner: not measured);
- Graph requests per mailbox in that round;
- RSS of each instance (``VmRSS``, and its peak ``VmHWM``);
- PostgreSQL transactions of the round (``pg_stat_database.xact_commit`` before the round comes
  due and after it, each read after the statistics were flushed; reads in autocommit count as
  transactions too), beside the rate of a quiet stretch after it (the lease rounds alone);
- failover: one instance is SIGKILLed; the time until each of its mailboxes had a pass at another
  instance (a lease is ¾ of an interval: expected between ¾ and two intervals).

The same idle round is then measured for one instance on SQLite (the default), the same mailboxes.
``--repeat`` idle rounds each; medians are printed.

    python bench/fleet.py [--mailboxes 300] [--instances 3] [--events 3] [--latency-ms 50]
                          [--interval 60] [--repeat 3]

The issue's size is ``--mailboxes 10000``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale import FakeProcess, recruiter, write_config  # noqa: E402

from tests.postgres import server  # noqa: E402
from tests.servers import spawn, stop  # noqa: E402

STATS_FLUSH = 11.0  # seconds: an idle backend flushes its statistics within ten


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=300)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--events", type=int, default=3, help="event occurrences per mailbox")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--interval", type=int, default=60, help="service.interval_seconds (a lease is ¾ of it)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    addresses = [recruiter(n).address for n in range(args.mailboxes)]
    print(
        f"{args.mailboxes:,} mailboxes × {args.events} events, {args.latency_ms:.0f} ms per "
        f"request, interval {args.interval} s; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start"
    )
    with tempfile.TemporaryDirectory(prefix="recruitmail-fleet-bench-") as tmp:
        root = Path(tmp)
        (root / "graph").mkdir()
        fake = FakeProcess(root / "graph", args.mailboxes, args.events)
        try:
            fake.call("latency", args.latency_ms / 1000)
            url = server().new_database()
            fleet = measure(root / "pg", fake, args, addresses, url, args.instances)
            single = (
                None
                if args.skip_sqlite
                else measure(root / "sqlite", fake, args, addresses, None, 1)
            )
        finally:
            fake.stop()
    report(args, fleet, single)
    return 0


def measure(
    directory: Path,
    fake: FakeProcess,
    args: Any,
    addresses: list[str],
    url: str | None,
    count: int,
) -> dict[str, Any]:
    directory.mkdir()
    config = write_config(
        directory / "recruitmail.toml", directory / "state", fake.options, args, args.interval
    )
    # No fresh start after the first round (docs/OPERATIONS.md, "Memory"): the figures in
    # docs/BENCHMARKS.md were taken without it, and its restart would mix into the rounds timed.
    service = "[service]\nfresh_start_mb = 0\n" + (f'state = "{url}"\n' if url else "")
    config.write_text(config.read_text().replace("[service]\n", service, 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECRUITMAIL_")}
    env["PYTHONPATH"] = str(ROOT)
    processes = []
    began = time.monotonic()
    for n in range(count):
        with (directory / f"instance-{n}.log").open("wb") as log:
            processes.append(
                spawn(
                    [sys.executable, "-m", "recruitmail", "--config", str(config), "run"],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    figures: dict[str, Any] = {"instances": count, "rounds": []}
    try:
        wanted = {a.lower() for a in addresses}
        since = len(fake.call("requests", 0))
        while True:  # every mailbox's first pass
            asked = {r.mailbox for r in fake.call("requests", since) if r.what == "calendar delta"}
            if wanted <= asked and (url is None or shared(url, count)):
                break
            if any(p.poll() is not None for p in processes):
                raise SystemExit(f"an instance died; see {directory}")
            time.sleep(2.0)
        figures["first"] = time.monotonic() - began
        print(f"{'PostgreSQL' if url else 'SQLite'}, {count} instance(s): first passes done "
              f"after {figures['first']:.0f} s")  # fmt: skip
        time.sleep(3.0)  # the last first passes' drafts and look-ups settle
        for n in range(args.repeat):
            figures["rounds"].append(idle_round(fake, processes, wanted, url, args.interval))
            r = figures["rounds"][-1]
            print(
                f"  idle round {n + 1}: {r['wall']:.2f} s, {r['per_mailbox']:.2f} requests per "
                "mailbox"
                + (
                    f", {r['xacts']} transactions in {r['window_seconds']:.0f} s (lease rounds "
                    f"alone: {r['quiet']} in {r['quiet_seconds']:.0f} s)"
                    if url
                    else ""
                )
            )
        figures["rss"] = [rss(p.pid) for p in processes]
        if url and count > 1:
            figures["failover"] = failover(fake, processes, url, wanted)
    finally:
        for process in processes:
            stop(process)
    return figures


def shared(url: str, count: int) -> bool:
    """Every lease held, by ``count`` instances."""
    from recruitmail.daemon.state import State

    state = State(url)
    try:
        now = state.database_time()
        holders = [lease.holder for lease in state.leases() if lease.expires_at > now]
    finally:
        state.close()
    return all(holders) and len(set(holders)) == count


def xact_commit(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def idle_round(
    fake: FakeProcess, processes: list[Any], wanted: set[str], url: str | None, interval: float
) -> dict[str, Any]:
    # SIGHUP: a reload schedules every mailbox now (its runners opened again), and its next pass
    # one interval later, all due together with their runners kept: that round is measured.
    since = len(fake.call("requests", 0))
    signalled = time.monotonic()
    for process in processes:
        os.kill(process.pid, signal.SIGHUP)
    wait_for_round(fake, since, signalled, wanted)
    due = signalled + interval
    if url:
        time.sleep(max(0.0, due - STATS_FLUSH - time.monotonic()))
        before = xact_commit(url)
    since = len(fake.call("requests", 0))
    records = wait_for_round(fake, since, due, wanted)
    time.sleep(1.0)  # the passes' last writes
    delta = [r for r in records if r.what == "calendar delta"]
    first, last = min(r.arrived for r in delta), max(r.arrived for r in delta)
    window = [r for r in fake.call("requests", since) if r.arrived >= due]
    found: dict[str, Any] = {
        "wall": last - first,
        "per_mailbox": sum(1 for r in window if r.mailbox) / len(wanted),
    }
    if url:
        time.sleep(STATS_FLUSH)
        after = xact_commit(url)
        found["xacts"] = after - before
        # The lease rounds alone, over a quiet stretch before the next round comes due.
        quiet_window = time.monotonic()
        quiet_before = xact_commit(url)
        time.sleep(STATS_FLUSH)
        found["quiet"] = xact_commit(url) - quiet_before
        found["quiet_seconds"] = time.monotonic() - quiet_window
        found["window_seconds"] = STATS_FLUSH + (last - due) + 1 + STATS_FLUSH
    return found


def wait_for_round(fake: FakeProcess, since: int, after: float, wanted: set[str]) -> list[Any]:
    """The requests from ``after`` on, once every mailbox's calendar was asked."""
    while True:
        records = [r for r in fake.call("requests", since) if r.arrived >= after]
        if wanted <= {r.mailbox for r in records if r.what == "calendar delta"}:
            return records
        time.sleep(0.5)


def rss(pid: int) -> tuple[float, float]:
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def failover(fake: FakeProcess, processes: list[Any], url: str, wanted: set[str]) -> float:
    from recruitmail.daemon.state import State

    victim = processes[0]
    state = State(url)
    try:
        now = state.database_time()
        theirs = {
            lease.mailbox.lower()
            for lease in state.leases()
            if lease.holder.rsplit("-", 2)[1] == str(victim.pid) and lease.expires_at > now
        }
    finally:
        state.close()
    since = len(fake.call("requests", 0))
    os.killpg(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    while True:
        records = fake.call("requests", since)
        seen: dict[str, float] = {}
        for r in records:
            if r.what == "calendar delta" and r.mailbox in theirs:
                seen.setdefault(r.mailbox, r.arrived)
        if theirs <= set(seen):
            return max(seen.values()) - killed
        time.sleep(0.5)


def report(args: Any, fleet: dict[str, Any], single: dict[str, Any] | None) -> None:
    def med(figures: dict[str, Any], key: str) -> float:
        return statistics.median(r[key] for r in figures["rounds"])

    print(f"\n{args.mailboxes:,} mailboxes, medians of {args.repeat} idle rounds")
    print(f"{'':<46}{'PostgreSQL, ' + str(fleet['instances']) + ' instances':>26}"
          f"{'SQLite, 1 instance':>22}")  # fmt: skip

    def row(name: str, a: str, b: str) -> None:
        print(f"{name:<46}{a:>26}{b:>22}")

    row("first passes of every mailbox", f"{fleet['first']:.0f} s",
        f"{single['first']:.0f} s" if single else "-")  # fmt: skip
    row("idle pass wall time (first to last request)", f"{med(fleet, 'wall'):.2f} s",
        f"{med(single, 'wall'):.2f} s" if single else "-")  # fmt: skip
    row("Graph requests per mailbox", f"{med(fleet, 'per_mailbox'):.2f}",
        f"{med(single, 'per_mailbox'):.2f}" if single else "-")  # fmt: skip
    row("RSS per instance (now / peak)",
        ", ".join(f"{a:.0f}/{b:.0f} MB" for a, b in fleet["rss"]),
        ", ".join(f"{a:.0f}/{b:.0f} MB" for a, b in single["rss"]) if single else "-")  # fmt: skip
    row("PostgreSQL transactions in the round's window", f"{med(fleet, 'xacts'):.0f}", "-")
    row(
        "  lease rounds alone, per second",
        f"{statistics.median(r['quiet'] / r['quiet_seconds'] for r in fleet['rounds']):.1f}",
        "-",
    )
    if "failover" in fleet:
        row(
            f"failover after SIGKILL (interval {args.interval} s)",
            f"{fleet['failover']:.1f} s",
            "-",
        )


if __name__ == "__main__":
    raise SystemExit(main())
