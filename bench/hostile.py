"""What each hostile calendar of the corpus costs one ``recruitmail once`` pass, next to a clean one.

For every entry of ``tests/hostile/corpus.py``: the wall time and peak memory (RSS, from the
child's own resource usage) of a fresh ``python -m recruitmail once`` process over the entry's calendar,
beside the same figures for the clean calendar (the ordinary interview alone, median of three). An entry
more than 2 s or 50 MB above the clean pass is flagged; a pass that had not ended after 240 s was
killed (its figures are then a lower bound). No assertions: this prints figures.

Beside the wall time it prints the CPU seconds the entry's processes used (user + system, from
the resource usage of the finished children), which a busy machine distorts far less: on a
machine shared with other work, compare the CPU column too.

    python bench/hostile.py                 # every entry
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
from tests.hostile.runner import PASS_TIMEOUT, run_entry, verdict  # noqa: E402

SECONDS_BUDGET = 2.0
MEGABYTES_BUDGET = 50.0


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="entries to run (default: all)")
    parser.add_argument("--light", action="store_true", help="leave out the heavy entries")
    args = parser.parse_args()
    entries = [e for e in ENTRIES if not args.names or e.name in args.names]
    if args.light:
        entries = [e for e in entries if not e.heavy]
    with tempfile.TemporaryDirectory(prefix="recruitmail-bench-hostile-") as directory:
        root = Path(directory)
        # The clean figure is the median of three passes: one pass on a busy machine is noise.
        cleans = []
        clean_cpus = []
        for n in range(3):
            before = children_cpu()
            cleans.append(
                run_entry(ENTRIES[0], root / f"clean-{n}", hostile=False, fresh=True).runs[0]
            )
            clean_cpus.append(children_cpu() - before)
        clean = sorted(cleans, key=lambda run: run.seconds)[1]
        clean_cpu = statistics.median(clean_cpus)
        print(
            f"clean calendar: {clean.seconds:.2f} s, {clean_cpu:.2f} s CPU, "
            f"{clean.max_rss_mb:.0f} MB (median of three fresh processes)"
        )
        print(
            f"budget per entry: clean + {SECONDS_BUDGET:.0f} s, clean + {MEGABYTES_BUDGET:.0f} MB\n"
        )
        header = (
            f"{'entry':34} {'passes':>6} {'seconds':>8} {'CPU s':>6} {'MB':>6} {'+s':>7} "
            f"{'+CPU s':>7} {'+MB':>6}  verdict"
        )
        print(header)
        print("-" * len(header))
        over: list[str] = []
        for entry in entries:
            before = children_cpu()
            result = run_entry(entry, root / entry.name, fresh=True)
            cpu = (children_cpu() - before) / max(1, len(result.runs))  # per pass
            seconds = max(run.seconds for run in result.runs)
            megabytes = max(run.max_rss_mb for run in result.runs)
            extra_s, extra_mb = seconds - clean.seconds, megabytes - clean.max_rss_mb
            flags = []
            if any(run.timed_out for run in result.runs):
                flags.append(f"KILLED after {PASS_TIMEOUT:.0f} s")
            if extra_s > SECONDS_BUDGET:
                flags.append("OVER TIME")
            if extra_mb > MEGABYTES_BUDGET:
                flags.append("OVER MEMORY")
            problems = verdict(entry, result)
            judged = "ok" if not problems else f"{len(problems)} problem(s): {problems[0][:60]}"
            if flags:
                over.append(entry.name)
            print(
                f"{entry.name:34} {len(result.runs):>6} {seconds:>8.2f} {cpu:>6.2f} "
                f"{megabytes:>6.0f} {extra_s:>+7.2f} {cpu - clean_cpu:>+7.2f} {extra_mb:>+6.0f}  "
                f"{' '.join(flags + [judged])}",
                flush=True,
            )
    print(f"\n{len(entries) - len(over)} of {len(entries)} entries within budget")
    if over:
        print("over budget: " + ", ".join(over))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
