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
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from recruitmail import connectors
from recruitmail.contracts.connector import ConnectorContext, MailboxSink
from recruitmail.contracts.errors import ConfigError, RecruitmailError
from recruitmail.daemon.service import Metrics
from recruitmail.daemon.settings import Mailbox, Settings
from recruitmail.daemon.state import State

if TYPE_CHECKING:
    from recruitmail.daemon.executor import MailboxRunner, PassReport
    from recruitmail.daemon.render import Renderer

log = logging.getLogger("recruitmail")


def where(index: int, role: str) -> str:
    return f"mailboxes[{index}].{role}"


def validate(settings: Settings) -> Renderer:
    """Everything that can be checked without the network: connector options and templates."""
    from recruitmail.daemon.render import Renderer

    for index, box in enumerate(settings.mailboxes):
        connectors.validate_options(
            box.source.type, "source", box.source.options(), where(index, "source")
        )
        connectors.validate_options(box.sink.type, "sink", box.sink.options(), where(index, "sink"))
    if settings.company.subdivision is not None:
        _check_subdivision(settings.company.country, settings.company.subdivision)
    renderer = Renderer(settings.service.templates_dir, template_cache_dir(settings))
    # The hostile sample is `recruitmail check`'s: at start-up a template that fails on odd data
    # only holds that mail (RenderError), so the cheaper samples are enough to refuse a broken one.
    # Templates that passed before, unchanged, are not rendered again (`recruitmail check` is).
    problems = renderer.check_unless_unchanged(samples=("full", "sparse"))
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
    chosen = [i for i, box in enumerate(settings.mailboxes) if not only or box.address == only]

    def one(index: int) -> PassReport | str:
        box = settings.mailboxes[index]
        try:
            with open_runner(settings, index, state, renderer, observer=observer) as runner:
                return runner.reconcile(now)
        except RecruitmailError as exc:
            log.error("mailbox %s: pass failed: %s", box.address, exc)
            return f"{type(exc).__name__}: {exc}"
        except Exception:  # a bug must not take the other mailboxes down with it
            log.exception("mailbox %s: unexpected error; the next pass tries again", box.address)
            return "internal error (the log has the details)"

    workers = max(1, min(settings.service.workers, len(chosen)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pass") as pool:
        results = list(pool.map(one, chosen))
    outcome = PassOutcome([], {})
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
