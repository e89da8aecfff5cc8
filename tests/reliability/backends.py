"""The reliability suite's connectors: each end-to-end test's scenario backend, plus what the
recruiter's mail client does on Delete, and a context manager that brings its servers up and down.

The backends themselves (and the fakes behind them) are the end-to-end tests' own; this module
only adds ``delete_draft`` and the lifecycle, so the crash and fault suites run against exactly
what ``tests/test_e2e_*.py`` replay.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from recruitmail.contracts.connector import KEY_HEADER
from tests.fakes.google import GoogleFake
from tests.fakes.graph import FakeGraph
from tests.reliability.harness import RecruiterBackend, RecruiterMaildir, _parse
from tests.servers import DovecotServer, RadicaleServer, run_dovecot
from tests.test_e2e_caldav_imap import RadicaleDovecotBackend
from tests.test_e2e_google import USER, GoogleBackend
from tests.test_e2e_microsoft import GraphBackend

CONNECTORS = ("ics", "microsoft", "google", "caldav")
"""Every registered pair of connectors, as the suite names them (source+sink)."""


class RecruiterGraph(GraphBackend):
    """Outlook's Delete moves the draft to Deleted Items, where recruitmail must leave it.

    ``extra_options`` are TOML lines added to both connector tables (the fault suite's
    ``max_attempts``).
    """

    extra_options = ""

    def config(self) -> str:
        text = super().config()
        if not self.extra_options:
            return text
        return text.replace('type = "microsoft"\n', f'type = "microsoft"\n{self.extra_options}\n')

    def delete_draft(self, candidate: str) -> str:
        """Delete the newest draft addressed to ``candidate``; returns the key it carried."""
        mine = [m for m in self.fake.drafts(USER) if candidate in str(m.data["toRecipients"])]
        newest = max(mine, key=lambda m: m.order)
        key = str(_parse(self.fake.mime(USER, newest))[KEY_HEADER])
        self.fake.delete_message(USER, newest.immutable_id)
        return key


class RecruiterGmail(GoogleBackend):
    """Gmail's "Discard draft": the draft and its message are gone."""

    def delete_draft(self, candidate: str) -> str:
        """Delete the newest draft addressed to ``candidate``; returns the key it carried."""
        with self.fake.lock:
            mine = [
                (m.internal_date, draft_id, m)
                for draft_id, message_id in self.fake.drafts[USER].items()
                for m in [self.fake.messages[USER][message_id]]
                if candidate in str(m.parsed["To"])
            ]
            _, draft_id, message = max(mine, key=lambda item: (item[0], item[1]))
            key = str(message.parsed[KEY_HEADER])
        self.fake.delete_draft(USER, draft_id)
        return key


class RecruiterImap(RadicaleDovecotBackend):
    """An IMAP client's Delete: the draft is flagged ``\\Deleted`` and expunged."""

    def delete_draft(self, candidate: str) -> str:
        """Delete the newest draft addressed to ``candidate``; returns the key it carried."""
        with self.client() as client:
            client.select_folder("Drafts")
            newest = max(client.search(["TO", candidate, "NOT", "DELETED"]))
            raw = client.fetch([newest], ["BODY.PEEK[]"])[newest][b"BODY[]"]
            key = str(_parse(bytes(raw))[KEY_HEADER])
            client.add_flags([newest], [b"\\Deleted"])
            client.expunge()
        return key


class FastGoogle(RecruiterGmail):
    """Google's client backs off with jitter up to ``max_backoff_seconds``: kept short here so
    that a fault costs a fraction of a second, not up to 32 s (the logic is the same)."""

    def config(self) -> str:
        text = super().config()
        return text.replace('type = "google"\n', 'type = "google"\nmax_backoff_seconds = 0.05\n')


# Radicale and Dovecot are whole servers: started per chain, one account each.
_servers_lock = threading.Lock()


@contextmanager
def backend_for(connector: str, root: Path) -> Iterator[RecruiterBackend]:
    """The scenario backend of ``connector`` in ``root``, its servers running until the exit."""
    root.mkdir(parents=True, exist_ok=True)
    if connector == "ics":
        yield RecruiterMaildir(root)
    elif connector == "microsoft":
        with FakeGraph(root) as graph:
            yield RecruiterGraph(graph)
    elif connector == "google":
        fake = GoogleFake(page_limit=5).start()
        try:
            yield FastGoogle(fake, root)
        finally:
            fake.stop()
        assert fake.violations == [], fake.violations
    elif connector == "caldav":
        radicale = RadicaleServer(root / "radicale")
        dovecots = cast(Generator[DovecotServer, None, None], run_dovecot(uidplus=True))
        with _servers_lock:
            radicale.start()
        try:
            dovecot = next(dovecots)
            try:
                yield RecruiterImap(radicale, dovecot, root)
            finally:
                dovecots.close()
        finally:
            radicale.stop()
            shutil.rmtree(root / "radicale", ignore_errors=True)
    else:
        raise ValueError(connector)
