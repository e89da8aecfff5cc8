"""The ``recruitmail`` command line: run, once, preview, check, status, forget, close, login.

Each command imports what it needs when it runs: ``--help``, ``--version`` and a mistyped
argument answer without loading pydantic, Jinja2, Babel, holidays or a connector
(``tests/test_startup.py``), and ``status`` does without the renderer.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from recruitmail.contracts.errors import ConfigError, RecruitmailError
from recruitmail.daemon import __version__

if TYPE_CHECKING:
    from recruitmail.daemon.settings import Settings
    from recruitmail.daemon.state import Problem, State


def parse_now(value: str | None) -> datetime:
    """``--now``: an ISO 8601 instant with an offset (a date-time without one is taken as UTC)."""
    if not value:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"--now {value!r}: use ISO 8601, e.g. 2026-12-03T09:00:00+01:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _setup(args: argparse.Namespace) -> Settings:
    from recruitmail.daemon.service import setup_logging
    from recruitmail.daemon.settings import load_settings

    settings = load_settings(args.config)
    level = "DEBUG" if getattr(args, "verbose", False) else settings.service.log_level
    setup_logging(level, settings.service.log_format)
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    from recruitmail.daemon.scheduler import run

    return run(Path(args.config) if args.config else None)


def cmd_once(args: argparse.Namespace) -> int:
    from recruitmail.daemon.runtime import describe, run_once, validate
    from recruitmail.daemon.state import State
    from recruitmail.daemon.workdays import tables_kept_in

    settings = _setup(args)
    # A pass renders only the mails that are due, often none: the templates are loaded at the
    # first one, after the remembered start-up check is verified again (~30 ms of an idle pass).
    renderer = validate(settings, load_templates=False)
    state = State.open(settings.service)
    try:
        _refuse_beside_running_instances(state, settings.service.interval_seconds)
        # Days off worked out once are kept beside the compiled templates: a pass that finds
        # them there never loads the holidays package (~0.15 s).
        with tables_kept_in(renderer.cache_dir):
            outcome = run_once(settings, state, renderer, parse_now(args.now), only=_only(args))
    finally:
        state.close()
    for report in outcome.reports:
        print(f"{report.mailbox}: {describe(report)}")
    for mailbox, problem in outcome.failures.items():
        print(f"{mailbox}: FAILED: {problem}", file=sys.stderr)
    return 1 if outcome.failures else 0


def _refuse_beside_running_instances(state: State, interval: float) -> None:
    """`once` takes no lease: on a PostgreSQL state that running instances share it would write
    beside them, so it refuses while one has said it is alive within the last interval."""
    if state.backend != "postgresql":
        return  # SQLite: `once` beside `run` is safe (one database, one writer at a time)
    alive_since = state.database_time() - interval
    live = [i for i in state.instances() if i.last_seen >= alive_since]
    if live:
        raise ConfigError(
            f"{len(live)} instance(s) of `recruitmail run` share this state "
            f"({', '.join(i.host for i in live)}); `once` takes no lease and would write beside "
            "them: use `recruitmail preview`, or stop the instances first"
        )


def cmd_preview(args: argparse.Namespace) -> int:
    """Sync and plan on a private copy of the state; render; write nothing to state or mailbox."""
    if args.serve:
        from recruitmail.daemon.gallery import serve

        now = parse_now(args.now) if args.now else None
        return serve(args.config, port=args.port, mailbox=_only(args), now=now)
    from recruitmail.daemon.preview import due_mails
    from recruitmail.daemon.runtime import validate
    from recruitmail.daemon.workdays import tables_kept_in

    settings = _setup(args)
    renderer = validate(settings)
    out_dir = Path(args.html) if args.html else None
    count = held = 0
    with tables_kept_in(renderer.cache_dir):  # as in `once`
        for due in due_mails(settings, renderer, parse_now(args.now), only=_only(args)):
            if due.skipped:
                print(
                    f"--- {due.mailbox} → {due.candidate}: {due.kind} would be skipped: {due.skipped}"
                )
                continue
            if due.rendered is None:
                held += 1
                print(f"!!! {due.mailbox} → {due.candidate}: {due.kind} held: {due.held}")
                continue
            count += 1
            carried = f" (+ {', '.join(due.folded)})" if due.folded else ""
            print(f"=== {due.mailbox} → {due.candidate}: {due.kind}{carried}")
            for hint in due.hints:
                print(f"hint (for you, not in the mail): {hint}")
            print(f"Subject: {due.rendered.subject}\n")
            print(due.rendered.text.rstrip() + "\n")
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                (out_dir / f"{count:03d}-{due.kind}.html").write_text(
                    due.rendered.html, encoding="utf-8"
                )
    print(
        f"{count} draft(s) would be created."
        + (f" {held} held (see above)." if held else "")
        + (f" HTML parts in {out_dir}/" if out_dir and count else "")
    )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import time

    from recruitmail.contracts.models import DraftKey, MailKind
    from recruitmail.daemon.executor import PassReport
    from recruitmail.daemon.render import Renderer
    from recruitmail.daemon.runtime import (
        describe_groups,
        open_runner,
        template_cache_dir,
        validate,
    )
    from recruitmail.daemon.samples import SAMPLE_LANGUAGES, SAMPLES
    from recruitmail.daemon.settings import config_path, load_settings
    from recruitmail.daemon.state import State

    settings = load_settings(args.config)
    # Every kind in every language, with full, sparse and hostile sample data (daemon/samples.py).
    started = time.monotonic()
    problems = Renderer(settings.service.templates_dir, template_cache_dir(settings)).check()
    took = time.monotonic() - started
    renders = len(MailKind) * len(SAMPLE_LANGUAGES) * len(SAMPLES)
    if problems:
        print(
            f"recruitmail: configuration error: templates do not render "
            f"({len(problems)} problem(s) in {renders} renderings, {took:.2f} s):\n  "
            + "\n  ".join(problems),
            file=sys.stderr,
        )
        return 2
    print(
        f"templates: {len(MailKind)} kinds × {len(SAMPLE_LANGUAGES)} languages × "
        f"{len(SAMPLES)} samples ({', '.join(SAMPLES)}) render cleanly ({took:.2f} s)."
    )
    renderer = validate(settings)
    print(
        f"{config_path(args.config)}: configuration and templates are valid "
        f"({len(settings.mailboxes)} mailbox(es))."
    )
    for line in describe_groups(settings, online=args.online):  # one per [[mailboxes_from]]
        print(line)
    if not args.online:
        return 0
    failed = 0
    state = State(Path(":memory:"))
    for index, box in enumerate(settings.mailboxes):
        try:
            with open_runner(settings, index, state, renderer) as runner:
                now = datetime.now(UTC)
                runner.sync(now, PassReport(box.address))
                runner.zone()
                runner.sink.find_draft(
                    DraftKey(box.address, "check@recruitmail.invalid", MailKind.WELCOME, "check")
                )
            print(f"{box.address}: calendar readable, mailbox reachable, permissions sufficient.")
        except RecruitmailError as exc:
            failed += 1
            print(f"{box.address}: {type(exc).__name__}: {exc}", file=sys.stderr)
    state.close()
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    from collections import defaultdict
    from zoneinfo import ZoneInfo

    from recruitmail.contracts.models import DraftState, normalise_address, pseudonym
    from recruitmail.daemon.planner import LedgerState
    from recruitmail.daemon.state import State

    settings = _setup(args)
    if args.fleet:
        return _print_fleet(settings)
    state = State.open(settings.service)
    try:
        if not args.offline:
            _refresh_remote_states(settings, state)
        rows = state.all_ledger()
        languages = {box.address: state.languages(box.address) for box in settings.mailboxes}
        health = {
            box.address: (state.problems(box.address), state.skipped_events(box.address))
            for box in settings.mailboxes
        }
    finally:
        state.close()
    wanted = normalise_address(args.candidate) if args.candidate else None
    if wanted:
        print(f"(the logs name {wanted} as {pseudonym(wanted)})")
    else:
        from recruitmail.daemon.runtime import describe_groups

        for line in describe_groups(settings):  # the directory groups' members last read
            print(line)
        _print_health(health)
    journeys: dict[tuple[str, str], list[str]] = defaultdict(list)
    zone = settings.company.time_zone
    for row in rows:
        key = row.entry.key
        if wanted and key.candidate != wanted:
            continue
        day = row.entry.due.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
        state_text = row.entry.state.value
        if row.entry.state is LedgerState.DRAFTED and row.entry.remote_state:
            state_text = {
                DraftState.PENDING: "drafted",
                DraftState.EDITED: "drafted, edited",
                DraftState.SENT: "sent",
                DraftState.DELETED: "deleted by recruiter",
            }[row.entry.remote_state]
        detail = row.subject if row.entry.state is LedgerState.DRAFTED else row.reason
        journeys[(key.mailbox, key.candidate)].append(
            f"  {day}  {key.kind.value:<18} {state_text:<22} {detail}"
        )
    if not journeys:
        print("No candidate journeys recorded yet.")
        return 0
    for (mailbox, candidate), lines in sorted(journeys.items()):
        print(f"{candidate}  (recruiter {mailbox})")
        decided = languages.get(mailbox, {}).get(candidate)
        if decided:
            print(f"  language: {decided[0]} ({_language_reason(decided[1])})")
        print("\n".join(lines))
    return 0


def _print_fleet(settings: Settings) -> int:
    """``status --fleet``: the live instances and which holds which mailbox, since when, under
    which fencing token and until when (the database's clock; shown in the company's zone)."""
    from zoneinfo import ZoneInfo

    from recruitmail.daemon.fleet import lease_seconds
    from recruitmail.daemon.state import State

    state = State.open(settings.service)
    try:
        now = state.database_time()
        instances = state.instances()
        leases = state.leases()
    finally:
        state.close()
    zone = ZoneInfo(settings.company.time_zone)

    def when(epoch: float) -> str:
        return datetime.fromtimestamp(epoch, zone).strftime("%Y-%m-%d %H:%M:%S")

    configured = {box.address for box in settings.mailboxes}
    held: dict[str, int] = {}
    for lease in leases:
        if lease.holder and lease.expires_at > now:
            held[lease.holder] = held.get(lease.holder, 0) + 1
    print(f"State: {state.backend} ({state.path})")
    print("Instances:")
    if not instances:
        print("  none has run against this state yet")
    for instance in instances:
        # An instance says it is alive five times a lease: silent for a lease, it is gone.
        alive = now - instance.last_seen < lease_seconds(settings.service.interval_seconds)
        print(
            f"  {instance.id:<40} {'live' if alive else 'gone':<5} "
            f"last seen {now - instance.last_seen:6.1f} s ago, up since "
            f"{when(instance.started_at)}, holds {held.get(instance.id, 0)} mailbox(es)"
        )
    print("Mailboxes:")
    for lease in leases:
        if lease.mailbox not in configured:
            continue
        if not lease.holder:
            holder = "nobody (free)"
        elif lease.expires_at <= now:
            holder = f"{lease.holder} (expired {now - lease.expires_at:.1f} s ago)"
        else:
            holder = f"{lease.holder} (expires in {lease.expires_at - now:.1f} s)"
        since = when(lease.acquired_at) if lease.acquired_at else "-"
        print(f"  {lease.mailbox:<32} token {lease.token:<6} since {since}  {holder}")
    unleased = sorted(configured - {lease.mailbox for lease in leases})
    for mailbox in unleased:
        print(f"  {mailbox:<32} never held (no instance has run with it configured)")
    return 0


def _print_health(health: dict[str, tuple[list[Problem], dict[str, int]]]) -> None:
    """What an administrator must know per mailbox: failing look-ups, held mails, events left out."""
    for mailbox, (problems, skipped) in health.items():
        if not problems and not skipped:
            continue
        print(f"Mailbox {mailbox}")
        for problem in problems:
            how = "refused" if problem.permanent else "failing"
            since = problem.first_seen.strftime("%Y-%m-%d %H:%M")
            print(f"  ! {problem.topic} ({how} since {since} UTC): {problem.message}")
        for reason, count in sorted(skipped.items()):
            print(f"  - {count} calendar event(s) left out: {reason}")
        print()


def _refresh_remote_states(settings: Settings, state: State) -> None:
    """Ask each mailbox what became of our drafts (sent? edited? deleted?)."""
    from recruitmail.contracts.models import DraftState
    from recruitmail.daemon.planner import LedgerState
    from recruitmail.daemon.runtime import open_sink

    now = datetime.now(UTC)
    for index, box in enumerate(settings.mailboxes):
        rows = [
            r
            for r in state.ledger(box.address)
            if r.entry.state is LedgerState.DRAFTED
            and r.remote is not None
            and r.entry.remote_state in (None, DraftState.PENDING, DraftState.EDITED)
        ]
        if not rows:
            continue
        try:
            with open_sink(settings, index) as sink:
                for row in rows:
                    assert row.remote is not None
                    state.set_remote_state(row.entry.key, sink.draft_state(row.remote), now)
        except RecruitmailError as exc:
            print(
                f"{box.address}: could not refresh draft states ({exc}); showing what is known",
                file=sys.stderr,
            )


def cmd_forget(args: argparse.Namespace) -> int:
    from recruitmail.contracts.models import normalise_address
    from recruitmail.daemon.state import State

    settings = _setup(args)
    state = State.open(settings.service)
    try:
        removed = state.forget(normalise_address(args.address))
    finally:
        state.close()
    print(f"Erased {removed} record(s) about that candidate from {state.path}.")
    print(
        "Drafts already in the recruiter's mailbox are the recruiter's: remove them there if needed."
    )
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    from recruitmail.contracts.models import normalise_address
    from recruitmail.daemon.state import State

    settings = _setup(args)
    state = State.open(settings.service)
    try:
        touched = state.set_closed(None, normalise_address(args.address), not args.reopen)
    finally:
        state.close()
    verb = "reopened" if args.reopen else "closed"
    print(f"Process {verb} for that candidate in {touched} mailbox(es).")
    return 0


def cmd_language(args: argparse.Namespace) -> int:
    """Show, set or clear the language a candidate's mails are written in."""
    from recruitmail.contracts.models import normalise_address
    from recruitmail.daemon.language import Reason
    from recruitmail.daemon.settings import LANGUAGES
    from recruitmail.daemon.state import State

    address = normalise_address(args.address)
    if args.language is not None and args.language not in LANGUAGES:
        raise ConfigError(
            f"language {args.language!r}: use one of {', '.join(LANGUAGES)} (templates exist for those)"
        )
    settings = _setup(args)
    state = State.open(settings.service)
    try:
        if args.clear or args.language is not None:
            state.set_stored_language(
                address, None if args.clear else args.language, parse_now(None)
            )
        stored = state.stored_language(address)
        decided = {
            box.address: state.languages(box.address).get(address) for box in settings.mailboxes
        }
    finally:
        state.close()
    configured = settings.languages.get(address)
    if configured:
        print(f"{address}: {configured} ({Reason.CONFIGURED.explanation}; it wins over the rest)")
    if stored:
        print(f"{address}: {stored} ({Reason.STORED.explanation})")
    elif args.clear:
        print(f"{address}: no language set with recruitmail language any more")
    for mailbox, found in decided.items():
        if found:
            language, reason = found
            print(f"  last mail from {mailbox}: {language} ({_language_reason(reason)})")
    return 0


