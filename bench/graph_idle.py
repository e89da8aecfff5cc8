"""Benchmark: what one idle sync cycle costs with Microsoft 365, per mailbox and over many mailboxes.

Starts the strict fake Graph on loopback, gives every mailbox one interview, syncs them all once
(the initial full sync), then adds latency to every request and times idle cycles: each mailbox
follows its delta link and finds nothing new. Each cycle is timed twice, with one request per
mailbox (``--workers`` at a time) and with the links asked ahead in JSON batches of 20
(``GraphCalendarSource.probe_many``, ``PROBE_THREADS`` batches at a time) before the syncs, which
then send nothing. Prints the requests per idle mailbox (target 1), the HTTP round trips, the wall
time of each cycle (the median of ``--repeat``) and how often the app signed in (target 1: every
mailbox of one app shares one token).

    python bench/graph_idle.py [--mailboxes 1000] [--latency-ms 50] [--workers 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recruitmail.connectors.microsoft import GraphCalendarSource, SourceOptions, open_source  # noqa: E402
from recruitmail.contracts.connector import ConnectorContext  # noqa: E402
from recruitmail.contracts.models import Period  # noqa: E402
from recruitmail.daemon.scheduler import BATCH_SIZE, PROBE_THREADS  # noqa: E402
from tests.fakes.graph import FakeGraph  # noqa: E402
from tests.scenario.spec import EventSpec, Who  # noqa: E402

STOCKHOLM = ZoneInfo("Europe/Stockholm")
WINDOW = Period(datetime(2026, 3, 1, tzinfo=STOCKHOLM), datetime(2026, 7, 1, tzinfo=STOCKHOLM))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=100, help="mailboxes synced at once")
    parser.add_argument("--repeat", type=int, default=3, help="idle cycles of each kind")
    args = parser.parse_args()

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

        with ThreadPoolExecutor(max_workers=args.workers) as pool:
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
    print(
        f"wall time of one idle cycle:       {elapsed:.2f} s  (target < 10 s; {args.workers} at once)"
    )
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
