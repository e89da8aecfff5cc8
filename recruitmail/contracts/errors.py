"""The one error tree of recruitmail.

    RecruitmailError
    ├── ConfigError      the configuration or a template is wrong: say what to fix, and where
    ├── AuthError        credentials, consent or a permission is missing: say which
    ├── TransientError   try again later (outage, throttling, timeout before the request was sent)
    │   ├── AmbiguousError   the request may or may not have been carried out (timeout or reset
    │   │                    after it was sent): look the item up before trying again
    │   └── FencedOut        this instance may no longer write to the mailbox (another instance
    │                        holds it now): nothing was sent; the holder writes it
    ├── CursorExpired    the calendar's sync cursor is no longer valid: do a full resync
    ├── RenderError      a template failed on one mail's data: hold that mail, draft the others
    └── PermanentError   this one item cannot be done (bad data, refused request): skip it, go on

Provider and SDK exceptions never pass a connector's boundary; they become one of these.
"""

from __future__ import annotations


class RecruitmailError(Exception):
    """Root of every error recruitmail raises on purpose."""


class ConfigError(RecruitmailError):
    """The configuration or a template is invalid. The message names the file, key and fix."""


class AuthError(RecruitmailError):
    """Sign-in failed or a permission is missing. The message names what to grant."""


class TransientError(RecruitmailError):
    """A temporary failure: the same call may succeed later.

    ``retry_after`` is the provider's own wait in seconds, when it gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AmbiguousError(TransientError):
    """The request was sent but its outcome is unknown: look up before any retry."""


class FencedOut(TransientError):
    """This instance may no longer write to the mailbox: another instance of the fleet holds it
    now, or this one's lease is about to run out. Raised by ``ConnectorContext.may_write``
    before a write request is sent, so the request was not sent; a connector lets it pass
    unchanged (never retried, never turned into another error). The pass ends and the holder
    of the mailbox looks the draft up and writes it."""


class CursorExpired(RecruitmailError):
    """The calendar source refused the stored cursor; a full resync is needed."""


class RenderError(RecruitmailError):
    """A template failed (or went over its budget) on one mail's data. The mail is held, not
    skipped: it is tried again once the templates are fixed, while it is still valid."""


class PermanentError(RecruitmailError):
    """This one item cannot be processed; skip it with this reason and continue."""