def _language_reason(reason: str) -> str:
    from recruitmail.daemon.language import Reason

    try:
        return Reason(reason).explanation
    except ValueError:
        return reason


def cmd_login(args: argparse.Namespace) -> int:
    import importlib

    from recruitmail.daemon.runtime import context_for
    from recruitmail.daemon.settings import load_settings

    settings = load_settings(args.config)
    box = settings.mailbox(args.mailbox) if args.mailbox else settings.mailboxes[0]
    options = box.source if box.source.type == args.provider else box.sink
    if options.type != args.provider:
        raise ConfigError(f"mailbox {box.address} does not use the {args.provider} provider")
    module = importlib.import_module(f"recruitmail.connectors.{args.provider}")
    login = getattr(
        module, "device_code_login" if args.provider == "microsoft" else "installed_app_login"
    )
    model = getattr(module, "SourceOptions" if options is box.source else "SinkOptions")
    login(model(**options.options()), print, context=context_for(settings, box))
    return 0


def _only(args: argparse.Namespace) -> str | None:
    from recruitmail.contracts.models import normalise_address

    value = getattr(args, "mailbox", None)
    return normalise_address(value) if value else None


# -- recruitmail state migrate ------------------------------------------------------------


def cmd_state_migrate(args: argparse.Namespace) -> int:
    """Copy the SQLite state in ``service.state_dir`` into a PostgreSQL database, and verify it."""
    from recruitmail.daemon.state import State, is_postgresql_url

    settings = _setup(args)
    if not is_postgresql_url(args.to):
        raise ConfigError(f"--to {args.to!r}: give a postgresql:// URL")
    file = settings.service.state_dir / "recruitmail.sqlite"
    if not file.exists():
        raise ConfigError(f"{file}: no SQLite state to migrate (check service.state_dir)")
    source = State(file)
    try:
        target = State(args.to, pool_size=2)
        try:
            if target.holds_data() and not args.force:
                print(
                    f"{target.path} already holds a state; nothing was written "
                    "(--force replaces it)",
                    file=sys.stderr,
                )
                return 1
            source.copy_into(target)
            copied, expected = target.table_digests(), source.table_digests()
        finally:
            target.close()
    finally:
        source.close()
    for table, (rows, digest) in expected.items():
        same = copied.get(table) == (rows, digest)
        print(f"{table:<15} {rows:>8} row(s)  {digest[:16]}  {'ok' if same else 'DIFFERS'}")
    if copied != expected:
        print(f"the copy in {target.path} differs from {file}", file=sys.stderr)
        return 1
    print(f"Copied {file} to {target.path} and verified it; set service.state to use it.")
    return 0


