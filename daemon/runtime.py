"""Assemble the pieces for a configuration: renderer, state, and one runner per mailbox.

Shared by ``once``, ``run``, ``preview``, ``check`` and ``status``: the CLI and the scheduler
never wire connectors themselves. The executor and the renderer are imported by the functions
that build them, so that ``status`` (which only opens sinks) loads neither Jinja2 nor Babel.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from recruitmail import connectors
from recruitmail.contracts.connector import ConnectorContext, DirectoryMember, MailboxSink
from recruitmail.contracts.errors import ConfigError, RecruitmailError, TransientError
from recruitmail.daemon.fleet import may_write
from recruitmail.daemon.service import Metrics
from recruitmail.daemon.settings import (
    KnownMembers,
    Mailbox,
    MailboxesFrom,
    Settings,
    read_known_members,
    write_known_members,
)
from recruitmail.daemon.state import State

if TYPE_CHECKING:
    from recruitmail.daemon.executor import MailboxRunner, PassReport
    from recruitmail.daemon.render import Renderer

log = logging.getLogger("recruitmail")


def where(index: int, role: str) -> str:
    return f"mailboxes[{index}].{role}"


def validate(settings: Settings, *, load_templates: bool = True) -> Renderer:
    """Everything that can be checked without the network: connector options and templates.

    ``load_templates=False``: templates that passed the start-up check before, unchanged, are
    loaded when the first mail is rendered (``Renderer.check_unless_unchanged``), for a process
    that may render none; the daemon loads them here and keeps them until a reload.
    """
    from recruitmail.daemon.render import Renderer

    for index, box in enumerate(settings.mailboxes):
        connectors.validate_options(
            box.source.type, "source", box.source.options(), where(index, "source")
        )
        connectors.validate_options(box.sink.type, "sink", box.sink.options(), where(index, "sink"))
    validate_groups(settings)
    if settings.company.subdivision is not None:
        _check_subdivision(settings.company.country, settings.company.subdivision)
    renderer = Renderer(settings.service.templates_dir, template_cache_dir(settings))
    # The hostile sample is `recruitmail check`'s: at start-up a template that fails on odd data
    # only holds that mail (RenderError), so the cheaper samples are enough to refuse a broken one.
    # Templates that passed before, unchanged, are not rendered again (`recruitmail check` is).
    problems = renderer.check_unless_unchanged(samples=("full", "sparse"), load=load_templates)
    if problems:
        raise ConfigError("templates do not render:\n  " + "\n  ".join(problems))
    return renderer


def _check_subdivision(country: str, subdivision: str) -> None:
    """Refuse a ``company.subdivision`` the holidays package does not know for ``country``: an
    unknown region would otherwise mean the nationwide holidays only, without a word."""
    import holidays  # here: only a configuration with a region pays for the package

    try:
        known = holidays.country_holidays(country)
    except NotImplementedError:
        raise ConfigError(
            f"company.subdivision = {subdivision!r}: the public holidays of country {country!r} "
            "are not known, so it has no regions; remove company.subdivision"
        ) from None
    regions = tuple(known.subdivisions)
    if subdivision in regions:
        return
    if not regions:
        raise ConfigError(
            f"company.subdivision = {subdivision!r}: {country} has no regions with holidays of "
            "their own; remove company.subdivision"
        )
    aliases = getattr(known, "subdivisions_aliases", None) or {}
    code = next(
        (c for name, c in aliases.items() if name.casefold() == subdivision.casefold()),
        subdivision.upper() if subdivision.upper() in regions else None,
    )
    hint = f'write "{code}"' if code else "use one of " + ", ".join(regions)
    raise ConfigError(
        f"company.subdivision = {subdivision!r} is not a region of {country}: {hint} "
        '(the region codes of the holidays package, e.g. "BY" for Bavaria)'
    )


def template_cache_dir(settings: Settings) -> Path:
    """Where compiled templates are kept between processes.

    systemd's ``CacheDirectory=`` (``$CACHE_DIRECTORY``) when the service runs under it, else
    ``template-cache`` in the state directory; the directory is only made when its parent
    exists (``render.usable_cache_dir``), so a command never creates a state directory for it.
    """
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd) / "templates"
    return settings.service.state_dir / "template-cache"


def context_for(settings: Settings, box: Mailbox) -> ConnectorContext:
    return ConnectorContext(
        mailbox=box.address,
        mailbox_name=box.name,
        time_zone=box.time_zone or settings.company.time_zone,
        company_domains=tuple(settings.company.domains),
        state_dir=settings.service.state_dir,
        country=settings.company.country,
        may_write=may_write(box.address),  # the fleet's lease check, inside a FencedSink call
    )


@contextmanager
def open_runner(
    settings: Settings,
    index: int,
    state: State,
    renderer: Renderer,
    *,
    stop: threading.Event | None = None,
    observer: Metrics | None = None,
) -> Iterator[MailboxRunner]:
    """A runner for mailbox ``index`` with its connectors opened; closes them afterwards."""
    from recruitmail.daemon.executor import MailboxRunner

    box = settings.mailboxes[index]
    context = context_for(settings, box)
    source = connectors.open_source(
        box.source.type, box.source.options(), context, where(index, "source")
    )
    try:
        sink = connectors.open_sink(
            box.sink.type, box.sink.options(), context, where(index, "sink")
        )
    except BaseException:
        source.close()
        raise
    try:
        yield MailboxRunner(
            settings, box, state, renderer, source, sink, stop=stop, observer=observer
        )
    finally:
        source.close()
        sink.close()


@contextmanager
def open_sink(settings: Settings, index: int) -> Iterator[MailboxSink]:
    """The draft sink of mailbox ``index`` alone, opened; closed afterwards."""
    box = settings.mailboxes[index]
    sink = connectors.open_sink(
        box.sink.type, box.sink.options(), context_for(settings, box), where(index, "sink")
    )
    try:
        yield sink
    finally:
        sink.close()


@dataclass
class PassOutcome:
    reports: list[PassReport]
    failures: dict[str, str]


def run_once(
    settings: Settings,
    state: State,
    renderer: Renderer,
    now: datetime,
    only: str | None = None,
    observer: Metrics | None = None,
) -> PassOutcome:
    """One reconcile pass over every mailbox (or one), ``service.workers`` at a time.

    A failing mailbox never stops the others; reports come back in configuration order.
    """
    groups: list[GroupReading] = []
    if settings.mailboxes_from:
        settings, groups = refresh_fleet(settings, state)
    chosen = [i for i, box in enumerate(settings.mailboxes) if not only or box.address == only]

    def one(index: int) -> PassReport | str:
        box = settings.mailboxes[index]
        try:
            with open_runner(settings, index, state, renderer, observer=observer) as runner:
                return runner.reconcile(now)
        except RecruitmailError as exc:
            log.error("mailbox %s: pass failed: %s", box.address, exc)
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug must not take the other mailboxes down with it
            log.exception("mailbox %s: unexpected error; the next pass tries again", box.address)
            return f"internal error ({type(exc).__name__}; the log has the details)"

    workers = max(1, min(settings.service.workers, len(chosen)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pass") as pool:
        results = list(pool.map(one, chosen))
    outcome = PassOutcome([], {})
    for reading in groups:
        if reading.problem and not reading.members:
            # No member known at all: nothing of this group could be done.
            outcome.failures[f"mailboxes_from[{reading.index}] ({reading.group})"] = reading.problem
    for index, result in zip(chosen, results, strict=True):
        if isinstance(result, str):
            outcome.failures[settings.mailboxes[index].address] = result
        else:
            outcome.reports.append(result)
    return outcome


def describe(report: PassReport) -> str:
    parts = [f"{len(report.drafted)} drafted"]
    if report.folded:
        parts.append(f"{report.folded} folded")
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped")
    if report.obsolete:
        parts.append(f"{report.obsolete} marked obsolete")
    if report.deferred:
        parts.append(f"{report.deferred} deferred")
    return ", ".join(parts)


# -- fleets from the directory ---------------------------------------------------------------

DIRECTORY_TOPIC = "directory group"
"""The ``status`` topic under which a member mailbox shows that its group could not be read."""


@dataclass(frozen=True)
class GroupReading:
    """What one reading of a ``mailboxes_from`` group gave."""

    index: int
    type: str
    group: str
    members: int  # the members in use now (read now, or kept from before)
    read: int | None  # how many the directory gave this time (None: it did not answer)
    problem: str = ""  # why the answer was not taken ("" when it was)

    def describe(self) -> str:
        """One line for ``check`` and the log."""
        where = f"mailboxes_from[{self.index}] ({self.type} group {self.group})"
        if not self.problem:
            return f"{where}: {self.members} member(s)"
        return f"{where}: {self.problem}; {self.members} member(s) in use"


def describe_groups(settings: Settings, *, online: bool = False) -> list[str]:
    """One line per ``mailboxes_from`` group for ``recruitmail check``: how many members it
    gave, and what is wrong with it. ``online`` asks the directory now (and keeps what it
    says, as a pass would); otherwise the members last read are counted."""
    if online:
        return [reading.describe() for reading in refresh_fleet(settings, None)[1]]
    lines = []
    for index, group in enumerate(settings.mailboxes_from):
        known = read_known_members(settings.service.state_dir, group)
        when = known.read_at.strftime("%Y-%m-%d %H:%M UTC") if known.read_at else "never"
        reading = GroupReading(
            index, group.type, group.group, len(known.members), None, known.problem
        )
        lines.append(f"{reading.describe()} (last read {when})")
    unmatched = sorted(
        override.address
        for override in settings.mailbox_overrides.values()
        if settings.group_of(override.address) is None
    )
    if unmatched and any(settings.members(i) for i in range(len(settings.mailboxes_from))):
        lines.append(
            f"[[mailboxes]] without source or sink, for no member of any group: "
            f"{', '.join(unmatched)}"
        )
    return lines


def validate_groups(settings: Settings) -> None:
    """Check each group's templates and directory options without opening anything."""
    for index, group in enumerate(settings.mailboxes_from):
        where_group = f"mailboxes_from[{index}]"
        connectors.validate_options(
            group.source.type, "source", group.source.options(), f"{where_group}.source"
        )
        connectors.validate_options(
            group.sink.type, "sink", group.sink.options(), f"{where_group}.sink"
        )
        role, raw = _directory_options(group)
        connectors.validate_directory_options(group.type, raw, f"{where_group}.{role}")


