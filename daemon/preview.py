"""What would be drafted now, without writing anything: ``recruitmail preview`` and the gallery.

Each mailbox is synced and planned on a private in-memory copy of the state, and every planned
mail is rendered; nothing reaches the state file or a mailbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from recruitmail.contracts.errors import RenderError, TransientError
from recruitmail.daemon import compose
from recruitmail.daemon.executor import PassReport
from recruitmail.daemon.planner import plan
from recruitmail.daemon.render import RenderedMail, Renderer
from recruitmail.daemon.runtime import open_runner
from recruitmail.daemon.settings import Settings
from recruitmail.daemon.state import State


@dataclass(frozen=True)
class Previewed:
    """One mail the next pass would draft (``rendered``), hold (``held``) or skip (``skipped``)."""

    mailbox: str
    candidate: str
    kind: str
    folded: tuple[str, ...] = ()
    language: str = ""
    rendered: RenderedMail | None = None
    held: str = ""
    skipped: str = ""
    hints: tuple[str, ...] = ()
    """Suggestions for the recruiter (e.g. no summary in the notes); never part of the mail."""


def private_state(settings: Settings) -> State:
    """An in-memory copy of the configured state (or an empty one): planning may write to it."""
    if (
        not settings.service.state
        and not (settings.service.state_dir / "recruitmail.sqlite").exists()
    ):
        return State(Path(":memory:"))
    shared = State.open(settings.service)
    try:
        return shared.copy_in_memory()
    finally:
        shared.close()


def due_mails(
    settings: Settings, renderer: Renderer, now: datetime, only: str | None = None
) -> Iterator[Previewed]:
    """Every mail the next pass at ``now`` would draft, hold or skip, mailbox by mailbox."""
    state = private_state(settings)
    try:
        for index, box in enumerate(settings.mailboxes):
            if only and box.address != only:
                continue
            with open_runner(settings, index, state, renderer) as runner:
                runner.sync(now, PassReport(box.address))
                calendar = runner.calendar()
                snapshot = runner.snapshot(now, calendar)
                decided = plan(snapshot, now, settings, calendar)
                for mail in decided.drafts:
                    shown = Previewed(
                        mailbox=box.address,
                        candidate=mail.candidate,
                        kind=mail.kind.value,
                        folded=tuple(k.kind.value for k in mail.folded),
                    )
                    try:
                        facts = runner.facts(mail, snapshot, now)
                        shown = replace(shown, language=compose.language_of(mail, box, facts))
                        context = compose.build_context(mail, box, settings, calendar, now, facts)
                        rendered = renderer.render(mail.kind.value, shown.language, context)
                    except (RenderError, TransientError) as exc:  # this mail only
                        yield replace(shown, held=str(exc))
                        continue
                    hints = tuple(str(hint) for hint in context.get("hints", ()))
                    yield replace(shown, rendered=rendered, hints=hints)
                for skip in decided.skips:
                    yield Previewed(
                        mailbox=box.address,
                        candidate=skip.key.candidate,
                        kind=skip.key.kind.value,
                        skipped=skip.reason,
                    )
    finally:
        state.close()