def _add_state_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser("state", parents=[common], help="move the state to another database")
    commands = p.add_subparsers(dest="state_command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "migrate",
        parents=[common],
        help="copy the SQLite state into PostgreSQL and verify the copy (stop the service first)",
    )
    p.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="postgresql:// URL; a password only as a reference (?password=credential:NAME)",
    )
    p.add_argument("--force", action="store_true", help="replace a state the target already holds")
    p.set_defaults(func=cmd_state_migrate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recruitmail",
        description="Drafts candidate mails in the recruiter's own mailbox from their interview calendar.",
    )
    parser.add_argument("--version", action="version", version=f"recruitmail {__version__}")
    # --config and --verbose work before and after the command ("recruitmail run --config …").
    common = argparse.ArgumentParser(add_help=False)
    for target, default in ((parser, None), (common, argparse.SUPPRESS)):
        target.add_argument(
            "--config",
            "-c",
            default=default,
            help="configuration file (default: "
            "$RECRUITMAIL_CONFIG or /etc/recruitmail/recruitmail.toml)",
        )
        target.add_argument(
            "--verbose",
            "-v",
            action="store_true",
            default=default or False,
            help="log at DEBUG (shows candidate data)",
        )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", parents=[common], help="run the daemon (systemd Type=notify)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("once", parents=[common], help="one reconcile pass over all mailboxes")
    p.add_argument("--now", help="pretend it is this instant (ISO 8601)")
    p.add_argument("--mailbox", help="only this mailbox")
    p.set_defaults(func=cmd_once)
    p = sub.add_parser(
        "preview", parents=[common], help="show what would be drafted; changes nothing"
    )
    p.add_argument("--now", help="pretend it is this instant (ISO 8601)")
    p.add_argument("--mailbox", help="only this mailbox")
    p.add_argument("--html", metavar="DIR", help="also write each HTML part into DIR")
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve a gallery of every kind and language on 127.0.0.1 (with --mailbox: that "
        "recruiter's mails due next); it follows template and configuration edits",
    )
    p.add_argument(
        "--port", type=int, default=8025, help="port of --serve (default 8025; 0: any free port)"
    )
    p.set_defaults(func=cmd_preview)
    p = sub.add_parser("check", parents=[common], help="validate configuration and templates")
    p.add_argument(
        "--online", action="store_true", help="also sign in and test every calendar and mailbox"
    )
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("status", parents=[common], help="each candidate's journey")
    p.add_argument("--candidate", help="only this candidate's address")
    p.add_argument(
        "--offline", action="store_true", help="do not ask the mailboxes what became of drafts"
    )
    p.add_argument(
        "--fleet",
        action="store_true",
        help="the running instances and which holds which mailbox (lease, token, expiry)",
    )
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("forget", parents=[common], help="erase a candidate from the state (GDPR)")
    p.add_argument("address")
    p.set_defaults(func=cmd_forget)
    p = sub.add_parser(
        "close",
        parents=[common],
        help="mark a candidate's process closed: no more status updates or greetings",
    )
    p.add_argument("address")
    p.add_argument("--reopen", action="store_true", help="open it again")
    p.set_defaults(func=cmd_close)
    p = sub.add_parser(
        "language",
        parents=[common],
        help="show or set the language of a candidate's mails (sv, en, nb, da, fi, de)",
    )
    p.add_argument("address")
    p.add_argument("language", nargs="?", help="the language code to use from now on")
    p.add_argument("--clear", action="store_true", help="let recruitmail decide again")
    p.set_defaults(func=cmd_language)
    p = sub.add_parser("login", parents=[common], help="delegated sign-in for one recruiter")
    p.add_argument("provider", choices=["microsoft", "google"])
    p.add_argument("--mailbox", help="which mailbox (default: the first)")
    p.set_defaults(func=cmd_login)
    _add_state_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # recruitmail uses no pydantic plugin: without this, building the settings models first
    # scans the metadata of every installed distribution for one (~20 ms of every command).
    # An administrator who wants one sets PYDANTIC_DISABLE_PLUGINS themselves (e.g. empty).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"recruitmail: configuration error: {exc}", file=sys.stderr)
        return 2
    except RecruitmailError as exc:
        print(f"recruitmail: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if argv is None:
            _leave_the_rest_to_the_exit()


def _leave_the_rest_to_the_exit() -> None:
    """The process ends with this command: spare its exit the garbage collector's full passes.

    By now the command has closed what it opened (the state in its ``finally``, connectors and
    worker threads in their ``with`` blocks); the log's handlers are flushed and closed at exit
    as before. What is left is the interpreter's teardown, which runs full collections over
    every object the imports made (pydantic's, Jinja2's, Babel's: ~65 ms of an idle ``once``'s
    CPU). Frozen, those objects are still released at exit, and every ``atexit`` handler and
    finaliser of an object that is freed still runs; only objects in reference cycles are left
    for the operating system to reclaim, with the rest of the process's memory.

    Only when ``main`` is the process's own command line (``argv`` is None: the console script,
    ``python -m recruitmail``); a caller that passes arguments keeps its collector as it was.
    """
    gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