def _directory_options(group: MailboxesFrom) -> tuple[str, dict[str, object]]:
    found = group.directory_options()
    if found is None:  # refused by the configuration's own checks already
        raise ConfigError(f"mailboxes_from: give the {group.type} directory's sign-in")
    role, raw = found
    if role != "directory":  # borrowed from the source or sink: only what a directory takes
        raw = connectors.directory_options(group.type, raw)
    return role, raw


def read_group(settings: Settings, index: int) -> list[DirectoryMember]:
    """Ask the directory for the members of ``mailboxes_from[index]`` (raises on failure)."""
    group = settings.mailboxes_from[index]
    role, raw = _directory_options(group)
    context = ConnectorContext(
        mailbox=str(raw.get("subject") or group.group),
        mailbox_name="directory",
        time_zone=settings.company.time_zone,
        company_domains=tuple(settings.company.domains),
        state_dir=settings.service.state_dir,
        country=settings.company.country,
    )
    directory = connectors.open_directory(
        group.type, dict(raw), context, f"mailboxes_from[{index}].{role}"
    )
    try:
        return directory.members(group.group)
    finally:
        directory.close()


def refresh_fleet(
    settings: Settings, state: State | None, now: datetime | None = None
) -> tuple[Settings, list[GroupReading]]:
    """Read every ``mailboxes_from`` group and return the configuration with its members.

    Auxiliary trouble never costs a mail: a group the directory cannot answer for keeps its
    last known members (kept in the state directory between processes), and so does a group
    that suddenly answers with no member at all while it had some (more likely a broken
    directory or a wrong permission than a fleet that left at once; a warning says so each
    time). Either way the log says why, and each kept member's mailbox shows it in
    ``recruitmail status``, until a reading is taken again.
    """
    now = now or datetime.now(UTC)
    state_dir = settings.service.state_dir
    found: dict[int, tuple[DirectoryMember, ...]] = {}
    readings: list[GroupReading] = []
    for index, group in enumerate(settings.mailboxes_from):
        known = read_known_members(state_dir, group)
        problem, permanent, read = "", False, None
        try:
            members = read_group(settings, index)
            read = len(members)
        except RecruitmailError as exc:
            problem = f"the directory could not be read ({type(exc).__name__}: {exc})"
            permanent = not isinstance(exc, TransientError)
        except Exception as exc:  # a bug here must not stop the mailboxes the file names
            log.exception("directory group %s: unexpected error while reading it", group.group)
            problem = f"the directory could not be read (internal error: {type(exc).__name__})"
        else:
            if not members and known.members:
                problem = (
                    f"the directory answered that the group has no members, where it had "
                    f"{len(known.members)}; the last known members are kept (remove the "
                    "[[mailboxes_from]] entry to stop drafting for them)"
                )
        if problem:
            kept = known.members
            if kept:
                log.warning(
                    "directory group %s (%s): %s; keeping the %d member(s) last read %s",
                    group.group,
                    group.type,
                    problem,
                    len(kept),
                    known.read_at.strftime("%Y-%m-%d %H:%M UTC") if known.read_at else "earlier",
                )
            else:
                log.error("directory group %s (%s): %s", group.group, group.type, problem)
            since = known.problem_since if known.problem else now
            _write(state_dir, group, KnownMembers(kept, known.read_at, problem, since))
            _note(state, kept, f"group {group.group}: {problem}", permanent, now)
        else:
            kept = tuple(members)
            if known.problem or {m.address for m in kept} != {m.address for m in known.members}:
                log.info(
                    "directory group %s (%s): %d member(s), %d added, %d removed",
                    group.group,
                    group.type,
                    len(kept),
                    len({m.address for m in kept} - {m.address for m in known.members}),
                    len({m.address for m in known.members} - {m.address for m in kept}),
                )
            _write(state_dir, group, KnownMembers(kept, now))
            if known.problem:
                _clear(state, (*known.members, *kept))
        found[index] = kept
        readings.append(GroupReading(index, group.type, group.group, len(kept), read, problem))
    return settings.with_members(found), readings


def _write(state_dir: Path, group: MailboxesFrom, known: KnownMembers) -> None:
    try:
        write_known_members(state_dir, group, known)
    except OSError as exc:
        log.warning("cannot keep the members of group %s in %s (%s)", group.group, state_dir, exc)


def _note(
    state: State | None,
    members: tuple[DirectoryMember, ...],
    message: str,
    permanent: bool,
    now: datetime,
) -> None:
    if state is None:
        return
    for member in members:
        state.record_problem(member.address, DIRECTORY_TOPIC, message, permanent, now)


def _clear(state: State | None, members: tuple[DirectoryMember, ...]) -> None:
    if state is None:
        return
    for address in {m.address for m in members}:
        state.clear_problem(address, DIRECTORY_TOPIC)
