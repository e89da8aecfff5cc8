"""What each hostile calendar of the corpus costs one ``recruitmail once`` pass, next to a clean one.

For every entry of ``tests/hostile/corpus.py``: the CPU seconds (user + system, from the resource
usage of the finished children), the wall time and the peak memory (the fresh process's own
``VmHWM``) of a fresh ``python -m recruitmail once`` process over the entry's calendar, beside the
same figures for the clean calendar (the ordinary interview alone). An entry more than 2 s of CPU
or 50 MB above the clean pass is flagged; the wall time is printed too, but on a machine shared
with other work it stretches at random, so it only flags a pass that had to be killed after
240 s (its figures are then a lower bound). Every entry's outcome is judged as the corpus test
judges it (the last column). No assertions: this prints figures.

With ``--repeat N`` every entry (and the clean calendar, at least three times) runs N times and
the medians are printed; the clean calendar is measured in the same run, first.

    python bench/hostile.py                 # every entry
    python bench/hostile.py --repeat 3      # every entry three times: medians
    python bench/hostile.py --light         # leave out the heavy ones (megabytes, runaway rules)
    python bench/hostile.py NAME [NAME …]   # only these entries
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hostile.corpus import ENTRIES  # noqa: E402
from tests.hostile.model import Entry  # noqa: E402
from tests.hostile.runner import PASS_TIMEOUT, Result, run_entry, verdict  # noqa: E402

CPU_BUDGET = 2.0
"""CPU seconds a pass may spend above the clean pass."""
MEGABYTES_BUDGET = 50.0


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    entry: Entry, root: Path, *, hostile: bool = True
) -> tuple[float, float, float, Result]:
    """One fresh run of ``entry``: CPU seconds per pass, the longest pass's wall seconds, the
    largest peak memory in MB, and the result (for the verdict)."""
    before = children_cpu()
    result = run_entry(entry, root, hostile=hostile, fresh=True)
    cpu = (children_cpu() - before) / max(1, len(result.runs))
    seconds = max(run.seconds for run in result.runs)
    megabytes = max(run.max_rss_mb for run in result.runs)
    return cpu, seconds, megabytes, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="entries to run (default: all)")
    parser.add_argument("--light", action="store_true", help="leave out the heavy entries")
    parser.add_argument("--repeat", type=int, default=1, help="runs per entry (medians)")
    args = parser.parse_args()
    entries = [e for e in ENTRIES if not args.names or e.name in args.names]
    if args.light:
        entries = [e for e in entries if not e.heavy]
    repeat = max(1, args.repeat)
    median = statistics.median
    with tempfile.TemporaryDirectory(prefix="recruitmail-bench-hostile-") as directory:
        root = Path(directory)
        # One pass on a busy machine is noise: the clean figure is a median of three or more.
        cleans = [
            measure(ENTRIES[0], root / f"clean-{n}", hostile=False) for n in range(max(3, repeat))
        ]
        clean_cpu = median(c[0] for c in cleans)
        clean_s = median(c[1] for c in cleans)
        clean_mb = median(c[2] for c in cleans)
        print(
            f"clean calendar: {clean_cpu:.2f} s CPU, {clean_s:.2f} s, {clean_mb:.0f} MB "
            f"(median of {len(cleans)} fresh processes)"
        )
        print(
            f"budget per entry: clean + {CPU_BUDGET:.0f} s CPU, clean + {MEGABYTES_BUDGET:.0f} MB"
            f"; figures are medians of {repeat} run(s)\n"
        )
        header = (
            f"{'entry':34} {'passes':>6} {'CPU s':>6} {'seconds':>8} {'MB':>6} {'+CPU s':>7} "
            f"{'+s':>7} {'+MB':>6}  verdict"
        )
        print(header)
        print("-" * len(header))
        over: list[str] = []
        for entry in entries:
            runs = [measure(entry, root / f"{entry.name}-{n}") for n in range(repeat)]
            cpu, seconds, megabytes = (median(r[i] for r in runs) for i in range(3))
            results = [r[3] for r in runs]
            extra_cpu, extra_s, extra_mb = cpu - clean_cpu, seconds - clean_s, megabytes - clean_mb
            flags = []
            if any(run.timed_out for result in results for run in result.runs):
                flags.append(f"KILLED after {PASS_TIMEOUT:.0f} s")
            if extra_cpu > CPU_BUDGET:
                flags.append("OVER TIME")
            if extra_mb > MEGABYTES_BUDGET:
                flags.append("OVER MEMORY")
            problems = [p for result in results for p in verdict(entry, result)]
            judged = "ok" if not problems else f"{len(problems)} problem(s): {problems[0][:60]}"
            if flags:
                over.append(entry.name)
            print(
                f"{entry.name:34} {len(results[0].runs):>6} {cpu:>6.2f} {seconds:>8.2f} "
                f"{megabytes:>6.0f} {extra_cpu:>+7.2f} {extra_s:>+7.2f} {extra_mb:>+6.0f}  "
                f"{' '.join(flags + [judged])}",
                flush=True,
            )
    print(f"\n{len(entries) - len(over)} of {len(entries)} entries within budget")
    if over:
        print("over budget: " + ", ".join(over))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
